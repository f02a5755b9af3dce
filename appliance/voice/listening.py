"""Listening's small parts: PCM decoding, the audio ring ASR cuts from, an ASR pass's state, and
the filter that keeps filler sounds from starting a turn. Pure, apart from trio.Event."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import trio

from .segmenter import segment_samples

__all__ = [
    "FRAME",
    "FRAME_S",
    "RATE",
    "AsrPass",
    "AudioRing",
    "InFlight",
    "pcm16_to_float",
    "usable_transcript",
]

F32 = npt.NDArray[np.float32]
RATE = 16000
FRAME = 512  # samples per VAD frame (32 ms)
FRAME_S = FRAME / RATE


def pcm16_to_float(data: bytes) -> F32:
    """PCM s16le mono -> float32 in [-1, 1). An odd trailing byte is dropped."""
    n = len(data) // 2
    return np.frombuffer(data[: 2 * n], dtype="<i2").astype(np.float32) / 32768.0


_WORD = re.compile(r"[A-Za-z0-9]+")
_FILLERS = frozenset("uh um hmm mm mhm ah eh oh er erm hm".split())


def usable_transcript(text: str) -> bool:
    """Worth a turn: at least one real word that is not a filler sound. Pure."""
    words = [w.lower() for w in _WORD.findall(text)]
    return any(w not in _FILLERS for w in words)


class AudioRing:
    """The last `keep_s` seconds of 16 kHz audio, addressed by audio time. Pure."""

    def __init__(self, keep_s: float) -> None:
        self._keep = int(keep_s * RATE)
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = 0  # absolute sample index of _buf[0]

    @property
    def end(self) -> int:
        return self._start + len(self._buf)

    def append(self, block: F32) -> None:
        self._buf = np.concatenate([self._buf, block])
        extra = len(self._buf) - self._keep
        if extra > 4 * FRAME:  # trim in steps, not per frame
            self._buf = self._buf[extra:]
            self._start += extra

    def slice(self, t0: float, t1: float, *, pre_roll_s: float, post_roll_s: float) -> F32:
        i0, i1 = segment_samples(
            t0,
            t1,
            sample_rate=RATE,
            pre_roll_s=pre_roll_s,
            post_roll_s=post_roll_s,
            buffer_start=self._start / RATE,
            buffer_len=len(self._buf),
        )
        return self._buf[i0:i1].copy()


@dataclass
class AsrPass:
    """One ASR pass over [start, end] of audio time; `stop` asks it to end early."""

    start: float
    end: float
    final: bool
    stop: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    text: str | None = None
    compute_s: float = 0.0
    audio_s: float = 0.0


class InFlight:
    """A count of background jobs and a wait for the moment none is running."""

    def __init__(self) -> None:
        self._n = 0
        self._none = trio.Event()
        self._none.set()

    def begin(self) -> None:
        self._n += 1
        if self._none.is_set():
            self._none = trio.Event()

    def end(self) -> None:
        self._n -= 1
        if self._n == 0:
            self._none.set()

    async def wait(self) -> None:
        while self._n:
            await self._none.wait()
