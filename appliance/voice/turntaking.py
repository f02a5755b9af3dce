"""Has the visitor finished? A cheap heuristic on the latest partial transcript.

Its verdict feeds ``Segmenter.set_complete_hint``: when the words so far form a complete
question or request, the segmenter ends the turn after the *short* hangover. A false "no"
costs only the difference between the hangovers (0.25 s); a false "yes" answers half a
question, so the rules lean towards "not complete" (a 0.2 s stop split "My son is ten. Does
he have to pay?" at the pause).

Only the last sentence decides, so an opening statement never ends the turn on its own:

* it ends with "?"                                          -> complete
* it is a question (question word / auxiliary first) or a request ("tell me ...",
  "I'm looking for ...") with >= 3 words and no dangling last word -> complete
* a closed reply ("yes", "no thanks", "thank you")           -> complete
* a statement ending with "." after an earlier question     -> complete
  ("Is there a café? I'm hungry.")
* a follow-up fragment: "and" + a preposition + >= 1 word, alone, no dangling last word
  ("and on a Sunday", "and for my ten-year-old")               -> complete
* anything else (a bare statement, a trailing "and", "the", "um", a comma) -> not complete
"""

from __future__ import annotations

import re

_QUESTION_WORDS = frozenset(
    "what what's whats where where's wheres when when's who who's whom whose which why how "
    "how's hows".split()
)
_AUXILIARIES = frozenset(
    "is isn't are aren't was wasn't were weren't do don't does doesn't did didn't can can't "
    "cannot could couldn't will won't would wouldn't shall should shouldn't may might must "
    "have haven't has hasn't had am".split()
)
_IMPERATIVES = frozenset(
    "tell show give explain describe find take guide help recommend suggest list repeat say "
    "read bring call book direct point let lead teach".split()
)
# Statements that are really requests.
_REQUEST_OPENERS = (
    "i'd like",
    "i would like",
    "i want",
    "i need",
    "i'm looking for",
    "i am looking for",
    "we're looking for",
    "we are looking for",
    "we'd like",
    "we would like",
    "we want",
    "we need",
    "i wonder",
    "i was wondering",
)
# Whole sentences that close a turn on their own (answers to the kiosk's own questions).
_CLOSED = frozenset(
    [
        "yes", "yeah", "yep", "yes please", "no", "nope", "no thanks", "no thank you",
        "thanks", "thank you", "thank you very much", "thanks a lot", "bye", "goodbye",
        "that's all", "that's it", "never mind", "okay thanks", "ok thanks", "okay thank you",
        "great thanks", "perfect thanks",
    ]
)  # fmt: skip
# Leading words that do not change what the sentence is.
_LEAD_IN = frozenset(
    "um uh er erm hmm so and okay ok oh well hi hello hey sorry please excuse me yes yeah "
    "right alright".split()
)
# A last word that promises more to come.
_DANGLING = frozenset(
    """and or but nor because so if that than then when while whether although though
    to of for with without in on at from about by into onto near like as via per
    the a an this these those some any every each another
    my your our their his its
    um uh er erm hmm
    is are was were am be been being do does did can could will would should shall may
    might must have has had
    i we they he she
    what where which who whom whose why how
    very more most much many really just also too""".split()
)
# Endings like "can you tell me" that need an object.
_DANGLING_PAIRS = frozenset(
    [("tell", "me"), ("tell", "us"), ("show", "me"), ("show", "us"), ("give", "me"),
     ("give", "us"), ("explain", "me"), ("is", "there"), ("are", "there"), ("get", "to"),
     ("want", "to"), ("like", "to"), ("need", "to"), ("going", "to"), ("have", "to")]
)  # fmt: skip

_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+")  # "3.5" stays one sentence
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _words(sentence: str) -> list[str]:
    return _WORD.findall(sentence.lower().replace("’", "'"))


def _strip_lead_in(words: list[str]) -> list[str]:
    i = 0
    while i < len(words) - 1 and words[i] in _LEAD_IN:
        i += 1
    return words[i:]


def _dangling(words: list[str]) -> bool:
    if not words:
        return True
    if words[-1] in _DANGLING:
        return True
    return len(words) >= 2 and (words[-2], words[-1]) in _DANGLING_PAIRS


def _is_question(words: list[str]) -> bool:
    return bool(words) and (words[0] in _QUESTION_WORDS or words[0] in _AUXILIARIES)


def _is_request(words: list[str]) -> bool:
    if not words:
        return False
    if words[0] in _IMPERATIVES:
        return True
    head = " ".join(words[:5])
    return any(head == p or head.startswith(p + " ") for p in _REQUEST_OPENERS)


# After "and", the start of a follow-up that reads the previous question again.
_FOLLOW_UP_PREPOSITIONS = frozenset("on for in at during with without".split())


def _follow_up(words: list[str]) -> bool:
    """ "and on a Sunday": a fragment asking the previous question again (words as said)."""
    return len(words) >= 3 and words[0] == "and" and words[1] in _FOLLOW_UP_PREPOSITIONS


def _closed(words: list[str]) -> bool:
    return " ".join(words) in _CLOSED


def looks_complete(text: str) -> bool:
    """True when the partial transcript looks like a finished question or request."""
    text = text.strip().replace("’", "'")
    if not text or text.endswith((",", "-", "—", "…", "...")):
        return False
    sentences = [s for s in _SENTENCE_BREAK.split(text) if s]
    last = sentences[-1]
    words = _strip_lead_in(_words(last))
    if not words:
        return False
    if last.endswith("?"):
        return True
    if _closed(_words(last)) or _closed(words):
        return True
    if _dangling(words):
        return False
    if (_is_question(words) or _is_request(words)) and len(words) >= 3:
        return True
    if len(sentences) == 1 and _follow_up(_words(last)):
        return True
    # a closing statement after a question: "Is there a café? I'm hungry."
    if last.endswith((".", "!")) and len(sentences) > 1:
        return any(
            s.endswith("?") or _is_question(_strip_lead_in(_words(s))) for s in sentences[:-1]
        )
    return False
