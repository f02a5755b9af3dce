"""Contextual biasing of the ASR decoder toward the site's own words (pure; no model, no I/O).

The FAQ names things a visitor will say and a general-purpose recogniser has rarely heard
("Wilgenhof", "Lantern Café", "galleries" said quickly enough to become "calories"). Shallow
fusion with a prefix trie: every decoder step, a hypothesis whose last tokens spell the start
of a lexicon word gets a bonus for the tokens that continue it.

Two layers:

* `BiasLexicon`: the terms (words and multi-word names) with a weight each, taken from the FAQ
  Markdown (`from_faq_text`) or given (`from_phrases`). Text only, so the service can build it
  without knowing the ASR model.
* `BiasTrie`: the lexicon tokenised with the ASR tokenizer (its surface forms: a name as
  written, a common word in lower case, capitalised and inflected; each also without accents),
  token-id sequences in a prefix trie, each token on a path worth `weight * term weight` (half
  that for a word that is a single token, i.e. one the recogniser knows well). A hypothesis
  carries one trie node (an int) as its state; `row` scores every next token at once.

The usual fix for shallow fusion: a bonus is only kept for a *completed* term followed by a
word boundary (a token starting a new word, punctuation, or the end). A partial match that is
abandoned ("▁gall" then "op") gives its bonus back in the step that abandons it, so biasing
can pull a near-miss onto a site word but cannot make half a word cheap, and text without
lexicon words ends with the same score it would have had without biasing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from appliance.knowledge.faq import FaqEntry, parse_faq
from appliance.knowledge.text import STOPWORDS

__all__ = [
    "PROPER_WEIGHT",
    "ROOT",
    "SINGLE_TOKEN_SCALE",
    "WORD_WEIGHT",
    "BiasLexicon",
    "BiasTrie",
    "PieceTokenizer",
    "boundary_mask",
    "inflections",
    "surface_forms",
]

END_TOKEN = 2  # </s>: a word boundary like any other
ROOT = 0

# Common words that carry no site knowledge beyond knowledge.text.STOPWORDS (which keeps words
# like "open" and "free" for retrieval; those stay in the lexicon too).
_COMMON = frozenset(
    """
    after again already around away back before both come each else even ever every few first
    give go going good great here however ill im know last less like little long look lot made
    make many may maybe more most much must need never new next no not now off often ok okay
    once one only other others out over own per rather really right same say see should since
    still such sure take tell than thanks thank that'll their then there'd these thing things
    think through till under until up upon use used very via want way well went while whole yes
    yet zero two three four five six seven eight nine ten eleven twelve twenty thirty forty
    fifty sixty hundred thousand non self dont cant wont youre we're you're it's that's isn't aren't
    """.split()
)
PROPER_WEIGHT = 1.5  # names and words capitalised mid-sentence: the ones ASR gets wrong
WORD_WEIGHT = 1.0
SINGLE_TOKEN_SCALE = 0.5  # see BiasTrie.build

_EMAIL_URL = re.compile(r"\S+@\S+|\b[\w-]+(?:\.[\w-]+)+(?:/\S*)?")
_SENTENCE_END = re.compile(r"[.!?:;\"“”()\u2014]+(?:\s|$)|\s[-\u2013\u2014]\s")
_WORD_OR_COMMA = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|,")


def _common(word: str) -> bool:
    w = word.casefold()
    return w in _COMMON or w in STOPWORDS or w in {"hey", "hi", "hello"}


class PieceTokenizer(Protocol):
    """What the trie needs of the ASR tokenizer (MoonshineTokenizer has it)."""

    pieces: list[bytes]

    def encode(self, text: str) -> list[int]: ...


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def _is_skipped(word: str) -> bool:
    low = word.casefold().replace("’", "'")
    if low in STOPWORDS or low in _COMMON or "'" in low:
        return True
    return len(word) < 3 and not (len(word) >= 2 and word.isupper())


@dataclass(frozen=True)
class BiasLexicon:
    """Terms to favour, each with a weight (1.0 a content word, 1.5 a name)."""

    terms: tuple[tuple[str, float], ...]

    def __len__(self) -> int:
        return len(self.terms)

    def weight(self, term: str) -> float | None:
        return dict(self.terms).get(term)

    @classmethod
    def from_phrases(cls, phrases: Iterable[str], weight: float = WORD_WEIGHT) -> BiasLexicon:
        """Words or names given as they are written ("Lantern Café", "tugboat")."""
        out: dict[str, float] = {}
        for p in phrases:
            term = " ".join(p.split())
            if term:
                out[term] = max(out.get(term, 0.0), weight)
        return cls(tuple(sorted(out.items())))

    @classmethod
    def for_site(cls, entries: Sequence[FaqEntry], wake_phrase: str = "") -> BiasLexicon | None:
        """What the box's ASR favours: the FAQ's words and names, and the wake phrase as a name
        (ASR spells a made-up name many ways, "Famicraft", "Hey Mikra", and the pipeline checks
        that an utterance the wake word let in carries it). None when there is nothing."""
        terms = dict(cls.from_entries(entries).terms) if entries else {}
        phrase = " ".join(wake_phrase.split())
        if phrase:
            # the whole phrase and its name ("Hey Mycroft", "Mycroft"); a common word alone
            # ("Hey", "Okay") would pull ordinary speech
            names = [w for w in phrase.split() if len(w) >= 3 and not _common(w)]
            for t in dict.fromkeys([phrase, *names]):
                terms[t] = max(terms.get(t, 0.0), PROPER_WEIGHT)
        return cls(tuple(sorted(terms.items()))) if terms else None

    @classmethod
    def from_faq_text(cls, markdown: str) -> BiasLexicon:
        """The content words and names of an FAQ: its `# ` title, questions and answers.

        Dropped: stopwords and other common words, numbers, e-mail addresses and URLs, words
        under 3 letters (acronyms such as "QR" stay). A word capitalised mid-sentence is a name
        (weight 1.5), and so is a run of such words ("Cape Meridian", "De Koperen Pan"), which
        is kept whole as well as word by word.
        """
        entries, _ = parse_faq(markdown)
        titles = [line[2:] for line in markdown.splitlines() if line.startswith("# ")]
        return cls.from_entries(entries, titles)

    @classmethod
    def from_entries(cls, entries: Iterable[FaqEntry], titles: Iterable[str] = ()) -> BiasLexicon:
        """`from_faq_text` for an FAQ already parsed (a KnowledgeBase's `entries`); `titles`:
        the `# ` lines, which name the venue, if the caller still has them."""
        texts = list(titles)
        for e in entries:
            texts += [e.question, e.answer]
        sentences: list[list[str]] = []  # words, "," for a comma (it ends a name)
        for text in texts:
            for sentence in _SENTENCE_END.split(_EMAIL_URL.sub(" . ", text)):
                words = _WORD_OR_COMMA.findall(sentence)
                if any(w != "," for w in words):
                    sentences.append(words)
        # Words capitalised somewhere other than at the start of a sentence are names.
        proper = {w for s in sentences for w in s[1:] if w[0].isupper()}
        proper |= {p for w in proper for p in w.split("-") if p[:1].isupper()}  # "Wilgenhof-Guest"
        terms: dict[str, float] = {}

        def add(term: str, weight: float) -> None:
            keep_case = term in proper or " " in term or any(c.isupper() for c in term[1:])
            key = term if keep_case else term.casefold()
            terms[key] = max(terms.get(key, 0.0), weight)

        for words in sentences:
            run: list[str] = []
            for w in [*words, ","]:
                if w in proper:
                    run.append(w)
                    continue
                while run and run[0].casefold() in STOPWORDS:
                    run.pop(0)  # "The Lantern Café"
                if len(run) >= 2:
                    add(" ".join(run), PROPER_WEIGHT)
                    for part in run:
                        if not _is_skipped(part):
                            add(part, WORD_WEIGHT)
                elif run and not _is_skipped(run[0]):
                    add(run[0], PROPER_WEIGHT)
                run = []
            for w in words:
                if w == "," or w in proper or _is_skipped(w):
                    continue
                add(w, WORD_WEIGHT)
            for w in words:
                if "-" in w and not _is_skipped(w):
                    for part in w.split("-"):
                        if not _is_skipped(part):
                            add(part, PROPER_WEIGHT if part in proper else WORD_WEIGHT)
        return cls(tuple(sorted(terms.items())))


def inflections(word: str) -> set[str]:
    """`word` with its plural or singular, and the stems of -ed/-ing forms ("closed" ->
    "close"): a visitor asks about the "gallery" where the FAQ says "galleries". Crude on
    purpose; a non-word among them costs nothing, the recogniser will not write it."""
    out = {word}
    if len(word) < 4 or not word.isalpha():
        return out
    if word.endswith("ies"):
        out.add(word[:-3] + "y")
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        out.add(word[:-1])
    elif word.endswith("y") and word[-2] not in "aeiou":
        out.add(word[:-1] + "ies")
    elif word.endswith(("s", "x", "ch", "sh")):
        out.add(word + "es")
    else:
        out.add(word + "s")
    if word.endswith("ed") and len(word) > 4:
        out |= {word[:-1], word[:-2]}
    if word.endswith("ing") and len(word) > 5:
        out |= {word[:-3], word[:-3] + "e"}
    return out


def surface_forms(term: str) -> set[str]:
    """How the recogniser may write `term`: a name as written (and without accents); a common
    word in lower case and capitalised (at the start of a sentence), with its inflections. A
    name is not offered in lower case: that would only teach the decoder to drop its capital."""
    if term != term.casefold():
        forms = {term}
    else:
        words = inflections(term) if " " not in term else {term}
        forms = words | {w[:1].upper() + w[1:] for w in words}
    return forms | {_strip_accents(f) for f in forms}


def boundary_mask(pieces: Sequence[bytes], n_special: int = 3) -> npt.NDArray[np.bool_]:
    """Per token id: does it end the word before it (starts a word, is punctuation, or is </s>)?"""
    mask = np.zeros(len(pieces), dtype=np.bool_)
    for i in range(n_special, len(pieces)):
        text = pieces[i].decode("utf-8", errors="replace")
        mask[i] = bool(text) and (text[0] == "▁" or not text[0].isalnum())
    if END_TOKEN < len(mask):
        mask[END_TOKEN] = True
    return mask


class BiasTrie:
    """Token-id prefix trie of the lexicon's surface forms; scores one decoder step.

    State: a node index (ROOT = 0, no match in progress). Per node, `cum` is the bonus collected
    along its path, `keep_b` what of it is kept if the next token is a word boundary (the path
    up to the last completed term), `keep_nb` what is kept if it is not (the last completed term
    that was itself followed by a boundary on the path). Leaving a match costs `cum - keep`.
    """

    def __init__(
        self,
        sequences: Iterable[tuple[Sequence[int], float]],
        boundary: npt.NDArray[np.bool_],
    ) -> None:
        self.boundary = boundary
        self.vocab = len(boundary)
        self.children: list[dict[int, int]] = [{}]
        self.is_end: list[bool] = [False]
        edge: list[float] = [0.0]  # per node: the bonus of the token leading to it
        for ids, bonus in sequences:
            if not ids or bonus <= 0:
                continue
            node = ROOT
            for t in ids:
                child = self.children[node].get(t)
                if child is None:
                    child = len(edge)
                    self.children[node][t] = child
                    self.children.append({})
                    self.is_end.append(False)
                    edge.append(0.0)
                edge[child] = max(edge[child], bonus)  # the heaviest term on an edge wins
                node = child
            self.is_end[node] = True
        n = len(edge)
        self.cum = [0.0] * n
        self.keep_b = [0.0] * n
        self.keep_nb = [0.0] * n
        # Nodes are created parent first, so one pass in index order sees parents first.
        for parent in range(n):
            for t, child in self.children[parent].items():
                self.cum[child] = self.cum[parent] + edge[child]
                # Entering `child` with token t: the parent's completed term is kept iff t
                # is a boundary.
                inherited = self.keep_b[parent] if boundary[t] else self.keep_nb[parent]
                self.keep_nb[child] = inherited
                self.keep_b[child] = self.cum[child] if self.is_end[child] else inherited
        self._child_ids = [
            np.fromiter(c.keys(), dtype=np.int64, count=len(c)) for c in self.children
        ]
        self._child_delta = [
            np.array([self.cum[c] - self.cum[p] for c in self.children[p].values()], np.float32)
            for p in range(n)
        ]
        self._root_row = np.zeros(self.vocab, dtype=np.float32)
        self._root_row[self._child_ids[ROOT]] = self._child_delta[ROOT]

    @classmethod
    def build(
        cls,
        lexicon: BiasLexicon,
        tokenizer: PieceTokenizer,
        weight: float,
        *,
        single_token_scale: float = SINGLE_TOKEN_SCALE,
    ) -> BiasTrie:
        """Every surface form of every term, `weight * term weight` per token on its path.

        A form that is one token of the ASR vocabulary is a frequent word the recogniser
        already knows well ("ticket", "Monday"); it gets `single_token_scale` of the bonus.
        """
        seqs: list[tuple[list[int], float]] = []
        for term, w in lexicon.terms:
            for form in sorted(surface_forms(term)):
                ids = tokenizer.encode(form)
                scale = single_token_scale if len(ids) == 1 else 1.0
                seqs.append((ids, weight * w * scale))
        return cls(seqs, boundary_mask(tokenizer.pieces))

    def __len__(self) -> int:
        return len(self.cum)

    def step(self, node: int, token: int) -> tuple[int, float]:
        """(next state, bonus) for `token` after a hypothesis in state `node`."""
        child = self.children[node].get(token)
        if child is not None:
            return child, self.cum[child] - self.cum[node]
        keep = self.keep_b[node] if self.boundary[token] else self.keep_nb[node]
        give_back = keep - self.cum[node]
        restart = self.children[ROOT].get(token)
        if restart is not None:
            return restart, give_back + self.cum[restart]
        return ROOT, give_back

    def bonus(self, prefix: Sequence[int], token: int) -> float:
        """The bonus for `token` after `prefix` (the tokens since the current word began)."""
        node = ROOT
        for t in prefix:
            node, _ = self.step(node, t)
        return self.step(node, token)[1]

    def finish(self, node: int) -> float:
        """The bonus given back when a hypothesis ends (by </s>, length cap or loop cut)."""
        return self.keep_b[node] - self.cum[node]

    def row(self, node: int) -> npt.NDArray[np.float32]:
        """`step(node, t)[1]` for every token t at once (vocab-long; a fresh array)."""
        if node == ROOT:
            return self._root_row.copy()
        kb = self.keep_b[node] - self.cum[node]
        knb = self.keep_nb[node] - self.cum[node]
        if kb == knb:
            out = np.full(self.vocab, kb, dtype=np.float32)
        else:
            out = np.where(self.boundary, np.float32(kb), np.float32(knb)).astype(np.float32)
        out += self._root_row
        out[self._child_ids[node]] = self._child_delta[node]
        return out
