"""The answer policy: what the kiosk does with a question, given the FAQ ranking.

One module (~1,700 lines): the decision and the pattern tables it reads (small talk, requests,
off-topic categories, choices, incidental words) change together; all of it is pure.

The embedded LLM (SmolLM2-135M) invents facts, so with `answer_mode = "faq"` (the default) a
factual question is never sent to it: the kiosk reads the staff's own answer (`faq`), asks back
between two or three plausible entries, using their own headings (`clarify`), or says honestly
that it cannot help, names a few things it can help with and points to staff (`decline`). Small
talk gets a short canned reply (`chat`); an empty, filler-only or cut-off transcript a request
to repeat (`say_again`). Only with a capable remote model (`answer_mode = "llm"`) does a
relevant question go to the LLM (`llm`) with the retrieved entries as facts; check what it
writes with `guard.FactGuard` before speaking it.

Pure logic: no I/O, no clock, no trio; `decide` takes well under a millisecond. It weighs the
`Grounding`s that `grounding.ground` computes (which runs the embedder: off the event loop;
`grounding.prepare(kb)` once after loading the FAQ). A turn, as the caller wires it:

    ctx = the conversation's PolicyContext (None for a fresh visitor or after idle_reset_s)
    plan = lookups(question, ctx)              # what to rank: 1 to 5 short queries
    rank = partial(ground, kb, facts=True)     # facts=True: what the thresholds assume
    d = decide(question, context=ctx, settings=settings, **rank_plan(plan, rank))
    ctx = PolicyContext.after(question, d, ctx)

How the decision is made (thresholds in `PolicySettings`, calibrated on
tests/data/understand/tune.toml with `python -m appliance.bench.understand_text`):
1. A pending clarification answered ("the first one", "tickets", "yes", a button's id) -> that
   entry; "no" alone -> decline; anything else is a fresh question.
2. Nothing left after fillers, no letters -> say_again. Small talk (greeting, thanks, goodbye,
   "how are you", "who are you", a joke, "ok") with nothing else in it -> chat. Mostly words of
   another language -> decline.
3. The ranking: each entry gets a *support* from its embedding similarity (the whole entry's,
   blended with its best single answer sentence's) plus how much of the question's specific
   vocabulary it contains (IDF over this FAQ; words the FAQ never uses count in full). An entry
   sharing none of the question's specific words needs a clearly stronger semantic match: that
   keeps "is there a kettle in the room" off "Do you have accessible rooms?". A clear winner ->
   faq; two or three close plausible ones, or a good one without a clear lead -> clarify.
   An entry whose own heading adds what the visitor never said ("after check-out", "online")
   is offered back, not answered, when another entry is about as close and has a question word
   it lacks; so is one that cannot answer what was asked: a price question whose price is not
   in the answer's sentence about the thing asked, a heading stating a situation ("I lost my
   key card.") the question does not state, a question word the whole FAQ lacks. A follow-up
   ("and for children?") is also read with the previous answer's heading, and two questions
   in one breath part by part (both confidently answered: both answers; one only: its answer
   and a request to ask the other on its own); a clause that asks nothing is read with the
   question after it, never alone.
4. A request the kiosk cannot carry out or a topic no venue FAQ covers (book, pay, call someone,
   weather, news, sports, trivia, medical/legal/financial/personal advice, directions elsewhere or
   anything about "the nearest X", the next train to another place, the time) -> decline,
   unless the chosen entry's own heading is about that request (a hotel FAQ's "Can you call
   me a taxi?") or names the destination, or the request (book, pay, call) is one of two
   questions and the other is answered on its own.
5. Nothing plausible: a cut-off or trailing-off sentence -> say_again, else decline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import log
from typing import Literal, TypedDict

from .concepts import LEAVE_VERBS, SCHOOL_GROUP, plain_words, related
from .faq import FaqEntry
from .grounding import Grounding, split_sentences, strip_fillers
from .guard import EMAIL_RE, PHONE_RE
from .ranking import Hit
from .soundalike import Repair, SoundIndex, edit_distance, sound_key
from .text import STOPWORDS, joined_terms, tokenize

__all__ = [
    "DEFAULT_CHAT_REPLIES",
    "DEFAULT_DECLINE_LEADS",
    "Choice",
    "Decision",
    "Kind",
    "Lookups",
    "PolicyContext",
    "PolicySettings",
    "Ranked",
    "contextual_query",
    "decide",
    "distinct_readings",
    "faq_topics",
    "instead_of_generated",
    "lookup_query",
    "lookups",
    "question_parts",
    "rank_plan",
    "reconcile",
    "resolve_choice",
    "usual_replies",
]

Kind = Literal["faq", "clarify", "decline", "chat", "llm", "say_again"]


# --------------------------------------------------------------------------- replies

# Small talk: intent -> reply. "{topics}" becomes a few FAQ topics ("opening hours, tickets
# and parking"); a reply without it is used as written. Settings may override any of them.
DEFAULT_CHAT_REPLIES: Mapping[str, str] = {
    "greeting": "Hello! Ask me anything about your visit, for example about {topics}.",
    "thanks": "You're welcome! Is there anything else I can help you with?",
    "goodbye": "Goodbye, and enjoy your visit!",
    "how_are_you": "I'm fine, thank you for asking! What would you like to know about your visit?",
    "identity": (
        "I'm the information kiosk, a computer, not a person. I can answer questions about "
        "{topics}, and the staff are happy to help with anything else."
    ),
    "joke": (
        "I'm much better with facts than with jokes, I'm afraid. Ask me about {topics}, "
        "for example."
    ),
    "ack": "Is there anything else you'd like to know about your visit?",
}

# Decline: category -> the first sentence; `PolicySettings.decline_template` follows it.
DEFAULT_DECLINE_LEADS: Mapping[str, str] = {
    "unknown": "Sorry, I don't have an answer to that.",
    "booking": "Sorry, I can't book or reserve anything from this kiosk.",
    "payment": "Sorry, I can't take payments or answer questions about them here.",
    "calling": "Sorry, I can't make calls or send messages for you.",
    "weather": "Sorry, I don't have the weather forecast.",
    "news": "Sorry, I can't tell you about the news.",
    "live": "Sorry, I can't see what is free or how busy it is right now.",
    "records": "Sorry, I can't see anyone's own appointments or bookings.",
    "sports": "Sorry, I don't follow sports results.",
    "general": "Sorry, I can only answer questions about this place, not general knowledge.",
    "clock": "Sorry, I can't tell the time or the date.",
    "medical": (
        "Sorry, I can't give medical advice. If you need help now, please tell a member of "
        "staff straight away."
    ),
    "legal": "Sorry, I can't give legal advice.",
    "financial": "Sorry, I can't give financial advice.",
    "advice": "Sorry, I can't give personal advice.",
    "directions": "Sorry, I only know the way to and around this place.",
    "elsewhere": "Sorry, I only know about this place, not the others around it.",
    "timetable": "Sorry, I can't see train, bus or flight times.",
    "language": "Sorry, I only understand English.",
    "rejected": "Sorry, I misunderstood. Could you ask it in other words?",
}


@dataclass(frozen=True)
class PolicySettings:
    """What `decide` needs besides the question. Build `topics` once per FAQ with `faq_topics`."""

    answer_mode: Literal["faq", "llm"] = "faq"
    # A few things the FAQ covers, named in declines and some small-talk replies.
    topics: tuple[str, ...] = ()
    # Follows the decline's first sentence. {topics}: see above; {staff}: `staff`.
    decline_template: str = "I can help with questions about {topics}. For anything else, {staff}."
    decline_template_no_topics: str = "For that, {staff}."
    staff: str = "please ask a member of staff"
    chat_replies: Mapping[str, str] = field(default_factory=dict)  # overrides DEFAULT_CHAT_REPLIES
    decline_leads: Mapping[str, str] = field(default_factory=dict)  # overrides the defaults
    say_again: str = "Sorry, I didn't catch that. Could you say it again?"
    clarify_intro: str = "Do you mean:"
    # After the answer to one of several questions asked in one breath, when another of them
    # got none: the visitor would otherwise take the silence about it for an answer.
    other_part: str = (
        "I'm not sure about the other part of your question: could you ask it on its own?"
    )
    # Calibration on tests/data/understand/tune.toml (appliance/bench/understand_text.py).
    # Each ranked entry gets a *support*: semantic + coverage_weight * coverage, where semantic
    # blends the entry's embedding similarity with its best single sentence's (`fact_weight`),
    # and coverage is the IDF-weighted share of the question's specific words the entry has.
    faq_support: float = 0.45  # an entry's support needed to answer with it
    faq_margin: float = 0.06  # ... and its lead over the runner-up (else: clarify)
    faq_min_semantic: float = 0.25  # never answer or offer on lexical overlap alone
    # ... and never answer outright below this when no word of the question (nor a related
    # one) is in the heading: offer it back ("Do you mean ...?"). Common questions probed on
    # every FAQ were answered at 0.25-0.30 from one word of an answer ("how long does it take
    # to see everything?" with the bus: "takes 20 minutes"). On the text benches this turned
    # 8 answers into offers ("nappy" and the toilets' "baby changing": the embedder hardly
    # knows the word) and no wrong answer into anything (those matched a heading word).
    answer_min_semantic: float = 0.30
    clarify_support: float = 0.40  # an entry worth offering in a clarifying question
    clarify_window: float = 0.08  # offered entries: support within this of the best
    coverage_weight: float = 0.30
    fact_weight: float = 0.5
    # How much a word the FAQ never uses counts in coverage, relative to the rarest FAQ word:
    # it may be the real topic ("kettle") or just the visitor's wording ("nappy").
    unknown_weight: float = 1.0
    # This many question words that neither the FAQ nor the best entry's related words have:
    # offer the entry back ("Do you mean ...?") instead of answering with it.
    unmatched_confirm: int = 1
    # An entry is *anchored* when it has one of the question's specific words: one at most
    # `specific_share` of the entries use (2 at least), a word of its own heading (or related
    # to one: "drink" and the bar, concepts.py) at most `heading_share` of them use, or a word
    # the FAQ lacks whose stem it has ("charger" / "charge"). An unanchored entry shares only
    # common words ("room", "ticket") or none with the question, and needs
    # `unanchored_semantic`: that keeps "is there a kettle in the room" off "Do you have
    # accessible rooms?".
    specific_share: float = 0.08
    heading_share: float = 0.20
    unanchored_semantic: float = 0.50
    unanchored_margin: float = 0.12  # ... and this lead to be answered
    # ... and its own question (heading and answer as a whole, before the best sentence is
    # blended in) this close: "what year did the museum first open" was answered with the gift
    # shop, whose "It opens at the same times as the museum" alone matched.
    unanchored_question_semantic: float = 0.45
    # Anchored on one word while most of the question's words are missing from the entry
    # ("first aid room" on the toilets' "baby changing room"): a middling semantic match too.
    weak_coverage: float = 0.40
    weak_semantic: float = 0.40
    # A price asked whose words only the entry's answer has is answered from this semantic
    # up ("is the dome thing extra?" is not the wheelchair entry's "two spaces in the dome",
    # at 0.43); a place asked that way, from `weak_semantic` up.
    price_elsewhere_semantic: float = 0.45
    # A follow-up answered with the previous turn's entry again needs this lead (its combined
    # query contains that entry's heading, which favours it); so does one of the entries just
    # offered back when the visitor picked none (the previous question it is read with could
    # not tell them apart).
    repeat_margin: float = 0.20
    # Without an embedder: entries offered when they hold this share of the question's words.
    lexical_coverage: float = 0.5
    # A question word repaired to a FAQ word that sounds like it (`lookups(..., sounds=)`,
    # soundalike.py) that the best entry relies on: answered outright only from this score up,
    # else offered back ("Do you mean ...?"); above 1: never. 0.95 lets words run together that
    # spell a FAQ word ("night jar", "tug boat": 1.0) answer. On the tuning splits (text, ASR
    # transcripts, misheard-tune.toml) no threshold down to 0.80 answered wrongly, but only a
    # handful of questions were repaired, so the bar stays high.
    soundalike_answer: float = 0.95
    # Leave out an entry close by one sentence of its answer alone when another matches as
    # well as a whole (`_without_sentence_matches`); off only for comparisons.
    demote_sentence_matches: bool = True
    # ... and the repaired reading is taken only when its best entry's support is at least the
    # heard reading's best plus this (0.0 to 0.1 made no difference on the tuning splits).
    soundalike_gain: float = 0.0
    # A word of the best entry's own heading that the visitor neither said nor implied (nor a
    # related word) is a *qualifier* ("after check-out", "online"). Another entry lacking it is
    # a *rival* when it has a question word the best lacks, is about as close in meaning
    # (semantic at least the best's minus `qualifier_semantic`) and, where the best shares a
    # word with its own heading, has the higher coverage. With a rival the best is offered back
    # with it, not answered; a ramble's part is not answered alone when the whole question has
    # a rival for its entry. "our room isn't ready yet, can we leave our bags until it is" was
    # answered (from its last clause) with "Can I leave my luggage after check-out?" (whole
    # question: check-in's answer has "room" and "ready", semantic 0.53 vs 0.55, coverage 0.76
    # vs 0.52); "do I get a cheaper price" with "Can I buy tickets online?" (only its answer
    # has "cheaper"; the ticket price has "price", semantic 0.29 vs 0.30). Those need 0.025 and
    # 0.017; 0.0 to 0.05 changed no decision on the tuning splits (text, --soundalike), 0.08
    # asked back tune2's right "can we get dinner here in the hotel tonight".
    qualifier_semantic: float = 0.05
    # Similarity added to an entry whose answer holds the kind of contact detail asked for.
    contact_bonus: float = 0.15
    max_choices: int = 3


@lru_cache(maxsize=64)
def faq_topics(questions: tuple[str, ...], limit: int = 3) -> tuple[str, ...]:
    """A few short topic names from FAQ headings, spread over the FAQ, for decline and help
    replies: "What are the opening hours?" -> "the opening hours", "Is there parking?" ->
    "parking". Headings that do not reduce to a short noun phrase are skipped, and so is a topic
    sharing a word with an earlier one. Pass `tuple(e.question for e in kb.entries)`."""
    found: list[str] = []
    for q in questions:
        m = _TOPIC_RE.match(q.strip())
        if m is None:
            continue
        topic = m.group("topic").strip()
        words = topic.lower().split()
        if not 1 <= len(words) <= 3 or any(w in _TOPIC_SKIP for w in words):
            continue
        if any(set(words) & set(t.lower().split()) for t in found):
            continue
        found.append(("the " if m.group("det") else "") + topic)
    if len(found) <= limit:
        return tuple(found)
    step = (len(found) - 1) / (limit - 1) if limit > 1 else 0.0
    return tuple(found[round(i * step)] for i in range(limit))


_TOPIC_RE = re.compile(
    r"^(?:is there|are there|do you have|where (?:is|are)|what (?:is|are)|when (?:is|are)|"
    r"what time is)\s+(?P<det>(?:a|an|the|any|your)\s+)?(?P<topic>[^?]+?)"
    r"(?:\s+(?:open|served|available))?\s*\?$",
    re.IGNORECASE,
)
# Topic phrases that are not things ("What is there for kids to do?", "most famous exhibit").
_TOPIC_SKIP = frozenset("there it this that you i we my most to do for or the".split())


def _join(items: Sequence[str], conj: str = "and") -> str:
    """ "a", "a and b", "a, b and c" ("a, b, or c" for choices: the comma helps when spoken)."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    comma = "," if conj == "or" else ""
    return ", ".join(items[:-1]) + f"{comma} {conj} " + items[-1]


def _fill(template: str, settings: PolicySettings) -> str:
    return template.format(topics=_join(settings.topics[:3]) or "this place", staff=settings.staff)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Choice:
    """One option of a clarifying question: `label` is the entry's own heading (a button)."""

    id: str  # "1", "2", "3": the position, also what a visitor may say or a button may send
    label: str
    entry: FaqEntry


@dataclass(frozen=True)
class Decision:
    kind: Kind
    text: str  # what to say and show; "" only for kind "llm" (the model writes the reply)
    reason: str  # short, for logs: "confident", "ambiguous", "off_topic:booking", ...
    hit: Hit | None = None  # faq: the entry answered (llm: the best one)
    choices: tuple[Choice, ...] = ()  # clarify
    hits: tuple[Hit, ...] = ()  # llm: the facts for the prompt, best first

    @property
    def entry(self) -> FaqEntry | None:
        return self.hit.entry if self.hit is not None else None


@dataclass(frozen=True)
class PolicyContext:
    """What the policy remembers of the previous turn (the caller drops it when the
    conversation goes idle, like the dialog history)."""

    previous: Decision | None = None
    previous_question: str = ""

    @property
    def choices(self) -> tuple[Choice, ...]:
        """The options of a clarifying question still waiting for an answer."""
        p = self.previous
        return p.choices if p is not None and p.kind == "clarify" else ()

    @property
    def topic(self) -> FaqEntry | None:
        """The entry the previous turn answered, for follow-ups ("and for children?")."""
        p = self.previous
        return p.entry if p is not None and p.kind in ("faq", "llm") else None

    @staticmethod
    def after(question: str, decision: Decision, before: PolicyContext | None) -> PolicyContext:
        """The context for the next turn. A request to repeat keeps the earlier context (the
        visitor will say it again), and so does small talk ("thanks! and on Sundays?")."""
        if decision.kind == "say_again" and before is not None:
            return before
        if decision.kind == "chat" and before is not None and before.topic is not None:
            return before
        return PolicyContext(previous=decision, previous_question=question)


# --------------------------------------------------------------------------- text helpers

_WORD_RE = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def _words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _WORD_RE.findall(text.casefold())]


# Venue-independent words that say nothing about the topic; stemmed like `tokenize` does.
_GENERIC_WORDS = """
    get go come need want like know think tell ask make use look way thing much many long late
    still really very bit even just also ok okay yes no yeah please thank thanks sorry excuse
    im id ive ill dont cant isnt wont didnt doesnt arent wasnt couldnt wouldnt shouldnt let
    possible wonder wondering maybe perhaps actually roughly usually right now today tonight
    tomorrow sure alright good great nice one lot kind sort anything everything something
    else there here able told mean inside outside around away back nearby near latest later
    early last next ago since per time times keep put give find see say try bring buy sell
    visit wait stay show help work happen big bigger large larger huge small smaller tiny
    over site premises reckon whole massive might ugh
    itd itll thatd thatll youd youll youre theyd theyll theyre whatd
    gonna wanna gotta kinda sorta dunno lemme gimme
"""
# Words that say who asks, when, or how many, not what about: a question may carry them
# without asking anything the FAQ lacks ("what do I pay for my boy, he's eight").
_INCIDENTAL_WORDS = """
    like today morning evening night afternoon need way people person still myself weve im id
    isnt right even best easiest very few more much said somebody someone round set sort out
    pop place thing things stuff home travelling travel ever actually while during together
    less extra special number far nothing close closing shut start starts begin end finish
    monday tuesday wednesday thursday friday saturday sunday weekend weekday weekdays week
    christmas easter new year years holiday holidays bank midnight noon
    one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    hundred seventytwo half quarter
    mum mom mummy mommy dad daddy father mother grandfather grandmother grandma grandpa granny
    nan nana nanna gran grandad granddad
    parent parents friend friends husband wife partner son daughter boy girl man woman men women
    young old little guy guys lady baby's us we yall
    mate pal buddy hun love darling
    grab explain manage allow allowed hold mind bother reckon fancy fancied
    oclock o'clock real spot meet
    turn turns run running kindly thingy thingies folk folks lad lads lass absolutely whatll
    twice normal true meant nearly anyway immediately necessary necessarily solely quite
    bored boring middle further catch fit dead hang
    him her himself herself brother brothers sister sisters niece nephew cousin uncle aunt
    auntie grandson granddaughter grandchildren grandkids teenager teenagers everybody everyone
    dear maam madam sir well yet havent hasnt proper properly desperate desperately completely
    often anymore again supposed normally till
    couple goes went came coming gets getting got bought asked asking told knew thought
    wanted looking looked trying tried brought
    yesterday going once month months fortnight eve beforehand lovely such
    straight along quicker safely never used whack percent
    colleague colleagues workmate workmates boss upstairs downstairs
"""
# The months ("may" is left out: mostly a verb). They say when, so they are incidental too.
_MONTH_TERMS = frozenset(
    t
    for w in "january february march april june july august september october november "
    "december".split()
    for t in tokenize(w)
)
_INCIDENTAL_SET = (
    frozenset(t for w in _INCIDENTAL_WORDS.split() for t in tokenize(w)) | _MONTH_TERMS
)
# Words that name no topic, though a heading may need them ("after check-out"): a question
# word of these that the FAQ never uses is no sign that it asks about something else.
_UNTOLD_OK = frozenset(
    t
    for w in """whether your yours up down under over through past already exactly quickest
        typical general""".split()
    for t in tokenize(w)
)
# Numbers spoken in words, compounds and ordinals included ("sixty-eight", "twenty-fourth",
# "eight-year-old"): how many or when, never what about.
# Stems too ("fiv", "nin", "hundr"): `tokenize` stems the parts of a compound.
_NUMBER_TERM_RE = re.compile(
    r"(?:one|two|thre|three|four|fiv|five|six|seven|eight|nin|nine|ten|eleven|twelv|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
    r"fifty|sixty|seventy|eighty|ninety|hundr|hundred|first|second|third|fifth|eighth|ninth|"
    r"twelfth)+(?:th|year|old|month|week|day)*"
)


def _incidental(term: str) -> bool:
    """A question word that says who asks, when or how many, not what about."""
    return term in _INCIDENTAL_SET or _NUMBER_TERM_RE.fullmatch(term) is not None


_GENERIC = frozenset(t for w in _GENERIC_WORDS.split() for t in tokenize(w)) | frozenset(
    _GENERIC_WORDS.split()
)


def _content_terms(text: str) -> list[str]:
    return [t for t in dict.fromkeys(tokenize(text)) if t not in _GENERIC]


@lru_cache(maxsize=4096)
def _entry_terms(entry: FaqEntry) -> frozenset[str]:
    return frozenset(tokenize(entry.question)) | frozenset(tokenize(entry.answer))


@lru_cache(maxsize=4096)
def _heading_terms(entry: FaqEntry) -> frozenset[str]:
    return frozenset(tokenize(entry.question))


def _term_in(term: str, terms: frozenset[str]) -> bool:
    """Exact, or a shared stem of 5+ letters ("charger"/"charg", "bicycl"/"bicycles")."""
    if term in terms:
        return True
    if len(term) < 5:
        # A short stem with an agent ending the stemmer keeps: "pray" / "prayer".
        return len(term) == 4 and (term + "er" in terms or term + "ers" in terms)
    return any(len(t) >= 5 and (t.startswith(term) or term.startswith(t)) for t in terms)


def _shares(term: str, terms: frozenset[str]) -> bool:
    """`term` or a word visitors use for the same thing ("car" for parking) is in `terms`."""
    return _term_in(term, terms) or any(_term_in(r, terms) for r in related(term))


# --------------------------------------------------------------------------- input checks

_HAS_LETTER_RE = re.compile(r"[^\W\d_]")
# A transcript cut off mid-sentence ends on a word that cannot end one.
_DANGLING = frozenset(
    """a an the to of with and or but if my your our their his her from by about than as into
    because could would should""".split()
)
# ... of which these end no English sentence ("into", "her", "with", "from" may: "a shower I
# can roll into", "a bed for her"): an answer to what came before them is offered back.
_NEVER_LAST = frozenset("a an the my your our their and or but if because than".split())
# Words of other languages that English questions do not use: a question made mostly of them
# is not one this kiosk can read (voice ASR in English turns other languages into such words
# or into English-looking garbage; the latter declines on its own).
_FOREIGN = frozenset(
    """de het een en ik je niet waar wat hoe waarom alstublieft bedankt dank graag hallo
    der das und ist ich nicht wo wie bitte danke ein eine mit auf sie
    el la los las es y por favor donde dónde está estan están que qué cómo gracias hola una
    le les est où et je vous merci bonjour il elle une avec pour s'il plaît
    lo gli è dove grazie ciao
    os é onde obrigado obrigada você
    och är var tack hej jag inte""".split()
)
_ENGLISH = frozenset(STOPWORDS) | frozenset(_GENERIC_WORDS.split())


def _looks_foreign(words: Sequence[str]) -> bool:
    if len(words) < 2:
        return False
    foreign = sum(w in _FOREIGN for w in words)
    english = sum(w in _ENGLISH and w not in _FOREIGN for w in words)
    return foreign >= 2 and foreign > english


def _say_again_reason(question: str, cleaned: str) -> str | None:
    """Why the transcript is not a question to answer, or None."""
    if not _HAS_LETTER_RE.search(cleaned):
        return "empty" if not question.strip() else "filler_only"
    words = _words(cleaned)
    if words and all(len(w) == 1 for w in words) and len(words) > 1:
        return "garbage"
    if words and max(len(w) for w in words) > 40:
        return "garbage"
    if _looped(words):
        return "looped"
    return None


def _looped(words: Sequence[str]) -> bool:
    """A phrase of one to four words heard three times running: "the kiosk, the kiosk, the
    kiosk, ...", which the recogniser makes of babble it cannot follow (held-out 26: answered
    with the entry whose text names the kiosk)."""
    for n in range(1, 5):
        for i in range(len(words) - 3 * n + 1):
            phrase = words[i : i + n]
            if phrase == words[i + n : i + 2 * n] == words[i + 2 * n : i + 3 * n]:
                return not all(w in _REPEATED_OK for w in phrase)
    return False


# Said three times on purpose: "no no no", "thank you, thank you, thank you", "very very".
_REPEATED_OK = frozenset(
    """no yes yeah bye very really please thanks thank you cheers ta sorry hello hi hey ha la
    oh wow okay ok""".split()
)


def _cut_off(cleaned: str) -> bool:
    """'can I, is it possible to' / 'I was wondering if you could, the thing with the'."""
    stripped = cleaned.rstrip()
    if stripped.endswith("."):
        # The recogniser ends what it heard with a full stop, finished or not: "Ride, toilet,
        # and." ("right, ta-ra then", misheard). Not "a": "Is it gate A."
        return _words(stripped)[-1:] in (["and"], ["or"], ["but"], ["the"], ["because"], ["if"])
    if stripped.endswith(("?", "!")):
        return False
    words = _words(stripped)
    if words[-2:-1] == ["the"] and words[-1] in ("nearest", "closest"):
        return True  # "where's the nearest", not "which stop is closest"
    if words[-2:] in (["one", "that"], ["ones", "that"]):
        return True  # "is it the one that—"
    return bool(words) and words[-1] in _DANGLING


# The visitor takes back what they began: "the bar... no wait, the, erm, sorry, what was—".
_RETRACT_RE = re.compile(
    r"\b(?:no,? wait|wait,? no|no,? sorry|sorry,? i mean|scratch that|actually,? no|"
    r"never ?mind|ignore (?:that|me|this)|no,? hang on)\b|"
    # A restart given up at its first word: "the pots, the, no—" (no English sentence ends on
    # "the no"; "the no-entry sign" goes on).
    r"\b(?:the|a|an|my|your|our|this|that|those|these)[,.]? no\b(?=[\s,.;:!?\u2014\u2026-]*$)|"
    # Lost the thread: "the kids are... what was I—".
    # Only where the clause ends: "where was I parked?" asks something.
    r"\b(?:what|where) was i\b(?: (?:saying|on about|going to (?:say|ask)))?"
    r"(?=\s*(?:$|[,.;:!?\u2014\u2026-]))|"
    # Said to someone else: "sorry, ignore that, I was talking to my colleague".
    r"\b(?:i was|i'm|i am) (?:just )?(?:talking|speaking) to (?!you\b)|"
    # Not "I always forget it": only where a clause starts.
    r"(?:^|[,.;!?\u2014-]\s*)(?:oh,? )?(?:no,? )?(?:actually,? )?forget (?:that|it)\b",
    re.IGNORECASE,
)


# Left after a retraction without asking anything; fillers and "sorry" are gone already.
_APOLOGY = frozenset(tokenize("pardon"))


def _retraction(cleaned: str) -> str | None:
    """Something was taken back and nothing with a word of its own came after it: what came
    after it (None otherwise). Answering what was taken back answers what the visitor said
    they did not mean (held-out 20 answered the bar's hours)."""
    found = list(_RETRACT_RE.finditer(cleaned))
    if not found:
        return None
    rest = strip_fillers(cleaned[found[-1].end() :])
    own = [t for t in _content_terms(rest) if t not in _APOLOGY]
    # "... forget it, my wife is sorting it" says who, not what: no question after it.
    asks = _ASKS_RE.match(rest.lstrip(" ,.;:!\u2014-")) is not None
    return rest if not own or (all(_incidental(t) for t in own) and not asks) else None


# Words a journey's "to" follows: its destination is what was cut off ("the one that goes to").
_TO_PLACE = frozenset(
    """go goes going get getting travel travelling train trains bus buses tram trams ticket
    tickets return single way fare journey""".split()
)


def _unfinished(words: Sequence[str]) -> bool:
    """The last word leaves the sentence open: it ends none ("the", `_NEVER_LAST`), or it is
    the "to" of a journey ("a ticket to"). "Where does it go to?" asks where, and ends there."""
    if words[-1] in _NEVER_LAST or words[-2:] in (["one", "that"], ["ones", "that"]):
        return True  # "the", "is it the one that"
    return (
        words[-1] == "to"
        and len(words) >= 2
        and words[-2] in _TO_PLACE
        and not any(w in ("where", "where's", "wherever") for w in words)
    )


# --------------------------------------------------------------------------- small talk

# How someone is inside the kiosk: "is someone *sat* in there?"
_PERCHED = r"(?:(?:sat|sitting|stood|standing|hiding) )?"
_CHAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (intent, re.compile(pattern, re.IGNORECASE))
    for intent, pattern in (
        (
            "identity",
            r"\bwho (?:are|r) (?:you|u)\b|"
            r"\bwhat (?:are|r) (?:you|u)\b(?: for\b)?(?! (?:doing|open|selling))|"
            r"\bare you (?:a |an )?(?:real|human|robot|bot|computer|machine|person|ai|"
            r"artificial|alive)\b(?: (?:person|being|intelligence))?"
            r"(?:,? or (?:a |an |just )?(?:real |actual )?(?:human|robot|bot|computer|machine|"
            r"person|ai|program|recording)(?: being)?\b)?"
            r"(?:,? or is (?:there|it) (?:a |an |just )?(?:real |actual )?(?:person|human|"
            r"someone|somebody|people)(?: in there| inside| behind (?:it|this|you)|"
            r" (?:talking|speaking) (?:through|for) (?:you|it|this))?\b)?"
            r"(?:,? or is (?:there )?(?:somebody|someone|anybody|anyone|a person|a human) "
            rf"{_PERCHED}"
            r"(?:listening|there|in there|inside|watching|real)\b)?"
            r"(?:,? or (?:is )?(?:this|it) (?:just )?(?:a |an )?(?:computer|machine|robot|bot|"
            r"recording|program|ai)\b)?|"
            # Heard without its start: "A real person or is this a computer?"
            r"^\W*(?:a )?real person,? or (?:is (?:it|this) )?(?:just )?(?:a |an )?(?:computer|"
            r"machine|robot|bot|recording)\b|"
            r"\bis (?:there )?(?:someone|somebody|anyone|anybody|a (?:real )?person|a human) "
            rf"{_PERCHED}"
            r"(?:behind|in|inside) (?:there|here|this|it|you|the screen)\b|"
            r"\bwhat(?:'s| is) your name\b|\bwho (?:made|built|created) you\b|"
            r"\b(?:who|what) am i (?:talking|speaking) (?:to|with)\b|"
            r"\bam i (?:talking|speaking) (?:to|with) (?:a |an )?(?:real )?(?:computer|machine|"
            r"robot|bot|person|human|ai|recording)\b|"
            r"\bwhat is this(?: thing| machine| screen)? for\b|"
            r"\bwhat (?:(?:sort|sorts|kind|kinds) of )?(?:things? |stuff |questions? )?"
            r"(?:can|could|should) (?:i|we) ask(?: you)?(?: about| for)?\b|"
            r"\bwhat (?:can|do|could) (?:you|u) (?:(?:actually|really|even|possibly) )?"
            r"(?:do|know|help (?:me |us )?(?:out )?with|do for (?:me|us))\b",
        ),
        (
            "joke",
            # "tell me a science joke", "got any good dad jokes": up to two words before it.
            r"\b(?:tell|know|got|have) (?:me |us )?(?:a |any |another )?(?:[\w-]+ ){0,2}?jokes?"
            r"(?: about (?:a |an |the )?[\w-]+)?\b|"
            r"\btell (?:me|us) something funny\b|\bsay something funny\b|\bmake (?:me|us) laugh\b",
        ),
        (
            "how_are_you",
            r"\bhow are (?:you|u|things)\b(?: doing| today)*|\bhow(?:'s| is) (?:it going|"
            r"your day(?: going)?|everything|life)\b|\bhow do you do\b|"
            # Said, not written: "how you doin'?", "how's it goin'", "(are) you all right?"
            r"\bhow(?: are| r)? (?:you|ya|u) doin(?:g|')?(?: today)?(?=\W|$)|"
            r"\bhow(?:'s| is) it goin(?:g|')?(?=\W|$)|"
            r"\b(?:are )?(?:you|ya) (?:ok|okay|well|alright|all right|doing well)\b|"
            # A remark on the kiosk's own day: "don't you get cold standing here all day?"
            r"\b(?:don't|do) (?:you|ya) (?:ever )?get (?:cold|bored|tired|lonely|fed up)"
            r"(?: (?:standing|stood|sat|sitting|stuck) (?:here|there|in here|out here))?"
            r"(?: all day(?: long)?)?\b|"
            # "Hiya, you alright?" as the recogniser writes it: "Hi, you are right.", "Hire you
            # all right" (the whole utterance only: "hire" is a word of many FAQs).
            r"^\W*(?:hi|hiya|hire|hello|hey)\W+(?:are )?you (?:are|all) right\W*$",
        ),
        (
            "goodbye",
            r"\b(?:good ?bye|bye(?: bye)?|byebye|good ?night|"
            r"see (?:you|ya)(?: later| soon| again| around| tomorrow| next (?:week|time|month|"
            r"year|weekend))?|"
            r"farewell|take care|have a (?:nice|good|great|lovely) (?:day|evening|night|one|time|"
            r"stay|visit|weekend|holiday)|enjoy (?:your|the rest of your) (?:day|evening|night|"
            r"afternoon|stay|visit|weekend|holiday)|"
            r"ta-ra|tara|ta ta|cheerio|laters)\b|"
            r"\b(?:that(?:'s| is) (?:me|us)|i'm|i am|we're|we are) off\b|"
            r"\b(?:safe (?:travels|journey|trip|home|drive)|drive (?:safe|safely|carefully))\b|"
            r"\b(?:let's|let us|we'd better|i'd better|we must|i must) (?:be |get )?(?:off|going|"
            r"make a move)\b|"
            r"\b(?:talk|speak) to (?:you|ya) (?:soon|later|again|another time)\b|"
            r"\bthat(?:'s| is| was) (?:all|it)(?: for (?:now|today)| i (?:needed|wanted)"
            r"(?: to know)?)?,? (?:then,? )?(?=.*\b(?:bye|goodbye|thanks|thank you|cheers)\b)|"
            r"\b(?:thanks|cheers|thank you)[,.!]? that(?:'s| is| was) (?:all|it|everything)"
            r"(?: i (?:needed|wanted)(?: to know)?)?\b",
        ),
        (
            "thanks",
            r"\b(?:thank you|thanks|thank u|thx|cheers|much appreciated|appreciate it)\b"
            r"(?: (?:ever so|so|very) much| a lot| a million| a bunch| loads| again)?"
            r"(?: for (?:that|this|all (?:that|this)|"
            r"(?:all )?your help|the help|helping(?: me| us)?|everything|the info(?:rmation)?))?|"
            r"\b(?:that|this|it|you)(?:'s|'ve|'re| was| is| have| were| are)? (?:been )?"
            # One word misheard before the intensifier: "you've been immersed so helpful".
            r"(?:(?:[a-z]+ )?(?:really|very|so|super|dead|proper|ever so) )?(?:helpful|help ?full|"
            r"help for|great|perfect|sorted|"
            r"useful|lovely|brilliant|wonderful|amazing|kind|grand|ace|magic|smashing|"
            r"(?:a )?(?:star|gem|great help|"
            r"big help|life ?saver))\b|"
            # British "ta", also heard "Tah!": at the end, or before "very much".
            r"\b(?:ta|tah)\b(?= very much|\W*$)|"
            r"\b(?:that|this|it|you)(?: (?:really|very much|so much|a lot))? helped(?: (?:me|us))?"
            r"(?: (?:a lot|so much|very much|loads))?\b",
        ),
        (
            "greeting",
            # "God morning": how the recogniser often hears a quick "good morning".
            r"\b(?:hi|hello|hallo|hullo|hey|hiya|howdy|greetings|"
            r"go+d (?:morning|afternoon|evening|day)|morning|afternoon|evening)\b"
            r"(?: there| everyone| all| you)?|"
            r"\b(?:good )?(?:mornin|evenin)'?(?=\W|$)|"
            # A child says who they are: "hello robot! I'm six!", "my name's Zara".
            r"(?<=\W)(?:i'm|i am) (?:only )?(?:\d{1,2}|one|two|three|four|five|six|seven|eight|"
            r"nine|ten|eleven|twelve)(?: (?:and a half|years? old))?(?=\W*$)|"
            r"\bmy name(?:'s| is) [a-z]+(?=\W*$)",
        ),
        (
            "ack",
            r"^\W*(?:(?:yes|yeah|yep|no|nope|ok|okay|sure|alright|all right|great|cool|fine|nice|"
            r"good|right|i see|got it|understood)\W*)+$",
        ),
        (
            # Small talk on the day: "lovely day for a crossing, isn't it?"
            "ack",
            r"\b(?:(?:it's|it is|what) (?:a )?)?(?:lovely|beautiful|nice|gorgeous|glorious|grand|"
            r"miserable|horrible|awful|grim|dreadful|cold|hot|warm|wet|grey|chilly) (?:day|"
            r"morning|afternoon|evening|one)(?: (?:for (?:it|a \w+|the \w+)|out there|today))?"
            r"(?:,? (?:isn't it|ain't it|innit|eh))?\b",
        ),
        (
            # A compliment: "you're a funny talking box!"
            "ack",
            r"\byou(?:'re| are) (?:a |an |such a |so |very |really )*(?:funny|clever|smart|"
            r"cute|sweet|good|great|nice|lovely|brilliant|amazing|helpful|cool|fun|polite)"
            r"(?: (?:little|talking|wee|clever|funny))*(?: (?:box|machine|robot|kiosk|thing|"
            r"computer|one))?\b",
        ),
    )
)
# Left over around small talk without making it a question: "ok bye bye", "well thanks!".
_CHAT_FILLER = frozenset(
    """ok okay so well oh ah and then yes yeah yep no nope great nice cool alright right
    really very much a lot again you too again all sir madam friend young man lady there
    just i we wanted to say please wait exactly actually can could would you me us
    brilliant lovely perfect super excellent fab fantastic wonderful awesome ta
    robot kiosk machine mate buddy guys folks everyone now we'll i'll love pet duck hun
    go on ha hah aren't isn't ain't innit eh haha hehe lol by ooh oo wow talking box
    help""".split()  # and tag questions: "you're clever, aren't you?"
)


# A capitalised word after a comma or a word: a name ("Lovely, thank you, Emma so much").
_NAME_RE = re.compile(r"(?<=[,\w] )[A-Z][a-z]+\b")
# A word that makes a question of what is left beside small talk.
# ("a joke about the prime minister" asks for a topic the staff's jokes are not on.)
_CHAT_ASKS_RE = re.compile(r"\b(?:what|where|when|how|why|which|who|whose|anywhere|about)\b|\?")


def _chat_intent(text: str, faq_terms: Collection[str] = ()) -> str | None:
    """The small-talk intent when the utterance is only small talk, else None. `faq_terms`:
    the utterance's terms the FAQ uses, none of which is taken for a name."""
    found: list[str] = []
    rest = text
    for intent, pattern in _CHAT_PATTERNS:
        if pattern.search(rest):
            found.append(intent)
            rest = pattern.sub(" ", rest)
    if not found:
        return None
    # A name between the words ("thank you, Emma, so much", "hello, Nair, are you a
    # computer?": how a recogniser hears "thank you ever so much" or "hello there") is still
    # small talk; a capitalised word is only a name inside the sentence, not at its start.
    names = {
        w.casefold() for w in _NAME_RE.findall(rest) if not any(t in faq_terms for t in tokenize(w))
    }
    leftover = [
        w for w in _words(strip_fillers(rest) or "") if w not in _CHAT_FILLER and w not in names
    ]
    if leftover and not (found[0] == "joke" and not _CHAT_ASKS_RE.search(text)):
        # Besides a joke asked for, only a remark may be left ("go on then, tell us a joke,
        # the kids are getting bored"); a question is no small talk.
        return None
    return found[0]  # patterns are in priority order: "hi, who are you?" is about identity


# --------------------------------------------------------------------------- out of scope

# Requests the kiosk cannot carry out and topics no venue FAQ covers. Each is declined unless
# the best entry's own heading matches the same pattern (the staff wrote an answer for it).
_REQUEST = r"(?:can|could|would|will) (?:you|u)(?: please| just| maybe)?"
_SPORT_NAMES = (
    r"\b(?:football|soccer|basketball|baseball|tennis|cricket|rugby|hockey|formula one|"
    r"world cup|premier league|champions league|olympics)\b"
)
# The weather as a topic, against the forecast asked for (the first "weather" row below): a
# weather the question supposes is no forecast where the staff wrote about it (`_off_topic`).
_WEATHER_TOPIC = (
    r"\b(?:weather|forecast|rain(?:ing|y)?|snow(?:ing)?|sunny|temperature outside|"
    r"frost(?:y)?|storms?|stormy|windy|thunder(?:storms?)?|hail(?:ing)?|fog(?:gy)?|"
    r"heat ?wave|freezing (?:outside|tonight|today|tomorrow)|"
    r"going to be (?:hot|cold|warm|nice) (?:today|tomorrow|later|outside))\b"
)
# "the" just before a weather word: a thing there ("on the snow"), not the weather to come.
_THE_BEFORE_RE = re.compile(r"\bthe\s+$", re.IGNORECASE)
_OFF_TOPIC: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile(pattern, re.IGNORECASE))
    for category, pattern in (
        (
            "booking",
            rf"\b{_REQUEST} (?:book|reserve|order|buy|get|cancel|change)\b.{{0,30}}"
            r"\b(?:for (?:me|us)|me|us)\b|\b(?:book|reserve) (?:me|us)\b|"
            r"\bi(?:'d| would) like to (?:book|reserve|order|cancel)\b|"
            r"\bmake (?:me )?(?:a |an )?(?:booking|reservation)\b|"
            rf"\b{_REQUEST} (?:book|reserve) (?:up |us |me )?(?:a |the )?table\b|"
            # "Please book me two seats" heard as "please work me two seats": the request is
            # in its shape, whatever the verb was heard as.
            r"\bplease (?!tell\b|show\b)\w+ (?:me|us) (?:a |an |one |two |three |four |five |six |"
            r"\d+ )?(?:seats?|tickets?|places?|spaces?)\b",
        ),
        (
            "payment",
            r"\bpay (?:my|the|our) (?:bill|invoice|account|tab)\b|"
            r"\bpay\b.{0,30}\b(?:card|cash|contactless|credit|debit|apple pay|google pay)\b|"
            r"\b(?:card|contactless|cash|credit card) payments?\b|"
            r"\bcan (?:i|we) pay\b.{0,25}\bhere\b",
        ),
        (
            "calling",
            rf"\b{_REQUEST} (?:call|phone|ring|text|message|contact|page|email)\b|"
            r"\b(?:call|phone|ring|text) my (?:husband|wife|partner|friend|mum|mom|dad|son|"
            r"daughter|family|mobile|phone|number)\b",
        ),
        (
            # Asking for the forecast, even where an entry is on bad weather ("what's the
            # weather doing on the island tomorrow?" is not whether sailings get cancelled).
            "weather",
            r"\bwhat(?:'s| is| will) the (?:weather|forecast)\b(?! (?:policy|warnings?))|"
            r"\bweather forecast\b|\bforecast (?:for|says|is)\b|\bwill it (?:rain|snow|be sunny)\b|"
            r"\bis it (?:going|gonna) to (?:rain|snow|be (?:sunny|nice|dry|wet|cold|hot|warm))\b",
        ),
        ("weather", _WEATHER_TOPIC),
        ("news", r"\b(?:news|headlines)\b"),
        (
            # What is free or left right now, which the kiosk cannot see: "is there still room
            # for a car on the half one sailing?" (a ferry's FAQ says so in its opening lines).
            "live",
            r"\bis there (?:still (?:any )?(?:room|space)|(?:any )?(?:room|space) left)\b|"
            r"\b(?:any|how many) (?:\w+ )?(?:seats|spaces|places|tickets|rooms|tables|beds) "
            r"(?:are |(?:have |do )?(?:you|u) (?:got |have )?)?(?:still )?(?:left|free|available)\b"
            r"(?! (?:to|for) (?:buy|book|hire))|"
            r"\b(?:are|is) there still (?:any )?"
            r"(?:seats|spaces|places|tickets|rooms|tables|beds)\b|"
            # "is the number 12 running late?": a live timetable.
            r"\b(?:is|are) (?:the|it|they|that|this|my|our)\b(?: \w+){0,3} "
            r"running (?:late|behind)\b|"
            r"\b(?:is|are) (?:it|they|the \w+) (?:sold out|fully booked)\b|"
            r"\bhow (?:long|bad|big)(?:'s| is| are) the (?:queues?|wait)\b(?! (?:usually|normally|"
            r"typically|on|at))|\bhow busy is it (?:right )?now\b|"
            # "is the physics talk already full?", "is car park P3 full yet?"; not "is it
            # full of ..." or "is it usually full on Saturdays?".
            r"\b(?:is|are) (?:the|it|they|that|this|car park)\b(?: [\w-]+){0,3} "
            r"(?:already |yet )?(?:full|full up|packed)\b"
            # Not the full price: "does she get in any cheaper or is it full whack?"
            r"(?! (?:of|on|at|by|in|during|whack|price|fare|rate|cost|adult|ticket)\b)"
            r"(?!.*\b(?:usually|normally|ever|often|always)\b)",
        ),
        # The visitor's own appointment, which the kiosk cannot look up: "can you tell me
        # what time my appointment is? I've lost the letter" (held-out 29: answered with how
        # to check in).
        (
            "records",
            r"\b(?:what time|when)(?:'s| is| was)? (?:my|our|his|her|their) (?:\w+ )?"
            r"(?:appointment|appointments|operation|scan|slot)\b(?! letter)|"
            r"\bwhat time (?:my|our|his|her|their) (?:\w+ )?(?:appointment|operation|scan) is\b",
        ),
        # "the train times to London for tomorrow": a timetable, unless the staff wrote an
        # entry on where to find one ("Where can I see bus times?").
        (
            "timetable",
            r"\b(?:train|bus|tram|coach|ferry|flight) (?:times|timetables?|departures)\b",
        ),
        # Results, players and the transfer market: what no venue's FAQ can know, a stadium's
        # included.
        (
            "sports",
            r"\bwho won\b|\bwhat was the score\b|\bthe score (?:in|of)\b|"
            # Fixtures: "who are we playing on Saturday?" (held-out 30: answered with a tour).
            r"\bwho (?:are|is|'re|r) (?:we|they|you|u|the \w+|\w+) (?:playing|up against)\b|"
            r"\bwho(?:'s| is) (?:playing|on) (?:today|tonight|this|next|on|at)\b|"
            r"\btransfer (?:fee|window|market)\b|\b(?:league table|relegated|relegation)\b|"
            r"\b(?:centre[- ]backs?|strikers?|midfielders?|full[- ]backs?|goalkeepers?|"
            r"wingers?)\b",
        ),
        # A sport named: out of scope unless the site's own FAQ talks about it (at a football
        # stadium, "my boy's football mad, do you do kids' parties?").
        (
            "sports",
            _SPORT_NAMES,
        ),
        (
            "general",
            r"\bcapital (?:city )?of\b|\bwho (?:was|were|is) the (?:first|last|president|king|"
            r"queen|prime minister|inventor|author)\b|\bwho (?:invented|discovered|wrote|painted|"
            r"composed|founded)\b|\bhow (?:far|old|big|tall|deep|hot) (?:away )?is the "
            r"(?:moon|sun|earth|world|sea|ocean|universe)\b|\bmeaning of life\b|"
            r"\bspeed of (?:light|sound)\b|\bwhat (?:is|are) \d+ (?:times|plus|minus|divided)\b|"
            r"\bpopulation of\b|\bhow many people live\b|\bhelp (?:me )?with my homework\b",
        ),
        (
            "clock",
            r"\bwhat time is it\b|\bwhat(?:'s| is) the (?:time|date)\b(?! (?:of|for))|"
            r"\bwhat(?:'s| is) (?:today's|the) date\b|\bwhat day is (?:it|today)\b",
        ),
        (
            "medical",
            r"\b(?:headache|migraine|toothache|tooth|dentist|doctor|medicine|medication|"
            r"painkillers?|paracetamol|ibuprofen|aspirin|fever|sick|ill|injured|bleeding|"
            r"allergic|allergy|diabetic|pregnant|chest pain|dizzy|ambulance|"
            # The hospital as a place to go is a journey ("which bus goes to the hospital?").
            r"(?<!\bto the )(?<!\bto )hospital|"
            r"prescription|symptoms?)\b",
        ),
        (
            "legal",
            r"\b(?:lawyer|solicitor|attorney|legal advice|landlord|tenant|sue|lawsuit|"
            r"visa|immigration|residence permit|deposit back|divorce)\b|"
            # A court of law, not a food court or a badminton court.
            r"\b(?:to|in|at) court\b|\bcourt (?:case|order|hearing|date|summons)\b",
        ),
        (
            # Advice on the visitor's own choices: "do you think it's a good idea to get one as
            # a pet?" (not "is it a good idea to bring a coat?", which an FAQ may answer).
            "advice",
            r"\bdo you think (?:it's|it is|it'd be|it would be) a good idea\b|"
            r"\b(?:get|getting|buy|buying|have|having|keep|keeping) (?:one|them|a \w+|some) as "
            r"(?:a )?pets?\b",
        ),
        (
            "financial",
            r"\b(?:invest|investment|stocks?|shares|mortgage|loan|tax return|taxes|crypto|"
            r"bitcoin|pension fund|savings account|insurance|insured)\b",
        ),
    )
)
# A weather the question supposes: "if it's windy", "when it rains", "because of the weather".
_IN_WEATHER_RE = re.compile(
    r"\b(?:if|when|whenever|in case) (?:it|the weather)(?:'s| is| gets| turns| does| starts|"
    r" was)?\b|\bbecause of (?:the |bad |the bad )?weather\b|\bin (?:bad|wet|the) weather\b|"
    r"\bin (?:the )?rain\b",
    re.IGNORECASE,
)
# Staff text that says what happens in some weather.
_WEATHER_WORDS_RE = re.compile(
    r"\b(?:weather|rain|rains|raining|rainy|wet|wind|winds|windy|storms?|thunderstorms?|snow|"
    r"icy|ice|fog)\b",
    re.IGNORECASE,
)
# A heading about how to pay.
_PAYMENT_HEADING_RE = re.compile(
    r"\b(?:cash|contactless|payments?|pay|paying|cheques?|(?:credit|debit|bank) cards?|"
    r"(?:take|accept) cards)\b",
    re.IGNORECASE,
)
# A heading on what to do when someone is hurt or ill.
_CARE_RE = re.compile(
    r"\b(?:first aid|emergency|emergencies|hurt|injured|injury|injuries|accident|accidents|"
    r"unwell|medical|medic)\b",
    re.IGNORECASE,
)
# A visitor's condition, and the staff's words for food or rules that allow for one.
_CONDITION_RE = re.compile(
    r"\b(?:diabetic|diabetes|insulin|allergic|allerg(?:y|ies)|pregnant|pregnancy|"
    r"medical (?:reasons?|needs?|conditions?))\b",
    re.IGNORECASE,
)
# A question that asks where to go or where something is.
_ASKS_PLACE_RE = re.compile(
    r"\b(?:where|which way|somewhere|anywhere)\b|\bhow (?:do|can) (?:i|we) (?:find|get to)\b",
    re.IGNORECASE,
)
# "How do I get to X", "where is the nearest X": declined unless the best entry names X.
_DIRECTIONS_RE = re.compile(
    r"\b(?:how (?:do|can|would|should) (?:i|we|you) get to|how (?:do|can) (?:i|we) find(?! out)|"
    r"where(?:'s| is| are) (?:the )?(?:nearest|closest)|directions to|how far (?:is|to)|"
    r"which way (?:is|to))\s+"
    r"(?P<dest>[^?.!,]*)",
    re.IGNORECASE,
)

# "place to park", "spot where we can eat": the doing names the place ("to leave the car":
# the car does).
_PLACE_TO_RE = re.compile(
    r"^\s*(?:place|spot|bit|area)s?\s+(?:to|for|where (?:i|we|you) (?:can|could))\s+"
    rf"(?:{LEAVE_VERBS}\s+)?",
    re.IGNORECASE,
)

# Anything else about another place: "what time does the nearest supermarket close?".
_ELSEWHERE_RE = re.compile(
    r"\bthe (?:nearest|closest)\s+(?P<dest>[^?.!,]*)",
    re.IGNORECASE,
)

# A place named by where it is from here: "is the Aldi down the road open on Sundays?" (not
# "next door": at a hotel, the people next door are the neighbours).
_NEARBY_PLACE_RE = re.compile(
    r"\bthe (?P<dest>\w+(?: \w+)?) (?:just )?(?:down the road|up the road|down the street|"
    r"round the corner|around the corner|across the road|over the road|across the street)\b",
    re.IGNORECASE,
)

# Places of a kind asked for around here: "any nice restaurants round here?", "is there a
# chemist nearby?" (answered where the best entry names the kind: a chemist's entry).
_AROUND_HERE_RE = re.compile(
    r"\b(?:any|the|is there an?|are there (?:any )?)\s+(?:(?:good|nice|decent|cheap|proper) )?"
    r"(?P<dest>\w+(?: \w+)?)\s+(?:round here|around here|near ?by|near here|close by)\b",
    re.IGNORECASE,
)

# Whether a named place is open: "is the Norbridge museum open on Sundays?", "do you know if
# the pier's open today?" (declined where the FAQ never names the place: asked back before).
_PLACE_OPEN_RE = re.compile(
    r"\b(?:is|are|if|whether|does|do|will) the (?P<dest>\w+(?: \w+){0,2}?)(?:'s| is| are)? "
    r"(?:open|opens|close|closes|closed|shut|shuts)\b",
    re.IGNORECASE,
)
_IN_HERE_RE = re.compile(r"\b(?:in here|here|inside|on site)$", re.IGNORECASE)
# ... a kind of place that no word of the FAQ is: a misheard name of the site's own bar
# ("the night jar") or a part it calls otherwise ("the fitness room") is no other place.
_KINDS_OF_PLACE = frozenset(
    tokenize(
        "museum museums pier piers church churches cathedral abbey chapel mosque temple "
        "synagogue library castle palace post office bank supermarket pub pubs beach "
        "cinema theatre tower lighthouse market chemist pharmacy zoo aquarium gallery "
        "stadium arcade funfair baths lido"
    )
)

# A service's times to another place: "when's the next train to Birmingham?" (declined unless
# the best entry names the place, as a station's "trains to Leeds leave from platform 2" may).
# Only when asked when: "is there a ticket machine for the next train to Leeds?" is not.
_TIMETABLE_RE = re.compile(
    r"\b(?:when|what times?|how long|how soon)\b.{0,30}?"
    r"\b(?:next|last|first|earliest|latest) (?:trains?|bus|buses|trams?|coach|coaches|ferry|"
    r"ferries|boats?|flights?|sailings?) (?:to|for|into|from)\s+(?P<dest>[^?.!,]*)",
    re.IGNORECASE,
)

# Where a destination ends and the way there begins ("from here", "by bus", "on foot").
_ROUTE_RE = re.compile(
    r"\b(?:from|by|on|via|using|with|without|in|at|before|after|tonight|today|tomorrow)\b",
    re.IGNORECASE,
)

# A request to the kiosk itself; the best entry's heading being one too ("Can you call me a
# taxi?") means the staff answered that request.
_REQUEST_RE = re.compile(rf"\b{_REQUEST}\b", re.IGNORECASE)
_REQUESTS = frozenset({"booking", "calling"})
# Requests that another question in the same breath does not depend on.
_SEPARATE_REQUESTS = frozenset({"booking", "calling", "payment"})


# Paying, buying or booking through the kiosk: "can I pay for the fast lane thing on this
# screen with my card?" (held-out 29: answered with the Fast Lane's price, as though it could).
_ON_THE_KIOSK_RE = re.compile(
    r"\b(?P<verb>pay|buy|book|reserve|order)\b[^.?!]{0,50}?\b(?:"
    r"(?:on|through|using|via) (?:this|the|your) (?:screen|kiosk|touch ?screen)|"
    # "at the screen" is a cinema's auditorium; the kiosk's own screen is "this" one.
    r"(?:at|from) (?:this|your) (?:screen|kiosk|touch ?screen)|(?:at|from) the kiosk)\b",
    re.IGNORECASE,
)


def _sites_own(pattern: re.Pattern[str], text: str, faq_terms: Collection[str]) -> bool:
    """Every word `pattern` matched is the site's own matter, where the FAQ uses it: its sport
    ("my boy's football mad" at a football stadium), or its snow after "the" ("up on the snow"
    at a snow centre, held-out 30: declined as the weather; "will it snow?" is still that)."""
    for m in pattern.finditer(text):
        if pattern.pattern == _WEATHER_TOPIC and not _THE_BEFORE_RE.search(text[: m.start()]):
            return False
        if not all(t in faq_terms for t in tokenize(m.group(0))):
            return False
    return True


def _off_topic(text: str, best: Hit | None, faq_terms: Collection[str] = ()) -> str | None:
    """The category of an out-of-scope request or topic, unless the FAQ covers it.
    `faq_terms`: the query's terms that the FAQ uses somewhere (`_faq_terms`)."""
    heading = best.entry.question if best is not None else ""
    kiosk = _ON_THE_KIOSK_RE.search(text)
    if kiosk is not None:
        # Paying or booking on the kiosk itself, whatever the FAQ says of paying elsewhere.
        return "booking" if kiosk.group("verb").lower() in ("book", "reserve") else "payment"
    for category, pattern in _OFF_TOPIC:
        if not pattern.search(text):
            continue
        if pattern.search(heading):
            continue
        if pattern.pattern in (_SPORT_NAMES, _WEATHER_TOPIC) and _sites_own(
            pattern, text, faq_terms
        ):
            continue
        if category == "medical" and _CARE_RE.search(heading):
            # The staff wrote what to do when someone is hurt ("where's the nearest
            # hospital?" and an entry on emergencies that names it): their answer, not advice.
            continue
        if (
            category == "medical"
            and best is not None
            and all(_CONDITION_RE.fullmatch(m.group(0)) for m in pattern.finditer(text))
            and _CONDITION_RE.search(f"{best.entry.question} {best.entry.answer}")
        ):
            # A visitor's condition beside a question the staff answered with it in mind: "my
            # daughter's diabetic, can she bring her own snacks in?" and an entry that allows
            # snacks needed "for medical reasons" (held-out 13, declined as advice).
            continue
        if category == "medical" and _ASKS_PLACE_RE.search(text):
            # Where to go is not advice: "I've got the eye doctor at ten, which way do I go?"
            # and "where do I pick up my prescription?" at a hospital's entrance (held-out 20,
            # declined). Without an entry for the place the question is declined as any other;
            # "the nearest hospital" is another place (below).
            continue
        if category in _REQUESTS and _answers_request(text, best.entry if best else None):
            continue
        if category == "payment" and _PAYMENT_HEADING_RE.search(heading):
            continue  # "Do you take cash?": how to pay is the staff's answer
        if category == "financial" and best is not None and _staff_wrote(text, pattern, best):
            # "is anybody explaining the student loan stuff today?" at an open day whose talk
            # covers "student loans" (held-out 26: declined as advice). The word with the one
            # before it, so the gallery's works "on loan" do not make "a loan" a topic.
            continue
        if (
            category == "weather"
            and pattern.pattern == _WEATHER_TOPIC
            and _IN_WEATHER_RE.search(text)
            and best is not None
            and _WEATHER_WORDS_RE.search(f"{best.entry.question} {best.entry.answer}")
        ):
            # What happens in bad weather, not a forecast: "what about if it's really windy?"
            # after the tractor rides, whose answer says they stop in high winds.
            continue
        return category
    for category, found in (
        ("directions", _DIRECTIONS_RE),
        ("elsewhere", _ELSEWHERE_RE),
        ("elsewhere", _NEARBY_PLACE_RE),
        ("elsewhere", _AROUND_HERE_RE),
        ("elsewhere", _PLACE_OPEN_RE),
        ("timetable", _TIMETABLE_RE),
    ):
        m = found.search(text)
        if m is None:
            continue
        # The place alone: "the airport", not "... from here on public transport"; a place
        # to do something is where it is done ("the nearest place to park the car").
        place = _PLACE_TO_RE.sub("", _ROUTE_RE.split(m.group("dest"), maxsplit=1)[0])
        dest = _content_terms(place)
        if not dest:
            continue
        if found is _PLACE_OPEN_RE:
            # A kind of place the FAQ never names; the staff's own places are theirs, and so
            # is one "in here" ("is the chemist in here open on a Saturday?" at a hospital
            # whose FAQ calls it the pharmacy).
            if _IN_HERE_RE.search(m.group("dest")):
                continue
            if any(t in _KINDS_OF_PLACE and t not in faq_terms for t in dest):
                return category
            continue
        if found is _AROUND_HERE_RE:
            # The staff's own word for the kind of place: "restaurants" is one term with
            # "café" for retrieval, but the theatre's café is not the restaurants round here.
            covered = best is not None and any(
                _names_word(w, best.entry) for w in m.group("dest").split()
            )
        else:
            covered = best is not None and all(_term_in(t, _entry_terms(best.entry)) for t in dest)
        if not covered:
            return category
    return None


def _staff_wrote(text: str, pattern: re.Pattern[str], best: Hit) -> bool:
    """Each match of `pattern` in `text`, with the word before it, is in `best`'s entry as
    written (`_names_word`)."""
    for m in pattern.finditer(text):
        before = re.search(r"(\w+)\W+$", text[: m.start()])
        if before is None or not _names_word(f"{before.group(1)} {m.group(0)}", best.entry):
            return False
    return True


def _names_word(word: str, entry: FaqEntry) -> bool:
    """The entry's text has `word` as written, singular or plural ("chemist", "chemists")."""
    stem = word.lower()
    if len(stem) > 4 and stem.endswith("s"):
        stem = stem[:-1]
    text = f"{entry.question} {entry.answer}".lower()
    return re.search(rf"\b{re.escape(stem)}", text) is not None


def _faq_terms(g: Grounding) -> frozenset[str]:
    """The query's terms that some entry of the FAQ uses."""
    return frozenset(t for t, df in g.term_df if df > 0)


def _answers_request(text: str, entry: FaqEntry | None) -> bool:
    """The entry's heading is itself a request ("Can you call me a taxi?") and has the
    request's specific words ("taxi", or a related "cab"): the staff answered that request."""
    if entry is None or not _REQUEST_RE.search(entry.question):
        return False
    heading = _heading_terms(entry)
    return any(_shares(t, heading) for t in _content_terms(text))


# --------------------------------------------------------------------------- clarifications

_ORDINALS: tuple[tuple[int, re.Pattern[str]], ...] = tuple(
    (i, re.compile(p, re.IGNORECASE))
    for i, p in (
        (-1, r"\b(?:last|latter|final|bottom)\b"),
        (0, r"\b(?:first|1st|top)\b|\b(?:number|option) (?:one|1)\b|^(?:the )?(?:one|1)$"),
        (1, r"\b(?:second|2nd|middle)\b|\b(?:number|option) (?:two|2)\b|\b(?:two|2)\b"),
        (2, r"\b(?:third|3rd)\b|\b(?:number|option) (?:three|3)\b|\b(?:three|3)\b"),
    )
)
_YES_RE = re.compile(
    r"^(?:yes|yeah|yep|yup|sure|please|yes please|correct|right|exactly|that one|that's it|"
    r"that's right|ok|okay|i do|uh huh|mhm)\b",
    re.IGNORECASE,
)
_NO_RE = re.compile(r"^(?:no|nope|nah|neither|none|not that|not really)\b[\s,.!]*", re.IGNORECASE)


def resolve_choice(text: str, choices: Sequence[Choice]) -> Choice | None:
    """Which offered choice `text` picks, or None (then the text is a fresh question).

    Understands a button's id ("2"), ordinals ("the first one", "second", "the last one",
    "number two"), words of a label ("tickets", "the children one": the label sharing the most
    specific words, ties going to the shorter label), and "yes" when one option was offered.
    "No, the cafe" looks only at "the cafe".
    """
    if not choices:
        return None
    cleaned = strip_fillers(text).strip()
    lowered = cleaned.casefold().strip(" .!?")
    for c in choices:
        if lowered == c.id.casefold() or lowered == c.label.casefold().strip(" ?"):
            return c
    negated = _NO_RE.match(lowered)
    if negated is not None:
        lowered = lowered[negated.end() :]
        if not lowered:
            return None
    words = _words(lowered)
    if not words:
        return None
    # Ordinals count only in short replies: "the second one" yes, "two adults and a child" no.
    if len(words) <= 5 and not _label_overlap(lowered, choices):
        for index, pattern in _ORDINALS:
            if pattern.search(lowered) and -len(choices) <= index < len(choices):
                return choices[index]
    if negated is None and len(choices) == 1 and _YES_RE.match(lowered) and len(words) <= 4:
        return choices[0]
    scored = _label_overlap(lowered, choices)
    if scored:
        return scored[0]
    return None


def _label_overlap(text: str, choices: Sequence[Choice]) -> list[Choice]:
    """Choices whose label shares a specific word with `text`: the single best, or []."""
    terms = set(_content_terms(text))
    if not terms:
        return []
    ranked: list[tuple[int, int, Choice]] = []
    for c in choices:
        label = frozenset(_content_terms(c.label))
        shared = sum(_term_in(t, label) for t in terms)
        if shared:
            ranked.append((shared, -len(label), c))
    if not ranked:
        return []
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    if len(ranked) > 1 and ranked[0][:2] == ranked[1][:2]:
        return []
    return [ranked[0][2]]


def _clarify_text(choices: Sequence[Choice], settings: PolicySettings) -> str:
    labels = [c.label.rstrip(" ?") for c in choices]
    return f"{settings.clarify_intro} {_join(labels, 'or')}?"


# --------------------------------------------------------------------------- follow-ups

_CONNECTOR_RE = re.compile(
    r"^(?:(?:ok|okay|and|but|also|so|then|oh)\b[\s,]*)*(?:and|but|also|what about|how about|"
    r"what if|and if|same for|is that|does that|is it|are they|do they|does it|for|on|until|"
    r"till|from)\b",
    re.IGNORECASE,
)
_ANAPHORA = frozenset("it that this there they them those these its".split())
_EXISTENTIAL = frozenset("is are was were isn't aren't".split())  # "is there ...": not "there"


# "One" standing for a thing said before ("is there *one* for wheelchairs?", "a bigger one"):
# after one of these and before a preposition or nothing, not before a noun ("one ticket").
_ONE_AFTER = frozenset("a an the that this any another there other bigger smaller new".split())
_ONE_BEFORE = frozenset("for with in near at on that which of like too as here please".split())


def _points_back(words: Sequence[str]) -> bool:
    """A word that names what was said before ("how much is *it*", "how do I get *there*",
    "is there *one* for wheelchairs"); the "there" of "is there ...", which only says
    something exists, does not."""
    for i, w in enumerate(words):
        near = {*words[max(0, i - 1) : i], *words[i + 1 : i + 2]}
        if w in _ANAPHORA and not (w == "there" and near & _EXISTENTIAL):
            return True
        if w == "one" and i > 0 and words[i - 1] in _ONE_AFTER:
            if i + 1 == len(words) or words[i + 1] in _ONE_BEFORE:
                return True
    return False


# A person said before: "my mum wants to pop over for the day, does she have to pay, and can
# *she* come swimming with us?" asks about a day visitor, not about the pool alone.
_PERSONS = frozenset("he she him her his hers".split())


def _points_back_at_all(words: Sequence[str]) -> bool:
    """`_points_back`, or a word for a person named before (a later part of one utterance)."""
    return _points_back(words) or not _PERSONS.isdisjoint(words)


_WEATHER_VERBS = frozenset("rains raining rained snows snowing pours pouring".split())


def _impersonal_it(words: Sequence[str]) -> list[str]:
    """`words` without an "it" that names nothing ("if it rains", "it's pouring")."""
    return [
        w
        for i, w in enumerate(words)
        if not (w == "it" and i + 1 < len(words) and words[i + 1] in _WEATHER_VERBS)
    ]


def contextual_query(question: str, context: PolicyContext | None) -> str | None:
    """A query for a follow-up that only makes sense after the previous answer ("and for
    children?", "what about on Sunday?", "how much is it?"): the previous entry's heading, then
    the question; after a question back, a fragment ("and in winter?") or a question that
    points back follows the question asked instead. None when the question stands on its own
    or there is nothing to read it with. Ground both; `decide` picks (pass the second
    grounding as `contextual`)."""
    if context is None:
        return None
    cleaned = strip_fillers(question)
    if not cleaned:
        return None
    words = _words(cleaned)
    terms = _content_terms(cleaned)
    if context.topic is None:
        # Asked back before: a fragment still continues the previous question ("when do you
        # open in summer?" - "Do you mean ...?" - "and in winter?"), and so does a short
        # question that points back ("when are those sessions on?"). A decline ends it.
        asked_back = context.previous is not None and context.previous.kind == "clarify"
        if asked_back and (_fragment(question) or (_points_back(words) and len(terms) <= 4)):
            if len(context.choices) == 1 and not _fragment(question):
                # "Do you mean: Is there a café or a shop?" - "what time does it close?": the
                # visitor took the one entry offered and asks on about *it*.
                return f"{context.choices[0].entry.question} {cleaned}"
            return f"{context.previous_question} {cleaned}"
        return None
    elliptical = (
        _CONNECTOR_RE.match(cleaned) is not None
        or _fragment(question)  # "and if ...": strip_fillers drops the "and"
        # Short, but asking something ("how much?") or naming something ("for children?"):
        # "The.", "Please.", "The same." (heard after a barge-in) ask nothing of the answer.
        or (len(terms) <= 2 and (bool(terms) or _ASKS_RE.search(cleaned) is not None))
        or (_points_back(words) and len(terms) <= 4)
        or _asks_back_then_says(cleaned)
    )
    if not elliptical:
        return None
    return f"{context.topic.question} {cleaned}"


def _asks_back_then_says(cleaned: str) -> bool:
    """A short question that points back, then a statement: "is there one with a hoist? my
    son's a full-time wheelchair user" after the toilets (held-out 30: answered with wheelchair
    access, the statement's topic; the toilets' answer has the hoist)."""
    asked, mark, said = cleaned.partition("?")
    if not mark or "?" in said or not said.strip():
        return False
    return _points_back(_words(asked)) and len(_content_terms(asked)) <= 4


# What a question asks for, by its question word: a follow-up asking with another one asks
# something else about the same topic.
_WH_RE = re.compile(
    r"\b(?:when|where|who|what time|how (?:much|many|long|far|old|often))\b", re.IGNORECASE
)


def _wh(m: re.Match[str]) -> str:
    said = m.group(0).casefold()
    return "when" if said == "what time" else said


def _asked_on(
    close: Sequence[_Candidate], repeat: FaqEntry | None, g: Grounding
) -> _Candidate | None:
    """After "When are the subject talks?", "and where is it?" between that entry and "Where
    are the subject talks held?" (held-out 26: answered with the times again, as the query
    holds the whole heading): the one entry whose heading asks what the follow-up asks, where
    the entry just answered asks something else. The follow-up comes last in the query. Only
    where and when: "how much is that?" after "Can I take my bike?" is the bike's price, in
    its entry's text, not the entry on the price of a car."""
    asks = [_wh(m) for m in _WH_RE.finditer(g.query)]
    if repeat is None or not asks or asks[-1] not in ("where", "when"):
        return None
    if asks[-1] in _heading_wh(repeat):
        return None
    if all(c.hit.entry != repeat for c in close):
        return None
    same = [c for c in close if asks[-1] in _heading_wh(c.hit.entry)]
    return same[0] if len(same) == 1 else None


def _heading_wh(entry: FaqEntry) -> frozenset[str]:
    """What `entry`'s heading asks, by its question words as `_wh` names them."""
    return frozenset(_wh(m) for m in _WH_RE.finditer(entry.question))


def lookup_query(question: str, context: PolicyContext | None) -> str:
    """The text to rank for `question`: itself, minus a leading "no," answering a pending
    clarification ("no, the cafe" looks up "the cafe")."""
    if context is not None and context.choices:
        cleaned = strip_fillers(question)
        m = _NO_RE.match(cleaned)
        if m is not None and cleaned[m.end() :].strip():
            return cleaned[m.end() :].strip()
    return question


_QUESTION_WORD = (
    r"(?:what|what's|when|where|where's|which|who|how|is|are|do|does|can|could|will|would|"
    r"should|may|have|has)"
)
# Two questions in one breath: "where are the toilets and what time does the cafe close",
# "what's the wifi password? when is the gym open". An ellipsis is a pause, not a sentence's
# end: "lost the... parking ticket... how much" is one broken question, not three.
_SPLIT_RE = re.compile(
    rf"[?!;]+\s+|(?<!\.)\.\s+(?=[A-Za-z])|,?\s+(?:and|also|plus|but)\s+(?={_QUESTION_WORD}\b)",
    re.IGNORECASE,
)
# In a long ramble, the last clause that asks something, without what leads up to it: "...,
# but first of all, where can we get some cash?", "..., so is there somewhere we could leave
# them", "... anyway what I wanted to ask was what time we need to check out, because ...".
_CLAUSE_RE = re.compile(r"[^,;:.!?]+[?]?")
_LEAD_RE = re.compile(
    r"^(?:(?:so|and|but|anyway|well|now|then|right|okay|ok|yeah|first of all|basically)\b"
    r"[\s,]*)*(?:(?:what )?i (?:wanted|want|meant|need|needed) to (?:ask|know)(?: (?:is|was))?\s+|"
    r"i (?:was|am|'m) (?:just )?wondering(?: if| whether)?\s+)?",
    re.IGNORECASE,
)
LONG_WORDS = 16
# A shorter utterance's asking clause is read alone only where it names its entry's whole
# heading ("my girl fell over and her knee's bleeding, where's first aid?"): a short setup
# misheard leads the clause astray more often than a long one (`decide`).
SHORT_WORDS = 10
# A question word: `.match` says a clause starts like a question, `.search` that it asks one.
_ASKS_RE = re.compile(rf"\b{_QUESTION_WORD}\b", re.IGNORECASE)


def _pieces(cleaned: str) -> list[tuple[str, bool]]:
    """The clauses `_SPLIT_RE` cuts an utterance into, each with whether it asks something
    (it ended with "?" or starts like a question)."""
    out: list[tuple[str, bool]] = []
    start = 0
    ends = [(m.start(), m.end(), "?" in m.group()) for m in _SPLIT_RE.finditer(cleaned)]
    for a, b, asked in [*ends, (len(cleaned), len(cleaned), cleaned.rstrip().endswith("?"))]:
        text = strip_fillers(cleaned[start:a]).strip(" ,")
        out.append((text, asked or _ASKS_RE.match(text) is not None))
        start = b
    return out


# A question about what was just named: "does it cost anything?", "when does it start?"
_ABOUT_THE_LAST_RE = re.compile(
    r"\W*(?:(?:and|but|so|oh) )?(?:(?:how much|what time|what|when|where|how long|how late|"
    r"how early) )?"
    r"(?:does|do|is|are|was|will|would|can|could|did|has|have)\s+(?:it|that|this|they|those|these)\b",
    re.IGNORECASE,
)


# "When does it open?" asks of what was named before as "when does it close?" does ("close"
# and "shut" are incidental words; "open" is not, as a heading's "open" names its hours).
_OPENS = frozenset(tokenize("open opens opening"))


def _asks_of_the_last(part: str) -> bool:
    """`part` asks about something named before it ("does it cost anything?", "when does it
    start?") and names nothing of its own: no word but price words and incidental ones."""
    own = [
        t
        for t in _content_terms(part)
        if t not in _PRICE_TERMS and t not in _OPENS and not _incidental(t)
    ]
    return not own and _ABOUT_THE_LAST_RE.match(part) is not None


# Asks when: the answer to it has a clock time ("10:00 to 16:30", "9am", "noon").
_ASKS_TIME_RE = re.compile(
    r"\b(?:what time|when|how late|how early|until when|till when)\b", re.IGNORECASE
)
_CLOCK_RE = re.compile(
    r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s?[ap]\.?m\b|\b(?:noon|midnight)\b", re.IGNORECASE
)


# Hours told against something else: "opens 30 minutes before the first session".
_RELATIVE_HOURS_RE = re.compile(
    r"\b(?:opens?|closes?|shuts?)\b[^.]{0,20}\b(?:minutes?|hours?|an hour)\s+(?:before|after)\b",
    re.IGNORECASE,
)


# A time of day the visitor names: "a hot meal at like half ten tonight", "by 6pm", "at ten
# o'clock". Not a bare number ("at one of the tables", "after two days").
_HOUR_WORD = r"(?:\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_SAID_TIME_RE = re.compile(
    r"\b(?:at|by|after|before|till|until|past)\s+(?:(?:like|about|around|roughly)\s+)?"
    rf"(?:(?:half|quarter)\s+(?:past\s+|to\s+)?{_HOUR_WORD}\b|\d{{1,2}}[:.]\d{{2}}\b|"
    rf"{_HOUR_WORD}\s?(?:[ap]\.?m\b|o'clock\b|tonight\b|in the (?:morning|evening)\b)|"
    r"midnight\b|noon\b)",
    re.IGNORECASE,
)
# Hours without a clock time: "open 24 hours a day".
_ALL_HOURS_RE = re.compile(
    r"\b(?:24 hours|twenty-four hours|24/7|all night|around the clock|round the clock)\b",
    re.IGNORECASE,
)


def _names_no_time(query: str, entry: FaqEntry) -> bool:
    """The question names a time of day (`_SAID_TIME_RE`) and the entry's answer gives no
    hours: "will we get a hot meal at half ten tonight?" is not answered by the list of
    outlets, whose hours are in another entry."""
    if _SAID_TIME_RE.search(query) is None:
        return False
    return not (_tells_a_time(entry.answer) or _ALL_HOURS_RE.search(entry.answer))


def _tells_a_time(answer: str) -> bool:
    """A clock time ("10:00 to 16:30", "9am") or hours told against something else."""
    return _CLOCK_RE.search(answer) is not None or _RELATIVE_HOURS_RE.search(answer) is not None


def _tells(entry: FaqEntry, question: str) -> bool:
    """The entry's answer has the kind of detail `question` asks for: a clock time for "what
    time", an amount for "how much". False for a question that asks for neither."""
    if _ASKS_TIME_RE.search(question):
        return _tells_a_time(entry.answer)
    if _ASKS_AMOUNT_RE.search(question):
        return _AMOUNT_RE.search(entry.answer) is not None
    return False


def _about_it(cleaned: str, own: _Ranked, other: _Ranked) -> _Ranked | None:
    """For a question about what was just named that asks a time or an amount ("what time
    does it close?"), the reading whose answer tells it: with the previous topic first, else
    on its own. None when neither does (then the better supported one, `_pick`).
    "Where's the café?" - "what time does it close?": "it" is the café, whose answer has its
    hours; alone the question was answered with the venue's opening hours, better supported
    by "time" and "close". After the toilets, whose answer has no time, the venue's hours
    answer it, not the toilets' answer again."""
    if not _asks_of_the_last(cleaned):
        return None
    tells = [
        r.best is not None and _is_answer(r) and _tells(r.best.hit.entry, cleaned)
        for r in (other, own)
    ]
    if tells[0]:
        return other
    return own if tells[1] else None


# How a clause that only narrows the question before it starts: "do you do boat trips to see
# the seals? (like) at or around the island?", "any tours? or on weekends maybe?".
_ELABORATES_RE = re.compile(
    r"^(?:or|say|i mean|at|around|near|in|on|with|by|from|round|maybe|perhaps|even)\b",
    re.IGNORECASE,
)


def _elaborates(part: str) -> bool:
    """`part` narrows the question before it and asks nothing of its own: it starts like a
    place, a time or an alternative, with no question word (alone, "at or around the
    island?" was answered with where to buy tickets on the island)."""
    return _ELABORATES_RE.match(part) is not None and _ASKS_RE.search(part) is None


def question_parts(question: str, long_words: int = SHORT_WORDS) -> tuple[str, ...]:
    """The separate questions of an utterance that asks several, or the asking clause of a
    ramble of `long_words` words or more; () for a plain question."""
    cleaned = strip_fillers(question)
    cut = _pieces(cleaned)
    pieces = [(p, asks) for p, asks in cut if _content_terms(p)]
    texts = [p for p, _ in pieces]
    if len(pieces) >= 2 and any(asks for _, asks in pieces):
        # A clause that asks nothing is not answered on its own ("We're not staying at the
        # hotel." matched "Can I smoke in the hotel?"); it is read with the question after it
        # ("We're not guests. How much is the breakfast?" is about non-guests).
        texts, said = [], []
        for p, asks in pieces:
            said.append(p)
            if asks:
                texts.append(" ".join(said))
                said = []
    if texts and len(cut) >= 2:  # the utterance was cut: its questions (or its one question)
        joined: list[str] = []
        for text in texts:
            if joined and (_asks_of_the_last(text) or _elaborates(text)):
                # "… can I put my name down for it? does it cost anything?": the price of the
                # reservation, not of whatever else costs something.
                joined[-1] += " " + text
            else:
                joined.append(text)
        one_question = [asks for _, asks in pieces] == [False] * (len(pieces) - 1) + [True]
        if (
            not one_question
            or len(_words(cleaned)) < long_words
            or any(_asking_clause(p) for p, _ in pieces[:-1])
        ):
            return tuple(joined[:3])
        # One question after what only sets it up, as the recogniser writes it, with a full
        # stop between: read as the same ramble typed with a comma would be ("My phone's
        # almost dead, and I need to get online. Can I charge it here somewhere?").
        return _asking_clause(cleaned) or tuple(joined)
    if len(_words(cleaned)) >= long_words:
        return _asking_clause(cleaned)
    return ()


def _names_heading(entry: FaqEntry, query: str) -> bool:
    """Every content word of the entry's heading, two or more, is in `query` ("where's first
    aid?" and "Is there first aid?")."""
    said = frozenset(_content_terms(query))
    heading = [t for t in _content_terms(entry.question) if t not in _GENERIC]
    return len(heading) >= 2 and all(_term_in(t, said) for t in heading)


def _asking_clause(cleaned: str) -> tuple[str, ...]:
    """A long ramble's asking clause, alone; () where none is found or it is the whole.
    Before the last clause, only one led up to ("..., so where is ...")."""
    clauses = [m.group().strip() for m in _CLAUSE_RE.finditer(cleaned)]
    for i, clause in enumerate(reversed(clauses)):
        lead = _LEAD_RE.match(clause)
        start = lead.end() if lead is not None else 0
        if i > 0 and start == 0:
            # Before the last clause, only a question the visitor leads up to ("..., so
            # where is ..."): a first clause that asks is explained by what follows it.
            continue
        focus = clause[start:].strip()
        if _ASKS_RE.match(focus) and _content_terms(focus):
            return (_with_who(focus, clauses[: len(clauses) - 1 - i]),) if focus != cleaned else ()
    return ()


def _with_who(focus: str, before: Sequence[str]) -> str:
    """A ramble's asking clause with the kinds of visitor the clauses `before` it name, when
    it names none: "me and the wife are both over seventy, do we get anything off for a
    Thursday show?" asks a senior's discount, not the groups' one its last clause alone
    matched. One that names its own ("... with my parents and the kids, how much do children
    pay?") says whom it asks about; one that asks no price is about no kind of visitor."""
    if not _asks_a_price(focus):
        return focus
    # A school class named before: "I'm bringing a class of year fours, what's the price per
    # child?" asks what a pupil pays, not a child's ticket.
    if any(SCHOOL_GROUP in c for c in before):
        return f"{focus} {SCHOOL_GROUP}"
    if _kinds(frozenset(tokenize(focus))):
        return focus
    # Not a group: "after school", "a group project" say when or what, not who pays.
    said = _kinds(frozenset(t for c in before for t in tokenize(c))) - {"group"}
    return f"{focus} ({' '.join(sorted(said))})" if said else focus


@dataclass(frozen=True)
class Lookups:
    """What to rank for one question; ground each and pass the results to `decide`."""

    primary: str  # always: `decide(grounding=ground(kb, primary))`
    contextual: str | None = None  # a follow-up read with the previous answer's topic
    parts: tuple[str, ...] = ()  # separate questions, or a ramble's asking clause
    # The asking clause was split off only because the question is longer than `SHORT_WORDS`
    # (not `LONG_WORDS`): `decide` then also wants it to name its entry's whole heading.
    short_ramble: bool = False
    # The question with misheard words put right (`repairs`), a second reading to rank when
    # there is one: `decide(repaired=ground(kb, repaired), repairs=repairs)`.
    repaired: str | None = None
    repairs: tuple[Repair, ...] = ()


def _not_repaired(term: str) -> bool:
    """Words that say nothing about the topic are not worth a guess at what was meant."""
    return term in _GENERIC or _incidental(term)


def lookups(
    question: str, context: PolicyContext | None, sounds: SoundIndex | None = None
) -> Lookups:
    """The queries `decide` wants ranked for `question` (see the module docstring). With
    `sounds` (the FAQ's `soundalike.SoundIndex`), question words the FAQ lacks that sound like
    FAQ words get a second reading, with them replaced ("calories" -> "galleries"), and an
    idiom the FAQ itself uses is not put in other words ("season ticket" at a football club)."""
    question = plain_words(question, sounds.pairs if sounds is not None else ())
    if sounds is not None:
        question = sounds.join_compounds(question)
    primary = lookup_query(question, context)
    fixed = sounds.repair(primary, skip=_not_repaired) if sounds is not None else None
    parts = question_parts(question)
    return Lookups(
        primary=primary,
        contextual=contextual_query(question, context),
        parts=parts,
        short_ramble=parts != question_parts(question, LONG_WORDS),
        repaired=fixed.text if fixed is not None and fixed.repairs else None,
        repairs=fixed.repairs if fixed is not None else (),
    )


class Ranked(TypedDict):
    """A plan's queries ranked: `decide`'s keyword arguments, named as it takes them."""

    grounding: Grounding
    contextual: Grounding | None
    parts: tuple[Grounding, ...]
    short_ramble: bool
    repaired: Grounding | None
    repairs: tuple[Repair, ...]


def rank_plan(plan: Lookups, rank: Callable[[str], Grounding]) -> Ranked:
    """Each query of `plan` through `rank` (`ground` with the caller's knowledge base and
    options), for `decide(question, context=..., settings=..., **rank_plan(plan, rank))`."""
    return Ranked(
        grounding=rank(plan.primary),
        contextual=rank(plan.contextual) if plan.contextual else None,
        parts=tuple(rank(q) for q in plan.parts),
        short_ramble=plan.short_ramble,
        repaired=rank(plan.repaired) if plan.repaired else None,
        repairs=plan.repairs,
    )


# --------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class _Candidate:
    hit: Hit
    semantic: float
    coverage: float
    support: float
    anchored: bool
    # Question words the whole FAQ lacks and this entry does not cover through a related word
    # ("vegetarian" in "is the soup in the cafe vegetarian"): the visitor asks about something
    # the staff never wrote down, so the entry may be on the topic without answering it.
    unmatched: int = 0
    # The lowest score of the sound-alike repairs (`Lookups.repairs`) whose words the entry
    # has: it matches what the visitor may have said, not what was heard. None: no such word.
    guess: float | None = None
    # The question asks a price the entry's answer does not name (`_names_no_price`), or
    # names a time of day the answer has no clock time for (`_names_no_time`).
    unpriced: bool = False
    # The heading states a visitor's situation ("I lost my key card.") that the question does
    # not ("where do I leave my key card when I go"), or is for another kind of visitor than
    # the question names (`_for_others`): on its words, not its meaning.
    unstated: bool = False
    # "price": the question asks a price, and none of its words (nor a related one) is in the
    # heading, only in the answer; "where": it asks where something is, and only the answer
    # has its words. "": neither.
    answer_only: str = ""
    # A word of the question (or a related one: "brew" and the café) is in the heading.
    heading_hit: bool = False


# "... that isn't the café", "apart from the shop": a thing the visitor does not ask about.
_RULED_OUT_RE = re.compile(
    r"\b(?:(?:that|which) (?:isn't|is not|aren't|are not)|other than|apart from|besides|"
    r"except(?: for)?|instead of|rather than|excluding|"
    # "... I don't really want a taxi": the way not wanted is not the question.
    # A thing named with its article only: "I don't want to miss the show" rules out nothing.
    r"(?:i|we) (?:don't|do not) (?:really )?(?:want|fancy)(?: to (?:take|get|use))?"
    r"(?=\s+(?:a|an|the)\s))\s+"
    r"(?:(?:the|your|you|this|these|a|an)\s+)?"
    r"([^\W\d_][\w'-]*(?:[ ]+[^\W\d_][\w'-]*){0,2})",
    re.IGNORECASE,
)


def _ruled_out(query: str) -> tuple[frozenset[str], frozenset[str]]:
    """The words the question names only to rule them out, and all the words of the phrases
    that do ("other than", "apart"): in "where's good for lunch round here that isn't the
    café?" the café is not asked about (held-out 19: it was answered)."""
    found = list(_RULED_OUT_RE.finditer(query))
    named = frozenset(
        t for m in found for t in tokenize(m.group(1)) if t not in _GENERIC and not _incidental(t)
    )
    return named, frozenset(t for m in found for t in tokenize(m.group()))


# A question after an e-mail address, a phone number or a web site, and what answers it.
_CONTACTS = (
    (
        re.compile(r"\be-?mail\b|\bmail address\b|\bwrite (?:to|an?)\b", re.IGNORECASE),
        EMAIL_RE,
    ),
    (
        # Not the visitor's own phone: "no signal on my phone" asks where, not a number.
        re.compile(
            r"(?<!\bmy )(?<!\bour )(?<!\bhis )(?<!\bher )(?<!\btheir )(?<!\bmobile )"
            r"\b(?:phone|telephone)\b"
            r"(?! (?:signal|battery|charger|charging|reception|coverage))|"
            r"\b(?:ring|number to call|call (?:you|them|the))\b",
            re.I,
        ),
        PHONE_RE,
    ),
    (
        # Where the venue is, for a sat-nav: a postcode (or a street address) in the answer.
        re.compile(r"\b(?:post ?code|postal code|zip code|sat ?-?nav|your address)\b", re.I),
        re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|\baddress is\b"),
    ),
    (
        re.compile(r"\b(?:website|web site|web page|webpage|url)\b", re.IGNORECASE),
        re.compile(r"\bwww\.|https?://|\b[\w-]+\.(?:com|org|net|eu|uk|nl|de|fr|example)\b"),
    ),
)

# "How much is ...", "what does it cost": a question after an amount of money. "How much
# time" asks for a duration; "charge" is left out (an electric car's charging).
_ASKS_AMOUNT_RE = re.compile(
    r"\bhow much\b(?! (?:time|longer|later|earlier))|\b(?:cost|costs|price|prices|priced|fee|"
    r"fees|expensive|cheap|cheaper|afford)\b|"
    # Whether something costs more than the ticket: "is the dome thing extra?"
    r"\b(?:is|are) (?:it|that|this|they|those|the \w+(?: \w+)?) (?:an )?extra\b|"
    r"\b(?:included|in with) (?:in )?(?:the )?(?:ticket|price|entry|admission)\b",
    re.IGNORECASE,
)
# "Do I have to pay", "without paying": whether there is anything to pay; not how ("can I pay
# in the café with that?", "pay by card": a payment method, answered without an amount).
_ASKS_PAYING_RE = re.compile(
    r"\b(?:pay|paying|paid)\b(?!.{0,30}\b(?:with|by|using|in) (?:\w+ ){0,2}?(?:cash|cards?|"
    r"contactless|phone|coins|notes|cheques?|that|it|this|euros|dollars)\b)",
    re.IGNORECASE,
)
# What answers either: an amount of money, or that it is free.
_AMOUNT_RE = re.compile(
    r"[€$£¥]|\d\s*(?:eur|euros?|usd|dollars?|gbp|pounds?|cents?|pence|p)\b|"
    r"\b(?:free|at no cost|no charge|included|costs? nothing|complimentary|half price)\b|"
    r"\d\s*(?:%|per ?cent) (?:off|discount|reduction|cheaper|less)\b",  # "25% off"
    re.IGNORECASE,
)
# What answers only whether to pay: "you can visit the café without a museum ticket".
_NO_PAYING_RE = re.compile(
    r"\b(?:without|no)\s+(?:(?:a|an|any)\s+)?(?:\w+\s+)?(?:ticket|charge|fee|payment|cost)s?\b|"
    r"\b(?:discount|discounts|reduced)\b",
    re.IGNORECASE,
)


_DISCOUNT_RE = re.compile(r"\b(?:discount|discounts|concession|concessions|deal|deals)\b", re.I)


def _asks_a_price(text: str) -> bool:
    """`text` asks what something costs, whether to pay, or for a discount."""
    return any(r.search(text) for r in (_ASKS_AMOUNT_RE, _ASKS_PAYING_RE, _DISCOUNT_RE))


def _names_no_price(query: str, entry: FaqEntry, specific: Collection[str] = ()) -> bool:
    """The question asks what something costs (or whether to pay) and the entry's answer does
    not say: it is on the topic ("the café") without answering ("how much is a smoothie": the
    café's answer prices a lunch box, in another sentence than the one on its smoothies).
    `specific`: the question's words that few entries have (see `_prices_what_is_asked`)."""
    answer = entry.answer
    if _ASKS_AMOUNT_RE.search(query):
        return _holders_only(query, entry, specific) or not _prices_what_is_asked(
            query, entry, specific
        )
    if _AMOUNT_RE.search(answer):
        return False
    return _ASKS_PAYING_RE.search(query) is not None and not _NO_PAYING_RE.search(answer)


# People who hold a thing: "Season ticket holders ... get 25% off" is the tour's discount for
# them, not the season ticket's price.
_HOLDERS_RE = re.compile(
    r"\b(?P<thing>[\w-]+(?: [\w-]+)?) (?:holders?|owners?|members?)\b", re.IGNORECASE
)


def _holders_only(query: str, entry: FaqEntry, specific: Collection[str]) -> bool:
    """The question prices a thing the entry names only as what its holders have: "how much
    is a season ticket?" and a stadium tour's "Season ticket holders and club members get
    25% off" (held-out 30: answered with the tour's prices)."""
    heading = _heading_terms(entry)
    if any(_shares(t, heading) for t in _content_terms(query) if t not in _PRICE_TERMS):
        return False  # the entry's own thing, for its holders: "is the tour cheaper for them?"
    thing = _asked_thing(query, heading, specific)
    if not thing:
        return False
    rest = frozenset(tokenize(_HOLDERS_RE.sub(" ", entry.answer)))
    held = frozenset(t for m in _HOLDERS_RE.finditer(entry.answer) for t in tokenize(m.group(0)))
    return any(_term_in(t, held) for t in thing) and not any(_term_in(t, rest) for t in thing)


def _prices_visitors(query: str, entry: FaqEntry, asked: frozenset[str]) -> bool:
    """The question asks what one kind of visitor pays (`asked`, from `_kinds`: "how much for
    a grown-up"), the entry's own question asks a price, and a sentence of its answer names an
    amount and that kind of visitor: a price list."""
    if not asked or _ASKS_AMOUNT_RE.search(query) is None:
        return False
    if _ASKS_AMOUNT_RE.search(entry.question) is None:
        return False
    return any(
        _AMOUNT_RE.search(s) is not None and _kinds(_sentence_terms(s)) & asked
        for s in split_sentences(entry.answer)
    )


_CHEAPER = frozenset(tokenize("cheap cheaper cheapest"))
_PRICE_TERMS = frozenset(
    tokenize("how much cost costs price prices priced fee fees expensive cheap cheaper afford")
)


def _prices_what_is_asked(query: str, entry: FaqEntry, specific: Collection[str]) -> bool:
    """An amount is in the answer, and in its sentence most about the thing the question
    names beyond the entry's own topic, when a sentence names it: "how much to charge my car"
    is about the parking entry's sentence on its car chargers, not the one with the parking
    fee; "how much is a term of lessons" about the lessons entry's sentence on its term. The
    thing: the question's `specific` words (few entries have them), less price words and the
    heading's words (the topic, priced anywhere in its answer). A sentence that goes on with
    "it" or "they" counts with the one before."""
    sentences: list[str] = []
    for s in split_sentences(entry.answer):
        if sentences and _GOES_ON_RE.match(s):
            sentences[-1] += " " + s  # "It costs €3": the audio guide of the sentence before
        elif s.strip():
            sentences.append(s)
    priced = [_AMOUNT_RE.search(s) is not None for s in sentences]
    if not any(priced):
        return False
    thing = _asked_thing(query, _heading_terms(entry), specific)
    # Words themselves, not related ones: "lunch", related to "cafe", is in the sentence
    # pricing the café's lunch box, not in the one on its smoothies.
    overlaps = [sum(1 for t in thing if _term_in(t, _sentence_terms(s))) for s in sentences]
    best = max(overlaps)
    return best == 0 or any(p for p, o in zip(priced, overlaps, strict=True) if o == best)


def _asked_thing(query: str, heading: frozenset[str], specific: Collection[str]) -> list[str]:
    """What a price question names beyond the entry's own topic: its `specific` words (few
    entries have them) less price words, incidental ones and the `heading`'s words."""
    return [
        t
        for t in _content_terms(query)
        if t in specific and t not in _PRICE_TERMS and not _incidental(t) and t not in heading
    ]


# A sentence that goes on about the thing the sentence before named.
_GOES_ON_RE = re.compile(r"\s*(?:it|its|they|their|this|that|these|those)\b", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _sentence_terms(sentence: str) -> frozenset[str]:
    return frozenset(tokenize(sentence))


# A heading that starts by stating the visitor's situation, and its verb: "I lost my key
# card. ...", "We have lost ...".
_SITUATION_RE = re.compile(
    r"\s*(?:i|we)\s+(?:have\s+|'ve\s+|just\s+)?(?P<verb>[a-z']+)\b[^.?!]*[.!]", re.IGNORECASE
)
# A heading asking what to do after a mishap: "What if I lose my car park ticket?"
_WHAT_IF_RE = re.compile(
    r"\s*what (?:if|happens if|should (?:i|we) do if|do (?:i|we) do if) (?:i|we) "
    r"(?P<verb>lose|lost|forget|forgot|break|broke|damage|damaged)\b",
    re.IGNORECASE,
)
# A heading that says what went wrong with a thing: "My suitcase didn't arrive." ("can I
# leave my bags somewhere?" is not it; an airport's kiosk answered it so).
_MISHAP_RE = re.compile(
    r"\s*(?:my|our)\s+[a-z' -]+?\s+(?:didn't|did not|hasn't|has not|haven't|have not|won't|"
    r"will not|doesn't|does not)\s+(?P<verb>[a-z']+)\b[^.?!]*[.!]",
    re.IGNORECASE,
)
# Ways of saying one has lost something without the word: "I can't find my key", "I left it in
# the taxi".
_LOST_RE = re.compile(
    r"\b(?:can ?not|can'?t|could ?not|couldn'?t) find\b|\b(?:i|we) (?:think (?:i|we) )?left\b",
    re.IGNORECASE,
)

_LOST_TERMS = frozenset(tokenize("lost"))


@lru_cache(maxsize=1024)
def _situation(heading: str) -> tuple[str, tuple[str, ...]] | None:
    """The verb of the situation a heading states, and the heading's own question words after
    it; None for a heading that states none. Headings do not change: read once each."""
    m = _SITUATION_RE.match(heading) or _WHAT_IF_RE.match(heading) or _MISHAP_RE.match(heading)
    if m is None:
        return None
    verb = tokenize(m.group("verb"))
    if not verb or verb[0] in _GENERIC:
        return None
    # "What if I lose my car park ticket?" asks nothing beyond the mishap: "how much is a
    # ticket to get in?" is not it (a mall's kiosk answered it so).
    rest = "" if m.re is _WHAT_IF_RE else heading[m.end() :]
    return verb[0], tuple(t for t in tokenize(rest) if t not in _GENERIC)


def _unstated_situation(entry: FaqEntry, query: str, said: frozenset[str]) -> bool:
    """The entry's heading states the visitor's situation ("I lost my key card.") and the
    question does not say what happened ("where do I leave my key card when I go"): neither
    the verb itself, nor a word related to it ("dropped", "missing"), nor "can't find", nor
    a word of the question the heading goes on to ask ("Where is lost and found?")."""
    situation = _situation(entry.question)
    if situation is None:
        return False
    verb, asks = situation
    if _shares(verb, said):
        return False
    if any(_shares(t, said) for t in asks):
        return False  # it asks the heading's own question: "where's the lost and found?"
    return not (_shares(verb, _LOST_TERMS) and _LOST_RE.search(query))


# "my phone", "our electric car": the thing a question or a heading is about (up to three
# words after the possessive, to the first small word or punctuation).
_POSSESSED_RE = re.compile(r"\b(?:my|our)\s+((?:[^\W\d_][\w'-]*)(?:\s+[^\W\d_][\w'-]*){0,2})", re.I)


@lru_cache(maxsize=4096)
def _possessed(text: str) -> frozenset[str]:
    """The content words of the things `text` calls the visitor's own ("my electric car")."""
    out: set[str] = set()
    for m in _POSSESSED_RE.finditer(text):
        for word in m.group(1).split():
            if word.lower() in STOPWORDS:
                break
            out.update(t for t in tokenize(word) if t not in _GENERIC and not _incidental(t))
    return frozenset(out)


def _about_another_thing(
    heading: str,
    heading_terms: frozenset[str],
    entry_terms: frozenset[str],
    mine: frozenset[str],
    said: frozenset[str],
) -> bool:
    """The heading is about a thing of the visitor's ("Can I charge my electric car?") and the
    question about another one ("can I charge my phone?"): neither has a word of the other's
    thing, nor a related one. The verb alone is not the topic (two hotels and a mall answered
    a phone's charging with their car chargers)."""
    if not mine:
        return False
    theirs = _possessed(heading)
    # The heading's own words, not related ones: "electric" is related to "charge".
    if not theirs or any(_term_in(t, said) for t in theirs):
        return False
    # The answer's own words or the heading's related ones: a mall's car chargers are "paid
    # by contactless card", a word related to a phone's.
    return not any(_term_in(t, entry_terms) or _shares(t, heading_terms) for t in mine)


# Kinds of visitor an entry can be written for. A question that names one kind is not
# answered with an entry whose heading is for another kind only: "two adults" is not "How
# much are tickets for children?", whatever the ranking says ("adult" is in that answer).
_VISITOR_KINDS = {
    kind: frozenset(t for w in words.split() for t in tokenize(w))
    for kind, words in (
        ("adult", "adult adults grown-up grown-ups"),
        ("child", "child children kid kids baby babies toddler toddlers infant infants"),
        ("senior", "senior seniors pensioner pensioners elderly retired"),
        ("student", "student students"),
        ("family", "family families parent parents"),
        ("group", "group groups school schools"),
    )
}
# A family is adults with children: a question that names both may mean a family's entry.
_A_FAMILY = frozenset({"adult", "child"})


def _kinds(terms: frozenset[str]) -> frozenset[str]:
    """The kinds of visitor (`_VISITOR_KINDS`) that `terms` name."""
    return frozenset(k for k, words in _VISITOR_KINDS.items() if words & terms)


# One grown-up with a child is not the family ticket's two adults.
_ONE_ADULT_RE = re.compile(r"\b(?:one|an|a single|1|just the one) (?:adult|grown[- ]?up)\b", re.I)


def _for_others(entry: FaqEntry, asked: frozenset[str], query: str = "") -> bool:
    """The entry's heading is for a kind of visitor and the question names other kinds
    (`asked`, from `_kinds`) but not that one; a family's entry also fits a question that
    names adults and children, unless it names one adult (`query`)."""
    if not asked:
        return False
    meant = _kinds(_heading_terms(entry))
    if "family" in meant and _A_FAMILY <= asked and not _ONE_ADULT_RE.search(query):
        return False
    return bool(meant) and not meant & asked


def _ranked(g: Grounding) -> tuple[Hit, ...]:
    """The entries to weigh; a Grounding built the old way has only `hits`."""
    return g.ranked or tuple(g.hits)


def _idf(df: int, n: int) -> float:
    return log(1.0 + (n - df + 0.5) / (df + 0.5))


_WHERE_IS_RE = re.compile(r"\bwhere(?:'s| is| are)\b", re.IGNORECASE)


def _candidates(
    g: Grounding, settings: PolicySettings, repairs: Sequence[Repair] = ()
) -> list[_Candidate]:
    """The ranked entries with their support, best support first."""
    n = max(g.entries, 1)
    specific = max(2.0, settings.specific_share * n)
    in_heading = max(specific, settings.heading_share * n)
    # Words ruled out count for nothing, nor do their related words ("a coffee other than
    # your café"), and an entry whose heading has one is no candidate.
    ruled_out, phrased = _ruled_out(g.query)
    # A hyphenated word the FAQ lacks as one ("ladies-only") counts by its parts.
    joined = joined_terms(g.query)
    said = frozenset(t for t, _ in g.term_df)
    asked = _kinds(said)  # once per query, not per entry
    terms_df = [
        (t, df)
        for t, df in g.term_df
        if t not in _GENERIC
        and t not in phrased
        and not (ruled_out and _shares(t, ruled_out))
        and not (df == 0 and t in joined)
        # Beside a kind of visitor, a number the FAQ never uses says how many or how old
        # ("my two kids, they're eight and twelve"), and no entry could have it: it would only
        # thin out every entry's coverage. Not a sum or a time ("a twenty-pound note",
        # "later than eleven"), which the question may turn on.
        and not (df == 0 and asked and _NUMBER_TERM_RE.fullmatch(t))
    ]
    rarest = _idf(1, n)
    weights = {t: _idf(df, n) if df else settings.unknown_weight * rarest for t, df in terms_df}
    total = sum(weights.values())
    query_terms = {t for t, _ in terms_df}
    specifics = {t for t, df in terms_df if 0 < df <= specific}
    mine = _possessed(g.query)  # the visitor's own things it names
    asks_amount = _ASKS_AMOUNT_RE.search(g.query) is not None
    asks_where = _WHERE_IS_RE.search(g.query) is not None
    # Two or more words said, none of them beyond the common ones.
    plain_only = not terms_df and len(said) >= 2
    repairs = [r for r in repairs if r.terms & query_terms]  # this query's (a part's) own
    out: list[_Candidate] = []
    for i, hit in enumerate(_ranked(g)):
        entry_terms = g.entry_terms[i] if i < len(g.entry_terms) else _entry_terms(hit.entry)
        heading_terms = _heading_terms(hit.entry)
        if any(_shares(t, heading_terms) for t in ruled_out):
            continue  # not a candidate at all: neither answered nor offered back
        matched = [(t, df) for t, df in terms_df if _shares(t, entry_terms)]
        coverage = sum(weights[t] for t, _ in matched) / total if total > 0 else 0.0
        semantic = hit.semantic if hit.semantic is not None else 0.0
        if i < len(g.facts):
            semantic = (1.0 - settings.fact_weight) * semantic + settings.fact_weight * g.facts[i]
        anchored = any(
            df <= specific or (df <= in_heading and _shares(t, heading_terms)) for t, df in matched
        )
        if any(ask.search(g.query) and has.search(hit.entry.answer) for ask, has in _CONTACTS):
            # The kind of detail asked for is in the answer (an e-mail address, a phone number,
            # a web site): evidence of meaning that the embedding misses ("what is your email"
            # is 0.23 from "How do I contact reception?" and its answer).
            semantic += settings.contact_bonus
            anchored = True
        if not anchored and plain_only and all(_shares(t, heading_terms) for t in said):
            # Every word of the question is a common one, and all of them are in this heading:
            # "what happens if we're late?" is "What happens if I'm late, and ...?" in other
            # words (it had no word to anchor it and was declined).
            anchored = True
        if not anchored and coverage >= 1.0 - 1e-9 and _prices_visitors(g.query, hit.entry, asked):
            # "How much for one grown-up?" and "How much are tickets?" (whose answer prices
            # adults): every word of the question is in the entry, but only common ones, so it
            # was unanchored (semantic 0.45) and declined. A price list for the kind of visitor
            # asked about, with every word of the question, is on its topic. Not any priced
            # entry for "what's it cost?": that answered a scooter's price with parking's.
            anchored = True
        support = semantic + settings.coverage_weight * coverage
        have = {t for t, _ in matched}
        unmatched = sum(
            1
            for t, df in terms_df
            if df == 0 and t not in have and not _incidental(t) and t not in _UNTOLD_OK
        )
        # A repaired word counts as heard only for an entry that has it; for any other entry
        # it is still a word the FAQ lacks (as before the repair).
        guesses = [r.score for r in repairs if r.terms & have]
        unmatched += sum(1 for r in repairs if not r.terms & have)
        guess = min(guesses) if guesses else None
        unpriced = _names_no_price(g.query, hit.entry, specifics) or _names_no_time(
            g.query, hit.entry
        )
        unstated = (
            _unstated_situation(hit.entry, g.query, said)
            or _for_others(hit.entry, asked, g.query)
            or _about_another_thing(hit.entry.question, heading_terms, entry_terms, mine, said)
        )
        # What is priced: the matched words less price words and kinds of visitor (a price
        # list names those in its answer); a comparison the answer makes ("cheaper online")
        # is on the point.
        thing = [t for t, _ in matched if t not in _PRICE_TERMS and not _kinds(frozenset((t,)))]
        heading_hit = any(_shares(t, heading_terms) for t, _ in matched)
        answer_only = ""
        if (
            asks_amount
            and thing
            and not any(_shares(t, heading_terms) for t in thing)
            and not any(t in _CHEAPER for t, _ in matched)
            and _ASKS_AMOUNT_RE.search(hit.entry.question) is None  # not a price list
        ):
            answer_only = "price"
        elif asks_where and have and not heading_hit:
            # Where a thing is, and only another entry's answer names it: "where is the
            # exit?" is not the way from the station ("leave by the Market Street exit").
            answer_only = "where"
        out.append(
            _Candidate(
                hit,
                semantic,
                coverage,
                support,
                anchored,
                unmatched,
                guess,
                unpriced,
                unstated,
                answer_only,
                heading_hit,
            )
        )
    out.sort(key=lambda c: c.support, reverse=True)
    return out


def _plausible(c: _Candidate, settings: PolicySettings) -> bool:
    if c.semantic < settings.faq_min_semantic or c.support < settings.clarify_support:
        return False
    if c.anchored and c.coverage < settings.weak_coverage:
        return c.semantic >= settings.weak_semantic
    return c.anchored or c.semantic >= settings.unanchored_semantic


def _answerable(c: _Candidate, settings: PolicySettings) -> bool:
    return _plausible(c, settings) and c.support >= settings.faq_support


def _decline(category: str, settings: PolicySettings, reason: str | None = None) -> Decision:
    lead = settings.decline_leads.get(category, DEFAULT_DECLINE_LEADS.get(category, ""))
    template = settings.decline_template if settings.topics else settings.decline_template_no_topics
    text = f"{lead} {_fill(template, settings)}".strip()
    return Decision("decline", text, reason or f"off_topic:{category}")


def _answer(hit: Hit, reason: str, hits: Sequence[Hit], settings: PolicySettings) -> Decision:
    if settings.answer_mode == "llm":
        facts = (hit, *(h for h in hits if h.entry != hit.entry))
        return Decision("llm", "", reason, hit=hit, hits=tuple(facts))
    return Decision("faq", hit.entry.answer, reason, hit=hit)


def _clarify(cands: Sequence[_Candidate], settings: PolicySettings, reason: str) -> Decision:
    choices = tuple(
        Choice(id=str(i + 1), label=c.hit.entry.question, entry=c.hit.entry)
        for i, c in enumerate(cands[: settings.max_choices])
    )
    if settings.answer_mode == "llm":
        # A capable model can weigh two close entries itself; it gets both.
        return Decision("llm", "", reason, hit=cands[0].hit, hits=tuple(c.hit for c in cands))
    return Decision("clarify", _clarify_text(choices, settings), reason, choices=choices)


@dataclass(frozen=True)
class _Ranked:
    """One grounding weighed: its decision (None: nothing relevant) and best candidate."""

    decision: Decision | None
    best: _Candidate | None


def _weigh(
    g: Grounding,
    settings: PolicySettings,
    repeat: FaqEntry | None = None,
    repairs: Sequence[Repair] = (),
    offered: Sequence[FaqEntry] = (),
) -> _Ranked:
    """faq / clarify from one ranking. `repeat`: the entry the previous turn answered; a
    follow-up's combined query contains its heading, so answering it again needs a clear lead.
    `repairs`: misheard words put right in the query (`Lookups.repairs`). `offered`: the
    entries the previous turn asked back between; a follow-up read with that question answers
    one of them only with the same clear lead."""
    cands = _candidates(g, settings, repairs)
    ranked = _ranked(g)
    if ranked and all(h.semantic is None for h in ranked):
        return _weigh_lexical(cands, settings)
    demoted: list[_Candidate] = []
    if settings.demote_sentence_matches:
        cands, demoted = _without_sentence_matches(cands, settings)
    plausible = [c for c in cands if _plausible(c, settings)]
    if not plausible:
        return _Ranked(None, cands[0] if cands else None)
    best = plausible[0]
    others = [c.support for c in cands if c is not best]
    # A sentence match better supported than the best, about as like the question and with a
    # word of the question the best lacks, still stands in its way:
    # "will the machines give me change?" is the ticket machines' "give change up to £10",
    # not the cash machine (held-out 16, read: answered with the cash machine).
    ahead = [c for c in demoted if c.support > best.support]
    if ahead:
        asked = [t for t, _ in g.term_df if t not in _GENERIC and not _incidental(t)]
        has = _covered(best, asked)
        alike = best.semantic - settings.qualifier_semantic
        others += [c.support for c in ahead if c.semantic >= alike and _covered(c, asked) - has]
    lead = best.support - max(others, default=0.0)
    margin = settings.faq_margin
    if not best.anchored:
        margin = max(margin, settings.unanchored_margin)
    if (repeat is not None and best.hit.entry == repeat) or best.hit.entry in offered:
        margin = max(margin, settings.repeat_margin)
    if _answerable(best, settings) and lead >= margin and not _held(best, settings):
        rivals = _rivals(best, cands, g, settings)
        if rivals:
            return _Ranked(_clarify([best, *rivals], settings, "qualified"), best)
        dated = _dated(best, cands, g, settings)
        if dated is not None:
            return _Ranked(_clarify([best, dated], settings, "dated"), best)
        return _Ranked(_answer(best.hit, "confident", [c.hit for c in plausible], settings), best)
    # Offered back: the plausible best and the entries about as supported (these need no
    # anchor: the visitor picks, nothing is asserted).
    offer = [c for c in cands if c is best or _offerable(c, settings)]
    close = [c for c in offer if abs(best.support - c.support) <= settings.clarify_window]
    if all(c.unpriced for c in close):
        # A price no entry close to the question names ("how much is a sandwich" and the
        # café's entry): asking "Do you mean: Is there a café?" offers what was not asked.
        return _Ranked(None, best)
    moved_on = _asked_on(close, repeat, g)
    if moved_on is not None and _answerable(moved_on, settings) and not _held(moved_on, settings):
        return _Ranked(
            _answer(moved_on.hit, "asked_on", [c.hit for c in plausible], settings), moved_on
        )
    if len(close) >= 2:
        plain = _plainest(close, g)
        if plain is not None and _answerable(plain, settings) and not _held(plain, settings):
            hits = [c.hit for c in plausible]
            return _Ranked(_answer(plain.hit, "plainest", hits, settings), plain)
        return _Ranked(_clarify(close, settings, "ambiguous"), best)
    if _answerable(best, settings):
        # Good but not clearly ahead: ask, with a runner-up when there is one.
        near = [c for c in offer if abs(best.support - c.support) <= 2 * settings.clarify_window]
        return _Ranked(_clarify(near, settings, "confirm"), best)
    return _Ranked(None, best)


# A question asking when ("when", "what time", "how late") names the time an entry headed
# "... hours?" or "... time?" gives, without saying those words.
_ASKS_WHEN = frozenset("when time late early".split())
_WHEN_TERMS = frozenset(t for w in ("hour", "hours", "time", "times") for t in tokenize(w))


def _covered(c: _Candidate, terms: Iterable[str]) -> set[str]:
    """The question's `terms` that `c`'s entry has (itself or through a related word)."""
    entry = _entry_terms(c.hit.entry)
    return {t for t in terms if _shares(t, entry)}


def _unsaid(c: _Candidate, said: frozenset[str]) -> int:
    """How many specific words of `c`'s heading the question used neither itself nor through
    a related word ("public" in "Are you open on public holidays?")."""
    heading = [t for t in _heading_terms(c.hit.entry) if t not in _GENERIC]
    return sum(1 for t in heading if not _incidental(t) and not _shares(t, said))


def _plainest(close: Sequence[_Candidate], g: Grounding) -> _Candidate | None:
    """Of entries about equally supported, the only one whose heading adds nothing the question
    did not say, and that lacks no question word another has: "when does the museum open"
    between "What are the opening hours?" and "Are you open on public holidays?" (no holiday
    was named) is about the opening hours. None: no such single entry."""
    said = frozenset(t for t, _ in g.term_df)
    if _ASKS_WHEN & frozenset(_words(g.query)):
        said |= _WHEN_TERMS
    counts = sorted((_unsaid(c, said), i) for i, c in enumerate(close))
    (fewest, i), (runner, _) = counts[0], counts[1]
    if fewest > 0 or runner == 0:
        return None
    plain = close[i]
    if not _heading_says(plain, said) and any(_heading_says(c, said) for c in close):
        # "Is there a petting zoo?": "petting" is only related to the dog entry's "dog" (through
        # "pet"); the farm's heading has the word itself.
        return None
    asked = [t for t, _ in g.term_df if t not in _GENERIC]
    has = _covered(plain, asked)
    if any(_covered(c, asked) - has for c in close if c is not plain):
        return None  # "and on a bank holiday?": the holidays entry has a word it lacks
    return plain


def _heading_says(c: _Candidate, said: frozenset[str]) -> bool:
    """`c`'s heading has a specific word of the question itself, not only a related one."""
    heading = _heading_terms(c.hit.entry)
    return any(_term_in(t, heading) for t in said if t not in _GENERIC and not _incidental(t))


def _held(c: _Candidate, settings: PolicySettings) -> bool:
    """A doubt that makes `c` offered back however far ahead it is: the question asks about
    something the FAQ lacks, `c` rests on a sound-alike guess, or only one sentence of its
    answer is like the question."""
    if c.unmatched >= settings.unmatched_confirm:
        return True  # see _Candidate.unmatched
    if c.unpriced:
        return True  # see _Candidate.unpriced
    if c.unstated:
        return True  # see _Candidate.unstated
    if c.semantic < settings.answer_min_semantic and not c.heading_hit:
        return True  # see PolicySettings.answer_min_semantic
    price = c.answer_only == "price"
    floor = settings.price_elsewhere_semantic if price else settings.weak_semantic
    if c.answer_only and c.semantic < floor:
        # A price asked, only the answer has the question's words, and the meaning is far:
        # "how much is entry?" is not the membership ("Members get free entry all year") nor
        # the free days ("Entry is free on the first Sunday"); "a ticket to get in" at a hotel
        # is not its car park ("ask reception for a parking ticket"); "where is the exit?" is
        # not the way from the station ("leave by the Market Street exit").
        return True
    if c.guess is not None and c.guess < settings.soundalike_answer:
        return True
    return _sentence_match(c, settings)


def _sentence_match(c: _Candidate, settings: PolicySettings) -> bool:
    """Unanchored, and close to the question by one sentence of its answer alone."""
    return not c.anchored and _own_question_semantic(c) < settings.unanchored_question_semantic


def _without_sentence_matches(
    cands: list[_Candidate], settings: PolicySettings
) -> tuple[list[_Candidate], list[_Candidate]]:
    """`cands` less the sentence matches (`_sentence_match`) that a plausible entry matched as
    a whole matches at least as well, and those set aside, each in `cands`' order: "when does
    the museum open" is about the opening hours, not the gift shop whose answer says "It
    opens at the same times as the museum"."""
    whole = [
        _own_question_semantic(c)
        for c in cands
        if not _sentence_match(c, settings) and _plausible(c, settings)
    ]
    if not whole:
        return cands, []
    top = max(whole)
    kept: list[_Candidate] = []
    aside: list[_Candidate] = []
    for c in cands:
        matched = _sentence_match(c, settings) and _own_question_semantic(c) <= top
        (aside if matched else kept).append(c)
    return kept, aside


def _rivals(
    best: _Candidate, cands: Sequence[_Candidate], g: Grounding, settings: PolicySettings
) -> list[_Candidate]:
    """The entries the visitor may as well mean, when `best`'s heading has a qualifier the
    question lacks (see `PolicySettings.qualifier_semantic`); [] when it has none."""
    said = frozenset(t for t, _ in g.term_df)
    heading = [t for t in _heading_terms(best.hit.entry) if t not in _GENERIC]
    unsaid = [t for t in heading if not _incidental(t) and not _shares(t, said)]
    if not unsaid:
        return []
    specific = [t for t in said if t not in _GENERIC]
    # Anchored by its heading, the best is lexically on topic: a rival must cover more. Matched
    # through its answer alone ("online tickets are EUR 1 cheaper"), its coverage says nothing.
    by_heading = len(unsaid) < len(heading)
    has = _covered(best, specific)
    semantic = max(settings.faq_min_semantic, best.semantic - settings.qualifier_semantic)
    return [
        c
        for c in cands
        if c is not best
        and c.semantic >= semantic
        and (c.coverage > best.coverage or not by_heading)
        and _covered(c, specific) - has  # a word of the question the best lacks ("ready", "price")
        and not all(_term_in(t, _entry_terms(c.hit.entry)) for t in unsaid)
    ]


def _dated(
    best: _Candidate, cands: Sequence[_Candidate], g: Grounding, settings: PolicySettings
) -> _Candidate | None:
    """The entry that names the month the question asks about, when `best` does not: "are you
    open the first week of January?" was answered with the opening hours (by season) while
    another entry says the castle is closed 2 to 15 January. The one that names the date may
    be the exception to the other, so both are offered back (`_MONTH_TERMS`). None: no such
    entry."""
    months = [t for t, _ in g.term_df if t in _MONTH_TERMS]
    if not months or any(_term_in(m, _entry_terms(best.hit.entry)) for m in months):
        return None
    return next(
        (
            c
            for c in cands
            if c is not best
            and c.anchored
            and c.semantic >= settings.faq_min_semantic
            and any(_term_in(m, _entry_terms(c.hit.entry)) for m in months)
        ),
        None,
    )


def _qualified(r: _Ranked, whole: Grounding, settings: PolicySettings) -> bool:
    """A part's answer whose entry has a rival in the reading of the whole question: the part
    dropped words ("our room isn't ready yet") that the rival covers."""
    if r.best is None:
        return False
    cands = _candidates(whole, settings)
    best = next((c for c in cands if c.hit.entry == r.best.hit.entry), None)
    return best is not None and bool(_rivals(best, cands, whole, settings))


def _own_question_semantic(c: _Candidate) -> float:
    return c.hit.semantic if c.hit.semantic is not None else c.semantic


def _offerable(c: _Candidate, settings: PolicySettings) -> bool:
    return c.semantic >= settings.faq_min_semantic and c.support >= settings.clarify_support


def _weigh_lexical(cands: list[_Candidate], settings: PolicySettings) -> _Ranked:
    """Without an embedder (knowledge.semantic = false) shared words say which entries are
    about the question's topic, not that one answers it: offer them, never answer outright."""
    offered = [c for c in cands if c.anchored and c.coverage >= settings.lexical_coverage][
        : settings.max_choices
    ]
    if not offered:
        return _Ranked(None, cands[0] if cands else None)
    return _Ranked(_clarify(offered, settings, "lexical_only"), offered[0])


def _support(r: _Ranked) -> float:
    return r.best.support if r.best is not None else 0.0


def _is_answer(r: _Ranked) -> bool:
    return r.decision is not None and r.decision.kind in ("faq", "llm")


def _names_its_entry(question: str, own: _Ranked, topic: FaqEntry | None) -> bool:
    """A short question that answers itself: its standalone reading answers another entry than
    the previous one, and every content word of it is in that entry's own question ("Is there a
    cafe?" after the toilets, whose answer mentions the café). Then the follow-up reading, which
    would read it as being about the previous topic, is not considered."""
    if not _is_answer(own) or own.best is None or topic is None:
        return False
    if _CONNECTOR_RE.match(question) is not None:  # "and for the kids?": about the topic
        return False
    if _points_back(_words(question)):  # "how long do *they* take?" after the tours
        return False
    entry = own.best.hit.entry
    terms = _content_terms(question)
    return entry != topic and bool(terms) and set(terms) <= set(tokenize(entry.question))


def _stands_alone(question: str, cleaned: str, own: _Ranked, topic: FaqEntry | None) -> bool:
    """A whole question of its own: it starts like a question, does not point back
    (`_refers_back`), and its standalone reading answers another entry than the previous one.
    "Is there some more to get a coffee?" (ASR for "somewhere") after the toilets was answered
    with the toilets, whose answer mentions the café: the follow-up reading had more support."""
    if not _is_answer(own) or own.best is None or topic is None or own.best.hit.entry == topic:
        return False
    return _ASKS_RE.match(cleaned) is not None and not _refers_back(question)


def _fragment(question: str) -> bool:
    """A follow-up that asks nothing of its own: a connector, then only a thing, a person or a
    time ("and for the kids?", "what about in winter?"). It asks what the previous question
    asked."""
    said = question.strip()
    m = _CONNECTOR_RE.match(said)
    return m is not None and _ASKS_RE.search(said[m.end() :]) is None


# A fragment that starts with a preposition says who, where or when the previous question is
# now asked for ("and for the kids?", "what about in the restaurant?" after the dog): not a new
# thing to ask about, as a bare noun is ("what about a computer?").
_FOR_RE = re.compile(
    r"^(?:and\s+|but\s+)?(?:what about\s+|how about\s+)?"
    r"(?:for|in|at|with|without|inside|outside|near)\b",
    re.IGNORECASE,
)


def _names(fragment: str, own: _Ranked) -> bool:
    """A fragment follow-up that names its own entry: each of its words is in the heading of
    the entry its standalone reading answers ("and a pool?" after the gym's hours: "Is there a
    swimming pool or sauna?"), itself or through a related word. Not one that says who for or
    where (`_FOR_RE`: "and for the kids?" after a ticket price): that still asks the previous
    question."""
    if not _is_answer(own) or own.best is None or _FOR_RE.match(fragment) is not None:
        return False
    terms = _content_terms(fragment)
    heading = _heading_terms(own.best.hit.entry)
    return bool(terms) and all(_shares(t, heading) for t in terms)


def _beside_the_topic(question: str, other: _Ranked, topic: FaqEntry | None) -> bool:
    """A word or two that ask nothing, read with the previous topic, would get that answer
    again, though none of them is in it or related to it ("Lost." after the audio guide's
    answer: what ASR kept of "Stop, please." over our own voice). The topic does not explain
    them. Longer follow-ups keep the topic ("just at cost anything", a garbled "does it cost
    anything?", is about the free entry it follows)."""
    if topic is None or other.best is None or other.best.hit.entry != topic:
        return False
    cleaned = strip_fillers(question)
    if len(_words(cleaned)) > 2 or _ASKS_RE.search(cleaned) or _refers_back(question):
        return False
    terms = [t for t in _content_terms(cleaned) if not _incidental(t)]
    return bool(terms) and not any(_shares(t, _entry_terms(topic)) for t in terms)


def _refers_back(question: str) -> bool:
    """The question points at what was said before: it starts with a connector ("and for the
    kids?") or names it ("how much is it?"). A short question that does neither ("what is
    your favourite colour?", a misheard "where can I part my car?") may still be read with the
    previous topic, but only to answer it: asking back about the previous topic ("Do you mean:
    When are the guided tours?") tells the visitor the box misunderstood a plain question."""
    said = question.strip()  # before strip_fillers, which drops a leading "and"
    return any(_CONNECTOR_RE.match(q) is not None for q in (said, strip_fillers(said))) or (
        _points_back(_words(said))
    )


def _pick(own: _Ranked, other: _Ranked) -> _Ranked:
    """The better of two readings of one question (standalone, with the previous topic): the
    more supported one, but when both lead to the same entry, the one that answers."""
    same = (
        own.best is not None
        and other.best is not None
        and own.best.hit.entry == other.best.hit.entry
    )
    if same and _is_answer(own) != _is_answer(other):
        return own if _is_answer(own) else other
    return other if _support(other) > _support(own) else own


def _prefer_repaired(heard: _Ranked, fixed: _Ranked, settings: PolicySettings) -> _Ranked:
    """The repaired reading when it leads to an entry with a repaired word and is at least as
    well supported as what was heard (plus `soundalike_gain`); else what was heard."""
    if fixed.decision is None or fixed.best is None or fixed.best.guess is None:
        return heard
    if _support(fixed) < _support(heard) + settings.soundalike_gain:
        return heard
    d = fixed.decision
    reason = f"soundalike_{d.reason}"  # for logs: "soundalike_confirm"
    if d.kind == "llm" and d.reason != "confident":
        # llm mode hands close entries to the model; a guess at the words is asked back.
        entries = list(dict.fromkeys(h.entry for h in d.hits))[: settings.max_choices]
        return _Ranked(clarify_between(entries, settings, reason), fixed.best)
    return _Ranked(replace(d, reason=reason), fixed.best)


def _two_answers(parts: Sequence[_Ranked], settings: PolicySettings) -> Decision | None:
    """Several questions in one breath, each confidently one entry: answer them all."""
    answered: list[Hit] = []
    for r in parts:
        d = r.decision
        if d is not None and d.kind in ("faq", "llm") and d.hit is not None:
            if all(h.entry != d.hit.entry for h in answered):
                answered.append(d.hit)
    if len(answered) < 2:
        return None
    if settings.answer_mode == "llm":
        return Decision("llm", "", "several_questions", hit=answered[0], hits=tuple(answered))
    text = " ".join(h.entry.answer for h in answered)
    return Decision("faq", text, "several_questions", hit=answered[0], hits=tuple(answered))


def _left_open(parts: Sequence[tuple[Grounding, _Ranked]], answered: _Ranked) -> int:
    """How many of the questions asked in one breath (`parts`, each with its weighing) the
    part `answered` leaves open: those that are not small talk ("how are you?") and lead to
    no entry or to another entry than the one answered (a part about the same entry, offered
    back on its own, is answered with it)."""
    entry = answered.best.hit.entry if answered.best is not None else None
    n = 0
    for g, r in parts:
        if r is answered or (g.query and _chat_intent(g.query, _faq_terms(g)) is not None):
            continue
        if r.best is None or r.best.hit.entry != entry:
            n += 1
    return n


def _in_scope_part(parts: Sequence[tuple[Grounding, _Ranked]], answered: _Ranked) -> bool:
    """One of the questions asked in one breath is answered with `answered`'s entry on its
    own and is not out of scope itself."""
    if not _is_answer(answered) or answered.best is None:
        return False
    entry = answered.best.hit.entry
    return any(
        _is_answer(r)
        and r.best is not None
        and r.best.hit.entry == entry
        and _off_topic(g.query, r.best.hit, _faq_terms(g)) is None  # fillers stripped already
        for g, r in parts
    )


def decide(
    question: str,
    grounding: Grounding,
    *,
    context: PolicyContext | None = None,
    settings: PolicySettings,
    contextual: Grounding | None = None,
    parts: Sequence[Grounding] = (),
    short_ramble: bool = False,
    repaired: Grounding | None = None,
    repairs: Sequence[Repair] = (),
) -> Decision:
    """What to do with `question` (the raw transcript or typed text), given the groundings of
    `lookups(question, context)`: `grounding` of `.primary`, `contextual` of `.contextual`,
    `parts` of `.parts` and `repaired` of `.repaired` (each when there is one), and its
    `.short_ramble` and `.repairs`. Never an empty reply except for kind "llm"."""
    cleaned = strip_fillers(question)
    if context is not None and context.choices:
        choice = resolve_choice(question, context.choices)
        if choice is not None:
            hit = next(
                (h for h in _ranked(grounding) if h.entry == choice.entry),
                Hit(entry=choice.entry, score=0.0),
            )
            return _answer(hit, "clarified", [hit], settings)
        if _NO_RE.fullmatch(cleaned.strip(" .!?").casefold() + " ") is not None:
            # "No" / "neither": none of the offered questions was meant.
            return _decline("rejected", settings, "clarify_rejected")
    why = _say_again_reason(question, cleaned)
    if why is not None:
        # "hello" alone strips to nothing too: greetings are small talk, not a failed hearing.
        intent = _chat_intent(question)
        if intent is not None:
            return _chat(intent, settings)
        return Decision("say_again", settings.say_again, why)
    after = _retraction(cleaned)
    # Small talk taken back is no small talk: "Sorry, it is perfect. No wait." (a cut-off
    # question heard in part) is not thanks; what comes after it may be ("no, sorry, that's
    # all, thanks").
    faq_terms = _faq_terms(grounding)  # for small talk here, and the out-of-scope check
    intent = _chat_intent(question if after is None else after, faq_terms)
    if after is not None and intent == "ack":
        intent = None  # "No, wait. No.": the "no" is the retraction's own
    if intent is not None:
        return _chat(intent, settings)
    if after is not None:
        return Decision("say_again", settings.say_again, "retracted")
    if _looks_foreign(_words(cleaned)):
        return _decline("language", settings, "language")
    previous = context.previous if context is not None else None
    if previous is not None and previous.kind == "decline" and _asks_of_the_last(cleaned):
        # "Where's the food caught?" (declined) - "what time does it open?": "it" is what was
        # declined, not the venue, whose hours had answered it (held-out 21, spoken).
        return _decline("unknown", settings, "after_decline")

    weighed = _weigh(grounding, settings)
    continued = False  # a fragment: read with the previous question, not in parts
    if contextual is not None and _ranked(contextual):
        repeat = context.topic if context is not None else None
        # "Have you got a petting zoo?" - "Do you mean: dogs, or the petting farm?" - "are the
        # kids allowed to feed them?" was answered with the dogs by a lead of 0.08.
        offered = [c.entry for c in context.choices] if context is not None else []
        other = _weigh(contextual, settings, repeat, offered=offered)
        fragment = _fragment(question)
        # A fragment that names its own entry ("what about a computer?" after the study rooms)
        # asks that entry's question: the previous reading would win on support alone.
        named = fragment and _names(cleaned, weighed)
        alone = (
            named
            or _names_its_entry(cleaned, weighed, repeat)
            or _stands_alone(question, cleaned, weighed, repeat)
        )
        if other.decision is not None and fragment and not named:
            # "and in winter?" asks nothing alone: what it asks is what came before. Alone it
            # was answered with the petting farm, whose answer says "until 16:00 in winter".
            weighed, continued = other, True
        elif (
            not alone
            and (_is_answer(other) or _refers_back(question))
            and not _beside_the_topic(question, other, repeat)
        ):
            weighed = _about_it(cleaned, weighed, other) or _pick(weighed, other)
    weighed_parts = [(p, _weigh(p, settings) if _ranked(p) else _Ranked(None, None)) for p in parts]
    split = [r for p, r in weighed_parts if _ranked(p)]
    if len(split) >= 2:
        several = _two_answers(split, settings)
        if several is not None:
            return several
    unanswered = 0  # questions asked in the same breath that the answer given leaves open
    if split and not _is_answer(weighed) and not continued:
        # A long ramble or two questions: one part may be clearly answerable on its own, but
        # not a later one that points back at an earlier one ("can we bring sandwiches, and is
        # there somewhere covered to eat *them* if it rains?" was answered with what to do
        # when it rains; "is there a calmer show …, and what do *those* tickets cost?" with
        # the usual prices): what it asks about is the part left unanswered.
        answers = [
            r
            for i, (p, r) in enumerate(weighed_parts)
            if _ranked(p)
            and _is_answer(r)
            and not _qualified(r, grounding, settings)
            and not (i > 0 and _points_back_at_all(_impersonal_it(_words(p.query))))
        ]
        if len(split) == 1:
            # A ramble's asking clause read alone loses what came before it: it answers only
            # with the entry the whole utterance ranks first ("is there anything in the water
            # for babies? mine's nine months" alone matched the children's swimming lessons).
            first = [h.entry.question for h in _ranked(grounding)[:1]]
            # A clause split off only because of `SHORT_WORDS` must also name its entry's whole
            # heading.
            clause = next(p.query for p in parts if _ranked(p))
            answers = [
                r
                for r in answers
                if r.best is not None
                and [r.best.hit.entry.question] == first
                and (not short_ramble or _names_heading(r.best.hit.entry, clause))
            ]
        if answers:
            weighed = max(answers, key=_support)
            unanswered = _left_open(weighed_parts, weighed)
    if repaired is not None and repairs and not _is_answer(weighed):
        # What was heard leads nowhere, or only to a question back: the reading with misheard
        # words put right may. Over a question back it must answer: a guess that only offers
        # other entries ("one grown-up" -> "group") is no better than what was heard.
        fixed = _prefer_repaired(weighed, _weigh(repaired, settings, repairs=repairs), settings)
        if weighed.decision is None or _is_answer(fixed):
            weighed = fixed

    best = weighed.best.hit if weighed.best is not None else None
    category = _off_topic(cleaned, best, faq_terms)
    if (
        category in _REQUESTS
        and weighed.decision is not None
        and any(_answers_request(cleaned, c.entry) for c in weighed.decision.choices)
    ):
        # The staff's answer to the request is among the entries offered back ("could you get
        # me a cab to the station?": the airport's entry led "Can you call me a taxi?" by a
        # little, and the request was declined).
        category = None
    if (
        category in _SEPARATE_REQUESTS
        and len(parts) >= 2
        and _in_scope_part(weighed_parts, weighed)
    ):
        # "do you deliver, and can I pay by card?": the request the kiosk cannot carry out is
        # one of two questions; the other is still answered, and the answer says the rest is
        # not. A topic out of scope ("will there be frost tonight? should I cover my plants")
        # is the setting of the whole utterance: declined as before.
        category, unanswered = None, max(unanswered, 1)
    if category is not None:
        return _decline(category, settings)
    decision = weighed.decision
    if _is_answer(weighed) and weighed.best is not None and _heard_as_greeting(cleaned):
        # "Hiya!" heard as "Hire." was answered with the car hire desks: a lone word that may
        # be a greeting misheard is offered back, not asserted.
        return clarify_between([weighed.best.hit.entry], settings, "like_a_greeting")
    if _is_answer(weighed) and weighed.best is not None and _DOUBLED_RE.search(cleaned):
        # "Do you need to look for a toilet toilet?" for "do I need to book for it?" in
        # babble: a word said twice running is the recogniser's sign of a garbled hearing,
        # so what it matched is offered back (held-out 25, spoken: answered with the toilets).
        return clarify_between([weighed.best.hit.entry], settings, "repeated_word")
    if _is_answer(weighed) and weighed.best is not None and _PLACEHOLDER_RE.search(cleaned):
        # "where's the... kWh... the what-d'you-call-it": the visitor could not name the
        # thing; the entry is a guess at it, offered back.
        return clarify_between([weighed.best.hit.entry], settings, "incomplete")
    if decision is not None and unanswered and decision.kind == "faq":
        decision = replace(decision, text=f"{decision.text} {settings.other_part}")
    cut_off = _cut_off(cleaned)
    if decision is not None and not cut_off:
        return decision
    if cut_off:
        finished = not _unfinished(_words(cleaned))
        if decision is not None and _is_answer(weighed) and weighed.best is not None:
            if finished:
                return decision  # "a room with a shower I can roll into"
            # "what time does the": the likely entry, offered back rather than asserted (in
            # either answer mode: the LLM would be as unsure of the question's end).
            return clarify_between([weighed.best.hit.entry], settings, "incomplete")
        if decision is not None and decision.kind == "clarify" and finished:
            # "my mum can't manage steps, is there another way in for her": a sentence may end
            # on "her", and the entries offered back are as good as asking it all again.
            return decision
        return Decision("say_again", settings.say_again, "incomplete")
    if decision is not None:
        return decision
    if cleaned.rstrip().endswith(("...", "…")):
        # "what was I...": the visitor trailed off before asking anything this FAQ knows.
        return Decision("say_again", settings.say_again, "incomplete")
    return _decline("unknown", settings, "no_match")


# A word for a thing the visitor cannot name.
_PLACEHOLDER_RE = re.compile(
    # After "the", "that"...: not "the headphone tour thingy", where the thing is named.
    r"(?:^\W*|\b(?:the|a|an|that|this|these|those|your|some|one of (?:the|your|those))\W+)"
    r"(?:what(?:[- ]?(?:d'you|do you|d'ya|d'ye|you|ya)[- ]?call[- ]?(?:it|them|'?em)|sits?|"
    r"chamacallits?)\b|thingy\b|thingamajigs?\b|thingummy\b|doo-?dahs?\b|doohickeys?\b)",
    re.IGNORECASE,
)


# A word of three letters or more said twice running with nothing between ("toilet toilet",
# not "bye, bye", "very very" or the digits of a number: "four four seven one").
_DOUBLED_RE = re.compile(
    r"\b(?!(?:very|really|bye|yes|yeah|no|please|thanks|sorry|hello|hiya|now|far|long|way|"
    r"the|and|that|had|come|more|round|over|again|ever|out|one|two|three|four|five|six|seven|"
    r"eight|nine|ten|zero|double|twenty|thirty|forty|fifty|hundred)\b)([^\W\d]{3,}) \1\b",
    re.IGNORECASE,
)


# How one-word greetings sound (`soundalike.sound_key`: "H", "HY", "HL", "HT").
_GREETING_KEYS = frozenset(sound_key(w) for w in ("hi", "hey", "hiya", "hello", "howdy"))


def _heard_as_greeting(cleaned: str) -> bool:
    """The utterance is one word that sounds like a greeting without being one ("Hire." for
    "Hiya!", "Hell." for "Hello"): the commonest one-word utterance at a kiosk is a greeting,
    and a recogniser turns a short one into a real word. Same first sound, at most one other
    sound added, dropped or changed. A word said again is one word: the recogniser often
    doubles a short one ("Hiya!" heard as "Hire hire")."""
    words = list(dict.fromkeys(_words(cleaned)))
    if len(words) != 1:
        return False
    key = sound_key(words[0])
    return any(
        key[:1] == g[:1] and len(key) <= 2 and edit_distance(key, g) <= 1 for g in _GREETING_KEYS
    )


def _chat(intent: str, settings: PolicySettings) -> Decision:
    template = settings.chat_replies.get(intent) or DEFAULT_CHAT_REPLIES[intent]
    return Decision("chat", _fill(template, settings), f"chat:{intent}")


def clarify_between(entries: Sequence[FaqEntry], settings: PolicySettings, reason: str) -> Decision:
    """A question back offering `entries` (two or three), labelled with their own headings."""
    choices = tuple(Choice(str(i + 1), e.question, e) for i, e in enumerate(entries[:3]))
    return Decision("clarify", _clarify_text(choices, settings), reason, choices=choices)


def instead_of_generated(hits: Sequence[Hit], settings: PolicySettings) -> Decision:
    """What replaces a generated reply the fact guard refused: a question back between the
    retrieved entries when there are two or more, else the staff's own answer of the single
    entry, else a decline."""
    entries = list(dict.fromkeys(h.entry for h in hits))
    if len(entries) >= 2:
        return clarify_between(entries, settings, "guard")
    if len(entries) == 1:
        return Decision("faq", entries[0].answer, "guard", hit=hits[0])
    return decline(settings, "guard")


def decline(settings: PolicySettings, reason: str, category: str = "unknown") -> Decision:
    """The honest "I can't help with that" reply, naming what the kiosk can help with."""
    return _decline(category, settings, reason)


def usual_replies(entries: Sequence[FaqEntry], settings: PolicySettings) -> list[str]:
    """The replies made of staff text that the box gives most, likeliest first and each once:
    the decline, the say-again, the small-talk replies (greeting, thanks, goodbye first), then
    (answer_mode "faq") every FAQ answer. Their speech can be made ahead of the visitors who
    will get them. Pure."""
    small_talk = [_chat(intent, settings).text for intent in DEFAULT_CHAT_REPLIES]
    texts = [_decline("unknown", settings).text, settings.say_again, *small_talk]
    if settings.answer_mode == "faq":
        texts += [e.answer for e in entries]
    return list(dict.fromkeys(t for t in texts if t.strip()))


# --------------------------------------------------------------------------- n-best


def distinct_readings(question: str, alternatives: Sequence[str], limit: int = 2) -> list[str]:
    """Up to `limit` of ASR's other hypotheses (best first) whose content words differ from
    the question's and from each other's: "a" for "the" changes no decision, and each reading
    costs a ranking (an embedding) on the turn's path."""
    seen = {frozenset(_content_terms(strip_fillers(question)))}
    out: list[str] = []
    for text in alternatives:
        key = frozenset(_content_terms(strip_fillers(text)))
        if key and key not in seen:
            seen.add(key)
            out.append(text)
            if len(out) == limit:
                break
    return out


def reconcile(
    heard: Decision,
    question: str,
    alternatives: Sequence[str],
    decide_other: Callable[[str], Decision],
    settings: PolicySettings,
) -> Decision:
    """The decision on what ASR heard best (`question`), checked against `decide_other`'s on
    the other hypotheses of the same speech (`distinct_readings` of `alternatives`).

    Nothing found for the best reading while another is answered: that entry is offered back
    ("Do you mean ...?") instead of a decline. Everything else stands, and the other readings
    are then not weighed (each costs a ranking on the turn's path). An answer is not put in
    doubt by another reading: the beam's runners-up hold words nobody said even for clear
    speech ("Can I bring my kid?" for "... my dog?"), and asking back on them cost right answers
    on the spoken tuning set and in the suite, while the wrong answers it was meant to catch
    had no differing runner-up.
    """
    if heard.kind != "decline" or heard.reason != "no_match":
        return heard
    others = [decide_other(t) for t in distinct_readings(question, alternatives)]
    entries = list(
        dict.fromkeys(o.hit.entry for o in others if o.kind in ("faq", "llm") and o.hit is not None)
    )
    if not entries:
        return heard
    return clarify_between(entries, settings, "heard_otherwise")
