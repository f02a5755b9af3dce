"""Where reply audio goes when it is not the box's own speaker (`audio.playback.Playback`) nor a
browser (`web.audio_sink.WsSink`): memory, for the demo's WAV file and for tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import trio

from .speech import AudioSink

__all__ = ["AudioSink", "MemorySink"]

F32 = npt.NDArray[np.float32]


class MemorySink:
    """Collects reply audio (demo -> WAV file, tests). Nothing to wait for: drain returns."""

    def __init__(self) -> None:
        self.first_sample_at: float | None = None
        self.parts: list[F32] = []
        self.rate = 0
        self.stops = 0

    async def play(self, audio: F32, rate: int) -> None:
        if self.first_sample_at is None:
            self.first_sample_at = trio.current_time()
        self.rate = rate
        self.parts.append(audio)
        await trio.lowlevel.checkpoint()

    async def drain(self) -> None:
        self.first_sample_at = None
        await trio.lowlevel.checkpoint()

    def stop(self) -> None:
        self.stops += 1
        self.first_sample_at = None

    def audio(self) -> F32:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.float32)
