"""Reply audio to a /ws client (the kiosk page plays it): the voice pipeline's sink for a
browser conversation. Speaks the /ws protocol, so it lives with the transport."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import trio

from ..events import AudioEnd, AudioStart, ServerEvent

__all__ = ["WsSink"]

F32 = npt.NDArray[np.float32]


class WsSink:
    """Reply audio to a /ws client: `audio.start {turn, rate}`, binary PCM16 frames,
    `audio.end {turn}` (with `interrupted: true` on barge-in). The browser plays as it
    receives, so `drain` waits for the estimated end of playback."""

    FRAME_S = 0.25  # per binary frame: small enough to start playing at once

    def __init__(
        self,
        send_event: Callable[[ServerEvent], None],
        send_bytes: Callable[[bytes], None],
        turn: Callable[[], int],
    ) -> None:
        self._send_event = send_event
        self._send_bytes = send_bytes
        self._turn = turn
        self._open: int | None = None  # the turn whose audio is streaming
        self._ends_at = 0.0
        self.first_sample_at: float | None = None

    async def play(self, audio: F32, rate: int) -> None:
        now = trio.current_time()
        if self._open is None:
            self._open = self._turn()
            self._send_event(AudioStart(self._open, rate))
            self.first_sample_at = now
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        step = 2 * int(rate * self.FRAME_S)
        for i in range(0, len(pcm), step):
            self._send_bytes(pcm[i : i + step])
        self._ends_at = max(self._ends_at, now) + len(audio) / rate
        await trio.lowlevel.checkpoint()

    def _end(self, interrupted: bool) -> None:
        if self._open is not None:
            self._send_event(AudioEnd(self._open, interrupted=interrupted))
        self._open = None
        self.first_sample_at = None

    async def drain(self) -> None:
        self._end(False)
        await trio.sleep_until(self._ends_at)

    def stop(self) -> None:
        self._end(True)
        self._ends_at = 0.0
