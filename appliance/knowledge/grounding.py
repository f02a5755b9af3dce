"""Ground a question in the FAQ: decide whether it is confidently one of the FAQ's (then the
kiosk answers with the staff-written answer verbatim instead of trusting a 135M LLM with facts),
and build the LLM's prompt: a fixed prefix (persona, instruction, the FAQ) and the retrieved
entries.

Pure decision logic on top of `KnowledgeBase.search`, which with an embedder runs the embedding
model (a few ms): call `ground` via `trio.to_thread.run_sync` from the event loop.

`Grounding` also carries what the answer policy (`policy.decide`) weighs: the best `RANKED`
entries without a floor, the query's words with how many entries use each, each ranked entry's
words, and with `facts=True` each ranked entry's best single-sentence similarity (one more
embedding of the query per call; the answers' sentences are embedded once per knowledge base,
a few hundred ms: call `prepare(kb)` off the loop after loading it, or the first such call
pays). `direct` is decided exactly as before.

Calibration on the dev split of tests/data/faq_eval.toml. Hybrid score of the best entry:
off-topic and chit-chat at most 0.22 (greetings and fillers alone are stripped to nothing),
real paraphrases 0.27 to 0.94, most above 0.45. A direct answer needs all of:
- score >= 0.35 (a 0.13 gap above the worst dev off-topic question);
- embedding similarity >= 0.25: a match on meaning, not one shared rare word;
- a lead of >= 0.02 over the runner-up: two entries tied, like hours and holidays for "open on
  Mondays?", go to the LLM with both facts instead of one read out at random;
- the best entry at least as close in meaning as the nearest small-talk example
  (`ranking.CHIT_CHAT`): "what time is it right now" scores 0.39 on the opening hours, but
  0.8+ on "What time is it?". Added after the first holdout split showed that leak.
Off-topic questions answered directly when each split was first scored (each written before
that): dev 0/15; holdout 1/16 ("what time is it right now", which led to the small-talk check);
holdout2 1/14 ("how do i get to the airport"); holdout3 1/12 ("how do you spell museum"). The
last two were then covered by small-talk examples, so the suite has none now, but expect about
one leak per 10-15 unseen off-topic questions. With the final settings: direct recall 86/83/81/
78% per split, and 6 of 116 FAQ questions (5%) answered directly with the wrong entry.
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from .faq import FaqEntry
from .ranking import DEFAULT_MIN_HYBRID_SCORE, Hit, KnowledgeBase
from .soundalike import sound_index
from .text import tokenize

__all__ = [
    "DEFAULT_FACTS_HEADER",
    "DIRECT_MIN_CHAT_LEAD",
    "DIRECT_MIN_MARGIN",
    "DIRECT_MIN_SEMANTIC",
    "DIRECT_THRESHOLD",
    "KNOWLEDGE_HEADER",
    "RANKED",
    "Grounding",
    "build_facts_prompt",
    "build_system_prompt",
    "ground",
    "prepare",
    "split_sentences",
    "strip_fillers",
]

DIRECT_THRESHOLD = 0.35
DIRECT_MIN_SEMANTIC = 0.25
DIRECT_MIN_MARGIN = 0.02
DIRECT_MIN_CHAT_LEAD = 0.0
# How many entries `Grounding.ranked` holds at least (the answer policy weighs runner-ups).
RANKED = 5

# Hesitations carry nothing anywhere in a sentence ("um", "uhh", "erm", "hmm", "mm").
_HESITATION_RE = re.compile(
    r"(?<![\w'’-])(?:u+h+m*|u+m+|e+r+m*|h+m+|m+h*m+|a+h+)(?![\w'’-])[,.…]*", re.IGNORECASE
)
# Discourse openers that a transcript often starts with ("so um like is there ..."). Removed
# only at the start: "so", "like" and "well" are ordinary words further in.
_OPENER_RE = re.compile(
    r"^(?:\s*(?:so|well|okay|ok|right|yeah|oh|like|and|(?:hi|hello|hey|hiya)(?:\s+there)?|"
    r"excuse me|sorry|good (?:morning|afternoon|evening)|you know|i mean|actually|basically)"
    r"\b[\s,.!?]*)+",
    re.IGNORECASE,
)


def strip_fillers(text: str) -> str:
    """Drop hesitations ("um", "uh", "er") anywhere and openers ("so", "well", "hi there",
    "okay") at the start: noise for BM25 and the embedding alike. A greeting or filler alone
    ("hello", "um so yeah") becomes "" (nothing to look up)."""
    text = _HESITATION_RE.sub(" ", text)
    # "um... so... yeah": what is left of the hesitations' trailing dots opens nothing.
    text = _OPENER_RE.sub("", text.lstrip(" ,.…"))
    return " ".join(text.split())


@dataclass(frozen=True)
class Grounding:
    hits: list[Hit]  # best first, above the relevance floor: facts for the LLM prompt
    direct: Hit | None  # a confident match: answer with its text verbatim
    confidence: float  # the best entry's hybrid score clipped to 0..1 (0 without embeddings)
    # What the answer policy (`policy.decide`) weighs besides `direct`; defaults when nothing
    # was looked up (empty question, k=0), so the three-field form above still compares equal.
    ranked: tuple[Hit, ...] = ()  # the best max(k, RANKED) entries, no relevance floor
    # Per `ranked` entry (with `facts=True` and an embedder; else empty): the highest cosine
    # between the query and one sentence of its answer. A question about one fact of a long
    # answer ("do students pay less?") matches that sentence better than the whole entry.
    facts: tuple[float, ...] = ()
    chit_chat: float = 0.0  # the query's highest cosine to a small-talk example (knowledge.py)
    query: str = ""  # the text looked up: the question with fillers stripped
    # Each distinct query term (`tokenize`) with the number of entries that contain it (0: a
    # word this FAQ never uses), and the number of entries: how specific each word is.
    term_df: tuple[tuple[str, int], ...] = ()
    entries: int = 0
    # Per `ranked` entry: its terms (`tokenize` of question and answer), for word coverage.
    entry_terms: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class _TermIndex:
    entry_terms: dict[FaqEntry, frozenset[str]]  # `tokenize` of question and answer
    df: dict[str, int]  # term -> number of entries that contain it


# Per knowledge base, built on first use (tokenizing a small FAQ takes a few milliseconds); a
# replaced knowledge base is dropped with it.
_TERMS: weakref.WeakKeyDictionary[KnowledgeBase, _TermIndex] = weakref.WeakKeyDictionary()


def _term_index(kb: KnowledgeBase) -> _TermIndex:
    index = _TERMS.get(kb)
    if index is None:
        entry_terms = {
            e: frozenset(tokenize(e.question)) | frozenset(tokenize(e.answer)) for e in kb.entries
        }
        counts: Counter[str] = Counter()
        for terms in entry_terms.values():
            counts.update(terms)
        index = _TermIndex(entry_terms, dict(counts))
        _TERMS[kb] = index
    return index


def _terms(
    kb: KnowledgeBase, query: str, ranked: list[Hit]
) -> tuple[tuple[tuple[str, int], ...], tuple[frozenset[str], ...]]:
    """(each distinct query term with its document frequency, each ranked entry's terms)."""
    index = _term_index(kb)
    term_df = tuple((t, index.df.get(t, 0)) for t in dict.fromkeys(tokenize(query)))
    return term_df, tuple(index.entry_terms.get(h.entry, frozenset()) for h in ranked)


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9€$£\"'(])")


def split_sentences(text: str) -> list[str]:
    """An answer's sentences (a new one starts after . ! ? ; and a space before a capital, a
    digit, a currency sign or a quote), as the ranking embeds them. Pure."""
    return _SENTENCE_END.split(text)


# Per knowledge base: entry -> unit vectors of its answer's sentences. Embedded on first use
# (about 50 short sentences for a 25-entry FAQ: a few hundred ms once, on the worker thread).
_SENTENCES: weakref.WeakKeyDictionary[KnowledgeBase, dict[FaqEntry, npt.NDArray[np.float32]]] = (
    weakref.WeakKeyDictionary()
)


def _sentence_vectors(kb: KnowledgeBase) -> dict[FaqEntry, npt.NDArray[np.float32]]:
    index = _SENTENCES.get(kb)
    if index is None:
        assert kb.embedder is not None
        pieces = [(e, s) for e in kb.entries for s in split_sentences(e.answer) if s.strip()]
        vecs = np.asarray(kb.embedder.embed([s for _, s in pieces], keep=True), dtype=np.float32)
        index = {}
        for e in kb.entries:
            rows = [i for i, (owner, _) in enumerate(pieces) if owner is e]
            index[e] = vecs[rows]
        _SENTENCES[kb] = index
    return index


def prepare(kb: KnowledgeBase) -> None:
    """Build what `ground` and `lookups` cache per knowledge base (word index, sound-alike
    index; with an embedder, the answer sentences' embeddings) now rather than on the first
    question. Blocking: run it off the event loop, right after loading or replacing the
    knowledge base."""
    _term_index(kb)
    sound_index(kb)
    if kb.embedder is not None and kb.entries:
        _sentence_vectors(kb)


def _fact_scores(kb: KnowledgeBase, query: str, hits: list[Hit]) -> tuple[float, ...]:
    if kb.embedder is None or not hits:
        return ()
    index = _sentence_vectors(kb)
    vec = np.asarray(kb.embedder.embed([query]), dtype=np.float32)[0]
    out: list[float] = []
    for h in hits:
        vecs = index.get(h.entry)
        out.append(float((vecs @ vec).max()) if vecs is not None and len(vecs) else 0.0)
    return tuple(out)


def ground(
    kb: KnowledgeBase,
    question: str,
    *,
    k: int = 3,
    direct_threshold: float = DIRECT_THRESHOLD,
    min_semantic: float = DIRECT_MIN_SEMANTIC,
    min_margin: float = DIRECT_MIN_MARGIN,
    min_chat_lead: float = DIRECT_MIN_CHAT_LEAD,
    facts: bool = False,
) -> Grounding:
    """Rank the FAQ for `question` (fillers stripped) and decide on a direct answer.

    Lexical-only (no embedder) `direct` is always None: a BM25 score tells which entry shares
    the rarest words, not whether it answers the question, and is not comparable across
    questions. `facts`: also score each ranked entry's answer sentence by sentence (what the
    answer policy is calibrated with). Blocking with an embedder (see module docstring).
    """
    cleaned = strip_fillers(question)
    if not cleaned or k <= 0:
        return Grounding(hits=[], direct=None, confidence=0.0)
    if not kb.hybrid:
        ranked_lexical = kb.search(cleaned, k=max(k, RANKED))
        term_df, entry_terms = _terms(kb, cleaned, ranked_lexical)
        return Grounding(
            hits=ranked_lexical[:k],
            direct=None,
            confidence=0.0,
            ranked=tuple(ranked_lexical),
            query=cleaned,
            term_df=term_df,
            entries=len(kb),
            entry_terms=entry_terms,
        )
    # Rank without a floor: the margin needs the runner-up even when it is weak.
    ranking = kb.rank(cleaned, k=max(k, RANKED), min_score=float("-inf"))
    ranked = ranking.hits
    hits = [h for h in ranked[:k] if h.score >= DEFAULT_MIN_HYBRID_SCORE]
    term_df, entry_terms = _terms(kb, cleaned, ranked)
    base = Grounding(
        hits=hits,
        direct=None,
        confidence=0.0,
        ranked=tuple(ranked),
        facts=_fact_scores(kb, cleaned, ranked) if facts else (),
        chit_chat=ranking.chit_chat,
        query=cleaned,
        term_df=term_df,
        entries=len(kb),
        entry_terms=entry_terms,
    )
    if not ranked:
        return base
    best = ranked[0]
    semantic = best.semantic or 0.0
    margin = best.score - (ranked[1].score if len(ranked) > 1 else 0.0)
    confident = (
        best.score >= direct_threshold
        and semantic >= min_semantic
        and margin >= min_margin
        and semantic - ranking.chit_chat >= min_chat_lead
    )
    return replace(
        base, direct=best if confident else None, confidence=max(0.0, min(1.0, best.score))
    )


DEFAULT_FACTS_HEADER = "Facts:"
KNOWLEDGE_HEADER = "The venue's FAQ:"

_INSTRUCTION = (
    "Answer only from the venue's facts, in one to three short, plain sentences that can be "
    "spoken aloud. If the facts do not answer the question, say that you do not know and "
    "suggest asking a member of staff."
)


def _pair(entry: FaqEntry) -> str:
    return f"Q: {entry.question}\nA: {entry.answer}"


def build_system_prompt(persona: str, entries: Sequence[FaqEntry], *, budget_chars: int) -> str:
    """The prompt prefix every LLM turn starts with: persona, the grounding instruction, then the
    FAQ's entries as "Q: ... A: ..." in file order while they fit in `budget_chars` (whole
    entries; 0 = none). Depends on nothing turn-specific, so it is byte-identical across turns
    and conversations: llama.cpp keeps its KV cache for the longest common prefix with the last
    prompt, so this part is evaluated once (warmed at start-up) and only the turn's own part is
    new. Pure."""
    persona = " ".join(persona.split())
    lines = [persona] if persona else []
    lines.append(_INSTRUCTION)
    chosen: list[str] = []
    left = budget_chars - len(KNOWLEDGE_HEADER) - 2
    for entry in entries:
        pair = _pair(entry)
        if len(pair) + 1 > left:
            break  # a fixed subset: the first entries in FAQ order
        chosen.append(pair)
        left -= len(pair) + 1
    if chosen:
        lines += ["", KNOWLEDGE_HEADER, *chosen]
    return "\n".join(lines)


def build_facts_prompt(hits: Sequence[Hit], *, header: str = DEFAULT_FACTS_HEADER) -> str:
    """The turn's retrieved entries, sent after the prefix and right before the question.

    `hits` come best first (as `search` returns them); they are written in reverse so the most
    relevant fact is last, right before the visitor's question: a 135M model leans heavily on
    the nearest tokens, and an earlier, weaker fact then matters less when it answers. Pure.
    """
    lines = [header]
    if not hits:
        lines.append("(none)")
    lines += [_pair(hit.entry) for hit in reversed(hits)]
    return "\n".join(lines)
