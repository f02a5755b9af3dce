"""The ASR interface the voice pipeline uses; engines (Moonshine, later Whisper) implement it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

StopFlag = Callable[[], bool]


@dataclass(frozen=True)
class Transcript:
    text: str
    tokens: int  # tokens generated (excluding start/end)
    audio_s: float
    compute_s: float
    # The other hypotheses of a beam search, best first, without `text` and without repeats
    # that differ only in case or punctuation; () from a greedy search.
    alternatives: tuple[str, ...] = ()
    # The best hypothesis as the engine's token ids, for a later pass over the same utterance
    # with more audio to start from (`prefix`); () when the engine has none to give.
    token_ids: tuple[int, ...] = ()


class TranscriptionAborted(Exception):
    """`should_stop` returned True: the caller abandoned this pass (e.g. speech resumed)."""


class AsrEngine(Protocol):
    sample_rate: int

    def transcribe(
        self, audio: npt.NDArray[np.float32], should_stop: StopFlag | None = None
    ) -> Transcript:
        """Blocking. `audio`: float32 mono at `sample_rate`, in [-1, 1]; feed a tight VAD
        segment, not a buffer with long silent margins. `should_stop` is polled between
        decoder steps; when it returns True, TranscriptionAborted is raised."""
        ...


def check_audio(audio: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Validate and normalise ASR input: 1-D finite float32."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"ASR audio must be 1-D mono, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"ASR audio must be float in [-1, 1], got {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError("ASR audio contains NaN or infinity")
    return a
