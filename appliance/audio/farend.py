"""What the speaker really plays, placed on the microphone's own timeline: the echo reference.

PortAudio stamps every output block with the time its first sample reaches the DAC and every
input block with the time its first sample left the ADC, both on one stream clock, which the
callbacks move to `time.monotonic()`. Measured on PulseAudio with a 40 ms loopback from the
speaker to the microphone: input ADC time minus output DAC time of a click was 39.4-40.8 ms,
i.e. exactly the acoustic path, while the output buffer alone is ~105 ms.

Placing the reference by these clocks matters: placed when reply audio is handed to the
playback queue, on the pipeline's processing clock, our own voice came back 0.25-0.35 s
later, the more so the busier the box (the pipeline runs behind the microphone), beyond the
echo gate's search window, and the box took its own voice for a visitor.

The same clocks time the latency figures: end of speech is the ADC time of its last voiced
sample and first reply audio the DAC time of its first audible sample (`trio_time` moves them
onto trio's clock), not when the pipeline got the frame or the callback took the sample.

`MicBlock`: captured audio with its ADC time. `FarEndTap`: playback callback -> trio, what was
played and when. `EchoReference`: the far end at 16 kHz on the microphone's sample axis.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import trio

from appliance.audio.resample import StreamResampler

__all__ = ["RATE", "EchoReference", "FarEndTap", "MicBlock", "trio_time"]

F32 = npt.NDArray[np.float32]
RATE = 16000  # the microphone side's rate (VAD, ASR, the echo gate)
# Consecutive output blocks whose stamps agree with their length within this are one stream:
# their samples are laid back to back (no jitter gaps), and the resampler keeps its history.
_CONTIGUOUS_S = 0.003


def trio_time(t_mono: float) -> float:
    """A device stamp (`time.monotonic()`) on trio's clock. Both run at CLOCK_MONOTONIC's rate
    from different origins (trio adds a random offset), so the difference now holds for any
    stamp; call it on the trio thread."""
    return t_mono + (trio.current_time() - time.monotonic())


@dataclass(frozen=True)
class MicBlock:
    """16 kHz mono samples from the microphone; `t` is when samples[0] entered it
    (`time.monotonic()`; None when the source has no clock, e.g. a file)."""

    samples: F32
    t: float | None = None


class FarEndTap:
    """Blocks the output device is about to play, with the time they reach the speaker.

    `push` runs on PortAudio's callback thread, `drain` on the trio thread (deque appends and
    pops are atomic). Bounded: with nobody draining, the oldest blocks are dropped."""

    def __init__(self, keep_blocks: int = 512) -> None:
        self._blocks: deque[tuple[float, F32, int]] = deque(maxlen=keep_blocks)

    def push(self, t_dac: float, block: F32, rate: int) -> None:
        self._blocks.append((t_dac, block, rate))

    def drain(self) -> list[tuple[float, F32, int]]:
        out = []
        while True:
            try:
                out.append(self._blocks.popleft())
            except IndexError:
                return out


class EchoReference:
    """Our own output at 16 kHz, indexed by microphone sample (samples fed to the pipeline).

    Two ways in: `sync(tap)` places device-clocked blocks exactly, given `anchor()`s from the
    microphone's clock; `add(audio, mic_now)` places audio when it is handed to a sink that has
    no clock (a browser): at the current microphone time, or right after what is queued."""

    def __init__(self, max_lag_s: float = 0.3) -> None:
        self.max_lag = int(max_lag_s * RATE)
        self._segments: deque[tuple[int, F32]] = deque()  # (start sample, audio)
        self._end = 0  # end sample of the reference timeline
        self._anchor: tuple[int, float] | None = None  # (mic sample index, monotonic time)
        self._resampler: StreamResampler | None = None
        self._next_t: float | None = None  # where the device stream's next block should start
        self._next_index: int | None = None

    # -- the microphone's clock ---------------------------------------------------------------

    def anchor(self, sample: int, t: float) -> None:
        """Microphone sample `sample` entered the microphone at monotonic time `t`."""
        self._anchor = (sample, t)

    def index_at(self, t: float) -> int | None:
        """The microphone sample index of monotonic time `t` (None before the first anchor)."""
        if self._anchor is None:
            return None
        sample, at = self._anchor
        return sample + round((t - at) * RATE)

    # -- filling ------------------------------------------------------------------------------

    def sync(self, tap: FarEndTap) -> None:
        """Take what the device has played since the last call and place it."""
        for t_dac, block, rate in tap.drain():
            self._place_device_block(t_dac, block, rate)

    def _place_device_block(self, t_dac: float, block: F32, rate: int) -> None:
        if self._anchor is None or len(block) == 0:
            return
        contiguous = (
            self._resampler is not None
            and self._resampler.src_rate == rate
            and self._next_t is not None
            and abs(t_dac - self._next_t) <= _CONTIGUOUS_S
        )
        if not contiguous:
            self._resampler = StreamResampler(rate, RATE)
            index = self.index_at(t_dac - self._resampler.delay_s)
            assert index is not None
            self._next_index = index
        assert self._resampler is not None and self._next_index is not None
        self._next_t = t_dac + len(block) / rate
        out = self._resampler.process(block)
        if len(out):
            self._put(self._next_index, out)
            self._next_index += len(out)

    def add(self, audio: F32, mic_now: int) -> None:
        """`audio` (16 kHz) starts playing now, or right after what is already queued."""
        self._put(max(self._end, mic_now), audio)

    def _put(self, start: int, audio: F32) -> None:
        self._segments.append((start, audio))
        self._end = max(self._end, start + len(audio))

    def clear(self) -> None:
        self._segments.clear()
        self._end = 0
        self._resampler = None
        self._next_t = None

    # -- reading ------------------------------------------------------------------------------

    def active(self, sample: int) -> bool:
        """Our own audio may still be reaching the microphone at this sample."""
        return bool(self._segments) and sample < self._end + self.max_lag

    def window(self, s0: int, s1: int) -> F32:
        """The reference over microphone samples [s0, s1) (zeros where we played nothing)."""
        out = np.zeros(s1 - s0, dtype=np.float32)
        for start, audio in self._segments:
            a, b = max(s0, start), min(s1, start + len(audio))
            if a < b:
                out[a - s0 : b - s0] = audio[a - start : b - start]
        # Forget references that can no longer matter.
        horizon = s0 - self.max_lag
        while self._segments and self._segments[0][0] + len(self._segments[0][1]) < horizon:
            self._segments.popleft()
        return out
