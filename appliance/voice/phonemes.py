"""Text -> IPA phonemes (Debian espeak-ng) -> Piper phoneme ids.

espeak-ng drops punctuation from its IPA output, but Piper voices were trained with the
clause punctuation in the phoneme stream (it shapes pauses and intonation), so we split the
text into sentences and clauses ourselves, phonemize each clause, and put the punctuation
back: "Hello, friend." -> "həlˈoʊ, fɹˈɛnd.".

Cost (measured on the 2-core dev box): one espeak-ng process per call, ~7 ms, whatever the
number of clauses (all clauses go in one call). A long-lived process would save ~5 ms, but
espeak-ng's line mode has no reliable end-of-reply marker (a line can yield zero, one or
several output lines), so a framing slip would desynchronise every later sentence; the
per-call process ends with EOF, which is unambiguous.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

SENTENCE_END = frozenset(".?!")
# Punctuation followed by whitespace/end (so "3.5" and "1,000" stay whole); trailing quotes
# and brackets belong to the cut. A spaced dash or an em/en dash is a comma-like pause.
_CUT = re.compile(r"([.!?…]+|[,;:]|\s[-–—]+|[–—])[\"'”’)\]]*(?=\s|$)")
_HAS_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Clause:
    text: str
    punct: str  # one of . ? ! , ; :


def _punct_of(cut: str) -> str:
    for p in "?!":
        if p in cut:
            return p
    if "." in cut or "…" in cut:
        return "."
    for p in ";:":
        if p in cut:
            return p
    return ","


def split_clauses(text: str) -> list[list[Clause]]:
    """Split text into sentences, each a list of clauses with their closing punctuation.

    Text without final punctuation ends as a statement ("."). Clauses without any word
    character (stray punctuation, emoji) are dropped. Pure.
    """
    text = " ".join(text.split())  # newlines/tabs would be line breaks for espeak-ng
    sentences: list[list[Clause]] = []
    current: list[Clause] = []
    pos = 0

    def add(chunk: str, punct: str) -> None:
        nonlocal current
        chunk = chunk.strip(" \"'“”‘’()[]")
        if _HAS_WORD.search(chunk):
            current.append(Clause(chunk, punct))
        elif current and punct in SENTENCE_END:
            current[-1] = Clause(current[-1].text, punct)  # "Really ?!" style leftovers
        if punct in SENTENCE_END and current:
            sentences.append(current)
            current = []

    for m in _CUT.finditer(text):
        add(text[pos : m.start()], _punct_of(m.group(1)))
        pos = m.end()
    add(text[pos:], ".")
    return sentences


def normalize_phonemes(ipa: str) -> str:
    """NFD, as Piper's phonemizer does: the id map holds combining marks separately."""
    return unicodedata.normalize("NFD", ipa.strip())


def join_sentence(clauses: Sequence[Clause], ipa: Sequence[str]) -> str:
    """Put the punctuation back: 'clause1, clause2.' with a space between clauses."""
    parts = [f"{normalize_phonemes(p)}{c.punct}" for c, p in zip(clauses, ipa, strict=True)]
    return " ".join(parts)


def phoneme_ids(
    phonemes: str, id_map: Mapping[str, Sequence[int]], *, unknown: list[str] | None = None
) -> list[int]:
    """Piper framing: ^ _ (phoneme _)* $. Phonemes missing from the map are skipped (and
    appended to `unknown` when given) rather than failing a whole reply."""
    pad = list(id_map["_"])
    ids = [*id_map["^"], *pad]
    for ch in phonemes:
        mapped = id_map.get(ch)
        if mapped is None:
            if unknown is not None:
                unknown.append(ch)
            continue
        ids.extend(mapped)
        ids.extend(pad)
    ids.extend(id_map["$"])
    return ids


class EspeakError(RuntimeError):
    pass


class EspeakPhonemizer:
    """IPA phonemes from the espeak-ng binary (`-q --ipa`), one process per call."""

    def __init__(self, voice: str = "en-us", *, binary: str = "espeak-ng", timeout_s: float = 10.0):
        exe = shutil.which(binary)
        if exe is None:
            raise EspeakError(f"{binary} not found on PATH (apt-get install espeak-ng)")
        self.voice = voice
        self.timeout_s = timeout_s
        self._argv = [exe, "-q", "--ipa", "-b", "1", "-v", voice]

    def _run(self, text: str) -> str:
        try:
            proc = subprocess.run(
                self._argv,
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise EspeakError(f"espeak-ng timed out after {self.timeout_s} s") from e
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise EspeakError(f"espeak-ng exited {proc.returncode}: {err}")
        return proc.stdout.decode("utf-8", "replace")

    def ipa_lines(self, lines: Sequence[str]) -> list[str]:
        """IPA for each line (no newlines inside). espeak-ng takes stdin line by line; an
        empty line after each one yields an empty output line, which frames the replies.
        espeak may split a line into several clauses: those are joined with a space."""
        if not lines:
            return []
        if any("\n" in line for line in lines):
            raise ValueError("ipa_lines: lines must not contain newlines")
        out = self._run("".join(f"{line}\n\n" for line in lines))
        parts = out.split("\n\n")
        if parts and not parts[-1].strip():
            parts.pop()
        if len(parts) != len(lines):
            # Framing did not hold (an odd clause); pay one process per line instead.
            log.debug("espeak-ng framing: %d replies for %d lines", len(parts), len(lines))
            parts = [self._run(line + "\n") for line in lines]
        return [" ".join(p.split()) for p in parts]

    def phonemize(self, text: str) -> list[str]:
        """One IPA string per sentence, clause punctuation restored. Blocking."""
        sentences = split_clauses(text)
        flat = [c.text for s in sentences for c in s]
        ipa = iter(self.ipa_lines(flat))
        return [join_sentence(s, [next(ipa) for _ in s]) for s in sentences]
