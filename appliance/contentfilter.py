"""Blocked-term filter for visitor input and (streamed) replies.

Matching is case-insensitive and whole-word, on text normalised with NFKC + casefold, so
"ＢＡＤ" or "Bad" match a blocked "bad" while "badge" does not. Multi-word terms match across
any run of whitespace. Obfuscations ("b a d", "b@d") are out of scope.

Invisible characters do not hide a term: format characters (Unicode category Cf: zero-width
space and joiners, word joiner, BOM, soft hyphen, bidi controls, tags) and non-spacing and
enclosing marks (Mn, Me: combining accents, variation selectors, the grapheme joiner) are
dropped before matching, so "kill" with a zero-width space (U+200B) or a combining acute
(U+0301) inside, or "kíll", all match a blocked "kill". Accents are therefore ignored on
both sides: a blocked "año" also matches "ano", and the reverse. Only matching sees the folded
text; the text shown keeps every character.

Masking keeps the text's length: every character of a matched span becomes "*". Same-length
masks keep the two masking paths (whole text and streamed deltas) trivially aligned, keep screen
layout stable, and the TTS side can drop runs of "*" before speaking.

Normalisation runs per character cluster (a character plus its combining marks) and a match is
masked over whole original clusters, so offsets always map back to the original text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MASK_CHAR", "ContentFilter", "StreamMasker"]

MASK_CHAR = "*"

_WORD_CHAR = re.compile(r"\w")


def _is_word(ch: str) -> bool:
    return _WORD_CHAR.match(ch) is not None


def _clusters(text: str) -> list[tuple[int, int]]:
    """(start, end) of each cluster: a non-combining character and the marks after it."""
    spans: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(text)):
        if not unicodedata.combining(text[i]):
            spans.append((start, i))
            start = i
    if text:
        spans.append((start, len(text)))
    return spans


# Dropped before matching: invisible format characters and marks that draw on another
# character. Spacing marks (Mc) stay: in Indic scripts they are visible vowels.
_IGNORED = frozenset({"Cf", "Mn", "Me"})


@functools.lru_cache(maxsize=4096)  # called per cluster, mostly one character: a small set
def _fold(text: str) -> str:
    """Compatibility-decompose, casefold, drop _IGNORED characters, recompose."""
    if text.isascii():
        return text.lower()  # the same result, without three normalisation passes
    # Casefolding can produce new marks ("ǰ" -> "j" + caron): decompose again after it.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) not in _IGNORED)
    return unicodedata.normalize("NFKC", kept)


@dataclass
class _Normalised:
    text: str
    # For each character of `text`: the original cluster it came from.
    origin: list[tuple[int, int]]
    # Index in `text` where the last original cluster begins (len(text) if there is none).
    last_cluster_at: int


def _normalise(text: str) -> _Normalised:
    parts: list[str] = []
    origin: list[tuple[int, int]] = []
    last_at = 0
    for start, end in _clusters(text):
        last_at = len(origin)
        norm = _fold(text[start:end])
        parts.append(norm)
        origin.extend([(start, end)] * len(norm))
    joined = "".join(parts)
    return _Normalised(joined, origin, last_at if text else 0)


def _normalise_term(term: str) -> tuple[str, ...]:
    return tuple(_normalise(term).text.split())


class ContentFilter:
    """Whole-word, case- and width-insensitive matching of a list of blocked terms."""

    def __init__(self, blocked_terms: Sequence[str]) -> None:
        terms = {t for t in (_normalise_term(raw) for raw in blocked_terms) if t}
        # Longest first so that "bad word" wins over "bad" at the same position.
        self._terms: tuple[tuple[str, ...], ...] = tuple(
            sorted(terms, key=lambda words: (-sum(map(len, words)) - len(words), words))
        )
        self._first_chars = frozenset(words[0][0] for words in self._terms)
        self._pattern: re.Pattern[str] | None = None
        if self._terms:
            alternatives = "|".join(r"\s+".join(map(re.escape, w)) for w in self._terms)
            self._pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")

    def __bool__(self) -> bool:
        return bool(self._terms)

    def is_blocked(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(_normalise(text).text) is not None

    def mask(self, text: str) -> str:
        """`text` with each blocked term replaced by as many "*" as it has characters."""
        return self._mask_from(text, "")

    def stream_masker(self) -> StreamMasker:
        return StreamMasker(self)

    # -- shared by mask() and StreamMasker

    def _matches(self, norm: _Normalised, pos: int) -> list[tuple[int, int]]:
        if self._pattern is None:
            return []
        return [m.span() for m in self._pattern.finditer(norm.text, pos)]

    def _mask_from(self, text: str, context: str) -> str:
        """Mask `text`, with `context` (already emitted text) visible to the word boundary."""
        norm = _normalise(context + text)
        pos = len(_normalise(context).text)
        return _apply(context + text, norm, self._matches(norm, pos))[len(context) :]

    def _could_start(self, tail: str) -> bool:
        """Whether some term could match a text beginning with `tail` (and ending after it)."""
        return (
            bool(tail)
            and tail[0] in self._first_chars
            and any(_prefix_of(tail, words) for words in self._terms)
        )


def _prefix_of(tail: str, words: tuple[str, ...]) -> bool:
    """Whether `tail` is a prefix of some text that `words` (joined by whitespace runs) match.

    A complete match counts too: more text could still turn it into a non-match ("bad" ->
    "badge") or a longer term.
    """
    i = 0
    for n, word in enumerate(words):
        if n:
            if i == len(tail):
                return True
            if not tail[i].isspace():
                return False
            while i < len(tail) and tail[i].isspace():
                i += 1
        for ch in word:
            if i == len(tail):
                return True
            if tail[i] != ch:
                return False
            i += 1
    return i == len(tail)


def _apply(text: str, norm: _Normalised, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(norm.origin[start][0], norm.origin[end - 1][1]):
            chars[i] = MASK_CHAR
    return "".join(chars)


def _last_visible(text: str) -> str:
    """The last cluster of `text` whose fold is not empty ("" if there is none)."""
    for start, end in reversed(_clusters(text)):
        if _fold(text[start:end]):
            return text[start:end]
    return ""


class StreamMasker:
    """Masks a reply arriving as deltas, where a blocked term may be split across deltas.

    `feed` returns the text that is final now and holds back the rest: any tail that could
    still begin a blocked term, and the last character (a combining mark may follow it). The
    concatenation of everything returned, `flush` included, equals `ContentFilter.mask` of the
    whole reply.
    """

    def __init__(self, content_filter: ContentFilter) -> None:
        self._filter = content_filter
        self._pending = ""
        # The last emitted cluster that matching sees: the word boundary for what follows
        # (invisible clusters after it fold to nothing, so the boundary looks through them).
        self._context = ""

    def feed(self, delta: str) -> str:
        self._pending += delta
        if not self._filter:
            out, self._pending = self._pending, ""
            return out
        ctx_norm_len = len(_normalise(self._context).text)
        full = self._context + self._pending
        norm = _normalise(full)
        limit = norm.last_cluster_at
        text = norm.text
        # Earliest position from which a blocked term might still match with more text.
        cut = limit
        for s in range(ctx_norm_len, limit):
            if (s == 0 or not _is_word(text[s - 1])) and self._filter._could_start(text[s:limit]):
                cut = s
                break
        matches = self._filter._matches(norm, ctx_norm_len)
        # Never cut inside a cluster or inside a match: move the cut back until it is clean.
        while True:
            moved = cut
            if cut < len(text) and cut > ctx_norm_len:
                cluster_start = norm.origin[cut][0]
                if norm.origin[cut - 1][1] > cluster_start:  # cut splits a cluster
                    while moved > ctx_norm_len and norm.origin[moved - 1][1] > cluster_start:
                        moved -= 1
            for start, end in matches:
                if start < moved < end:
                    moved = start
            if moved == cut:
                break
            cut = moved
        orig_cut = norm.origin[cut][0] if cut < len(text) else len(full)
        if orig_cut <= len(self._context):
            return ""
        done = [(s, e) for s, e in matches if e <= cut]
        masked = _apply(full, norm, done)[len(self._context) : orig_cut]
        emitted = full[len(self._context) : orig_cut]
        self._pending = full[orig_cut:]
        self._context = _last_visible(self._context + emitted)
        return masked

    def flush(self) -> str:
        """The rest of the reply, masked; the masker is then ready for a new reply."""
        out = self._filter._mask_from(self._pending, self._context)
        self._pending = ""
        self._context = ""
        return out
