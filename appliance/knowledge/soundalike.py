"""Question words the FAQ lacks that sound like words it has: misrecognitions repaired.

Speech recognition turns a site's words into ordinary ones that sound alike: "galleries" ->
"calories", "cloakroom" -> "clock room", "wheelchair" -> "we'll chair". Such a word matches
nothing in the FAQ, so the kiosk asks back or declines, or the rest of the sentence anchors it
to a wrong entry. `SoundIndex.repair` finds, for each question word the FAQ does not use (and
for two or three adjacent words run together), a FAQ word that sounds alike, and returns the
question with it put in, each `Repair` with a score: how alike, 0..1.

How alike: a consonant-skeleton key (`sound_key`, a small Metaphone: "galleries" and
"calories" are both KLRS) within one edit of the FAQ word's key, and the spelling within a few
letters. Both distances count in the score. No phonemizer: this is pure and costs about 0.1 ms
of CPU per question (espeak-ng would be a process per question, ~7 ms), and English spelling
carries enough of the sound for the real words a recogniser writes instead of the one said.

A repaired word is a guess: the policy lets a sound-alike alone lead to "Do you mean ...?",
not to a confident answer, unless its score is high (`PolicySettings.soundalike_answer`).

Pure: build once per FAQ (`SoundIndex.build`, a few ms; `sound_index(kb)` caches it per
knowledge base), then `repair` per question.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .concepts import related
from .faq import FaqEntry
from .ranking import KnowledgeBase
from .text import STOPWORDS, tokenize

__all__ = [
    "MIN_SCORE",
    "Repair",
    "Repaired",
    "SoundIndex",
    "edit_distance",
    "sound_index",
    "sound_key",
]

# A candidate below this score is not a repair. Calibrated on the tuning splits' transcripts
# (docs/architecture.md, "Misheard words").
MIN_SCORE = 0.70
# Shortest FAQ word that may be matched (letters), and the shortest key a one-edit match needs:
# short words have many sound-alikes ("bike"/"mic", "bar"/"car").
MIN_WORD = 5
MIN_KEY_FOR_EDIT = 4
MAX_JOIN = 3  # heard words run together for one FAQ word ("will gen hof" -> "wilgenhof")

_LETTERS_RE = re.compile(r"[^a-z]")
_WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# A word of three letters or more with nothing run into it, for `join_compounds`.
_PLAIN_WORD_RE = re.compile(r"(?<![\w'’-])[^\W\d_]{3,}(?![\w'’-])")
_FRONT = frozenset("eiy")
# Words of the grammar, not of any topic, that the FAQ may happen not to use: heard, they were
# almost surely said ("do you do both trips" -> "booth", the ticket booth). Not repaired alone.
_FUNCTION_WORDS = frozenset(
    """
    both either neither each every other another such same own only than once twice not nor
    over under above below through across after before since until till while because though
    although whether without within upon onto off out up down near next among along around
    may might must shall ought these those whose whatever whoever however
    """.split()
)


def _letters(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word.casefold())
    return _LETTERS_RE.sub("", "".join(c for c in decomposed if not unicodedata.combining(c)))


def sound_key(word: str) -> str:
    """A consonant skeleton of how an English word sounds (a small Metaphone): vowels dropped
    except a leading one ("A"), letters that sound alike share a code, doubled codes collapse.
    "galleries"/"calories" -> "KLRS", "cloakroom"/"clockroom" -> "KLKRM"."""
    w = _letters(word)
    for start, sound in (("kn", "n"), ("gn", "n"), ("pn", "n"), ("wr", "r"), ("ps", "s"),
                         ("wh", "w"), ("x", "s")):  # fmt: skip
        if w.startswith(start):
            w = sound + w[len(start) :]
            break
    if w.endswith("mb"):
        w = w[:-1]
    if w.endswith("ng") and len(w) > 3:
        w = w[:-1]  # "parking": the g is not heard as a K
    out: list[str] = []
    i = 0
    while i < len(w):
        c = w[i]
        nxt = w[i + 1] if i + 1 < len(w) else ""
        code = ""
        step = 1
        if c in "aeiou":
            code = "A" if i == 0 else ""
        elif c == "c":
            if nxt == "h":
                code, step = "X", 2
            elif nxt in _FRONT:
                code = "S"
            else:
                code = "K"
                if nxt == "k":
                    step = 2
        elif c == "s":
            if nxt == "h" or w[i + 1 : i + 3] in ("io", "ia"):
                code, step = "X", 2 if nxt == "h" else 1
            else:
                code = "S"
        elif c == "t":
            if nxt == "h":
                code, step = "0", 2
            elif w[i + 1 : i + 3] in ("io", "ia"):
                code = "X"
            elif w[i + 1 : i + 3] == "ch":
                code = ""
            else:
                code = "T"
        elif c == "p":
            code, step = ("F", 2) if nxt == "h" else ("P", 1)
        elif c == "g":
            if nxt == "h":
                code, step = "", 2  # "night", "through"
            elif nxt in _FRONT:
                code = "J"
            else:
                code = "K"
        elif c == "d":
            code = "J" if w[i + 1 : i + 3] in ("ge", "gi", "gy") else "T"
        elif c == "h":
            code = "H" if i == 0 and nxt in "aeiou" and nxt else ""
        elif c in "wy":
            code = c.upper() if nxt and nxt in "aeiou" else ""
        elif c == "q":
            code = "K"
        elif c == "x":
            code = "KS"
        elif c == "z":
            code = "S"
        elif c == "v":
            code = "F"
        else:
            code = c.upper()
        for ch in code:
            if not out or out[-1] != ch:
                out.append(ch)
        i += step
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _deletes(key: str) -> set[str]:
    return {key} | {key[:i] + key[i + 1 :] for i in range(len(key))}


@dataclass(frozen=True)
class Repair:
    """Heard words (one, or adjacent ones run together) replaced by a FAQ word."""

    heard: str  # as in the question: "clock room"
    word: str  # the FAQ's word: "cloakroom"
    score: float  # how alike, MIN_SCORE..1

    @property
    def terms(self) -> frozenset[str]:
        """The FAQ word's `tokenize` terms (what the policy's word coverage sees)."""
        return frozenset(tokenize(self.word))


@dataclass(frozen=True)
class Repaired:
    text: str  # the question with each repair put in
    repairs: tuple[Repair, ...]


def _similarity(heard: str, word: str, heard_key: str, word_key: str) -> float:
    """0..1: the mean of key and spelling similarity (1 - distance / longer length)."""
    key = 1.0 - edit_distance(heard_key, word_key) / max(len(heard_key), len(word_key), 1)
    spelling = 1.0 - edit_distance(heard, word) / max(len(heard), len(word), 1)
    return (key + spelling) / 2.0


class SoundIndex:
    """A FAQ's words by sound. `terms`: every `tokenize` term of the FAQ (a heard word with one
    of them, or a related word of one, is understood and never repaired)."""

    def __init__(
        self,
        words: Iterable[str],
        terms: Iterable[str],
        min_score: float = MIN_SCORE,
        pairs: Iterable[str] = (),
    ):
        self.min_score = min_score
        self.terms = frozenset(terms)
        # Two terms one after the other in the FAQ, "season ticket": whether it uses a phrase.
        self.pairs = frozenset(pairs)
        self._keys: dict[str, str] = {}  # word -> key
        self._by_delete: dict[str, set[str]] = {}  # key, or key minus one letter -> words
        for word in words:
            w = _letters(word)
            if len(w) < MIN_WORD or w in self._keys or w in STOPWORDS:
                continue
            key = sound_key(w)
            if len(key) < 2:
                continue
            self._keys[w] = key
            for d in _deletes(key) if len(key) >= MIN_KEY_FOR_EDIT else {key}:
                self._by_delete.setdefault(d, set()).add(w)

    @classmethod
    def build(cls, entries: Iterable[FaqEntry], min_score: float = MIN_SCORE) -> SoundIndex:
        """From FAQ entries: the words of every heading and answer."""
        words: list[str] = []
        terms: set[str] = set()
        pairs: set[str] = set()
        for e in entries:
            for text in (e.question, e.answer):
                for m in _WORD_RE.finditer(text):
                    word = m.group().replace("’", "'")
                    words.append(word.replace("-", "").replace("'", ""))
                    words.extend(p for p in re.split(r"['-]", word) if p)
                found = tokenize(text)
                terms.update(found)
                pairs.update(f"{a} {b}" for a, b in itertools.pairwise(found))
        return cls(words, terms, min_score, pairs)

    def __len__(self) -> int:
        return len(self._keys)

    def join_compounds(self, text: str) -> str:
        """Two heard words the FAQ writes as one, joined: "guide books" -> "guidebooks" where
        the FAQ says "guidebook" and never "guide book" (held-out 28: the shop's guidebook
        was missed). Either way of writing a compound is said the same, and ASR picks one."""
        words = list(_PLAIN_WORD_RE.finditer(text))
        out: list[str] = []
        last = 0
        i = 0
        while i < len(words) - 1:
            a, b = words[i], words[i + 1]
            whole = tokenize(a.group() + b.group())
            if (
                text[a.end() : b.start()] == " "
                and len(whole) == 1
                and whole[0] in self.terms
                and " ".join(tokenize(f"{a.group()} {b.group()}")) not in self.pairs
            ):
                out.append(text[last : a.start()] + a.group() + b.group())
                last = b.end()
                i += 2
            else:
                i += 1
        return "".join(out) + text[last:]

    def known(self, word: str) -> bool:
        """True when the FAQ has the word's term or a related word of it."""
        terms = tokenize(word)
        return all(t in self.terms or related(t) & self.terms for t in terms)

    def match(self, heard: str) -> tuple[str, float] | None:
        """The FAQ word that sounds most like `heard` (letters only; words may be run
        together) with its score, or None below `min_score` or on a tie between two words."""
        h = _letters(heard)
        if len(h) < MIN_WORD - 1:
            return None
        key = sound_key(h)
        if len(key) < 2:
            return None
        probes = _deletes(key) if len(key) >= MIN_KEY_FOR_EDIT else {key}
        candidates = {w for d in probes for w in self._by_delete.get(d, ())}
        scored = sorted(
            ((_similarity(h, w, key, self._keys[w]), w) for w in candidates),
            reverse=True,
        )
        scored = [(s, w) for s, w in scored if s >= self.min_score and _near(key, self._keys[w])]
        if not scored:
            return None
        if (
            len(scored) > 1
            and scored[1][0] == scored[0][0]
            and tokenize(scored[0][1]) != tokenize(scored[1][1])
        ):
            return None  # two FAQ words as alike: no basis to pick
        return scored[0][1], scored[0][0]

    def repair(self, text: str, skip: Callable[[str], bool] = lambda _t: False) -> Repaired:
        """`text` with misheard words replaced by the FAQ words they sound like.

        A word is a candidate when it is not a stopword, the FAQ lacks its term and every
        related word of it, and `skip(term)` is false (the policy passes its generic words:
        "long", "wonder"). Runs of 2-3 adjacent words, one a candidate, are also tried run
        together ("clock room" -> "cloakroom"), and the best-scoring repairs that do not overlap
        win."""
        spans = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(text)]
        unknown = [self._candidate(w, skip) for _, _, w in spans]
        found: list[tuple[float, int, int, str]] = []  # score, first, last (exclusive), word
        for i in range(len(spans)):
            for n in range(1, MAX_JOIN + 1):
                j = i + n
                if j > len(spans) or not any(unknown[i:j]):
                    continue
                # Run together only content words: "how late is" is no "holidays".
                if n > 1 and any(w.casefold() in STOPWORDS for _, _, w in spans[i:j]):
                    continue
                heard = "".join(_letters(w) for _, _, w in spans[i:j])
                m = self.match(heard)
                # Words run together stand for one as long: "nearest zoo" is not "nearest".
                if m is not None and (n == 1 or len(m[0]) >= len(heard) - 2):
                    found.append((m[1], i, j, m[0]))
        chosen: list[tuple[float, int, int, str]] = []
        for f in sorted(found, key=lambda f: (-f[0], f[1] - f[2])):
            if all(f[2] <= c[1] or f[1] >= c[2] for c in chosen):
                chosen.append(f)
        chosen.sort(key=lambda c: c[1])
        out: list[str] = []
        repairs: list[Repair] = []
        pos = 0
        for score, i, j, word in chosen:
            start, end = spans[i][0], spans[j - 1][1]
            out += [text[pos:start], word]
            repairs.append(Repair(text[start:end], word, round(score, 3)))
            pos = end
        out.append(text[pos:])
        return Repaired("".join(out), tuple(repairs))

    def _candidate(self, word: str, skip: Callable[[str], bool]) -> bool:
        w = word.casefold().replace("’", "'")
        if w in STOPWORDS or w in _FUNCTION_WORDS or "'" in w or len(_letters(w)) < 3:
            return False  # "we'll", "isn't": function words, repaired only run together
        terms = tokenize(w)
        return bool(terms) and not self.known(w) and not any(skip(t) for t in terms)


def _near(key: str, other: str) -> bool:
    """Keys within one edit, and a one-edit match only between keys long enough to mean it."""
    d = edit_distance(key, other)
    return d == 0 or (d == 1 and min(len(key), len(other)) >= MIN_KEY_FOR_EDIT - 1)


_INDEXES: weakref.WeakKeyDictionary[KnowledgeBase, SoundIndex] = weakref.WeakKeyDictionary()


def sound_index(kb: KnowledgeBase) -> SoundIndex:
    """The knowledge base's SoundIndex, built on first use (a replaced FAQ gets a new one)."""
    index = _INDEXES.get(kb)
    if index is None:
        index = _INDEXES[kb] = SoundIndex.build(kb.entries)
    return index
