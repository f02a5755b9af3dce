"""Float32 mono audio at any rate -> the output device, through a queue the callback drains.

The trio side resamples to the device rate (one stateful resampler per utterance, so chunks
join without clicks) and appends to `_Ring`; PortAudio's callback thread pulls from it under a
lock and plays silence when it is empty. `stop()` (barge-in) empties the queue at once and
has the stream aborted and restarted (in a worker thread), which also drops what PortAudio and
the sound server hold, so the device buffer's depth does not delay a barge-in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from appliance.audio.devices import (
    AudioSettings,
    Device,
    keep_device_open,
    load_sounddevice,
    open_started,
    serve_stream,
)
from appliance.audio.farend import FarEndTap, trio_time
from appliance.audio.resample import StreamResampler

log = logging.getLogger("appliance.audio")

F32 = npt.NDArray[np.float32]

# The first sample above this (-40 dBFS) is "the reply is audible": the level under which
# voice/speech.py takes Piper's output for its near-silent run-in.
LOUD = 1e-2
THREAD_ABOVE_S = 0.1  # resample chunks longer than this in a worker thread
# How long `first_out` waits for the callback to take an utterance's first audible sample:
# a few callback periods; past it the caller carries on (the stamp then comes late or never).
FIRST_OUT_WAIT_S = 0.5

__all__ = ["Playback"]


class _Chunk:
    __slots__ = ("data", "gen", "loud", "pos")

    def __init__(self, data: F32, gen: int, loud: int) -> None:
        self.data = data
        self.pos = 0
        self.gen = gen  # utterance it belongs to
        self.loud = loud  # index of its first audible sample, -1 if none


class _Ring:
    """Queued output samples: pushed by trio, pulled by the PortAudio thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: deque[_Chunk] = deque()
        self.queued = 0

    def push(self, data: F32, gen: int) -> None:
        loud = np.flatnonzero(np.abs(data) > LOUD)
        chunk = _Chunk(data, gen, int(loud[0]) if loud.size else -1)
        with self._lock:
            self._chunks.append(chunk)
            self.queued += len(data)

    def clear(self) -> int:
        with self._lock:
            n = self.queued
            self._chunks.clear()
            self.queued = 0
            return n

    def pull(self, out: F32) -> tuple[int, tuple[int, int] | None, bool]:
        """Fill `out` (silence after the queued audio). Returns (samples filled, (utterance,
        index in `out`) of a chunk's first audible sample that just went out or None, queue
        just ran dry)."""
        filled = 0
        loud: tuple[int, int] | None = None
        with self._lock:
            had = self.queued > 0
            while filled < len(out) and self._chunks:
                c = self._chunks[0]
                take = min(len(out) - filled, len(c.data) - c.pos)
                out[filled : filled + take] = c.data[c.pos : c.pos + take]
                if loud is None and c.pos <= c.loud < c.pos + take:
                    loud = c.gen, filled + c.loud - c.pos
                c.pos += take
                filled += take
                if c.pos == len(c.data):
                    self._chunks.popleft()
            self.queued -= filled
            dry = had and self.queued == 0
        out[filled:] = 0.0
        return filled, loud, dry


class Playback:
    """Float32 mono audio at any rate -> the output device via a ring buffer fed by the callback.

    `first_sample_at`: trio time when the first audible sample of the current utterance
    reaches the speaker, its DAC time (reset by `mark_utterance()`), for voice-to-voice timing.
    It is set when the callback takes that sample from the queue, while the time it names is
    still ahead (the device's buffer, ~the output latency); `first_out()` waits for it.
    `underruns`: the queue ran dry mid-utterance (before `drained()`/`stop()`), or PortAudio
    reported an output underflow between two buffers that both carried audio (one amid the
    silence between utterances is counted apart, in `idle_underflows`). Without a device,
    `play()` discards (counted in `discarded_s`) and the kiosk carries on with text.
    """

    def __init__(
        self, settings: AudioSettings, on_state: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self._on_state = on_state
        # What the device plays and when it reaches the speaker (the echo reference).
        self.tap = FarEndTap()
        self._ring = _Ring()
        self.first_sample_at: float | None = None
        self._first = trio.Event()  # first audible sample stamped, or nothing left to wait for
        self.underruns = 0
        self.idle_underflows = 0  # late callbacks while only silence was going out (harmless)
        self.discarded_s = 0.0
        self.attempts = 0
        self.device_name: str | None = None
        self.available = False
        self.rate: int | None = None  # the device's rate while open
        self.latency_s: float | None = None
        self._gen = 0
        self._pushed = -1  # the last utterance that queued audio
        self._stops = 0
        self._resampler: StreamResampler | None = None
        self._lock = trio.Lock()  # keeps play()/drained() in call order
        self._idle = trio.Event()
        self._idle.set()
        self._closing = True  # running dry now is expected (end of utterance, stop)
        self._dirty = False  # audio went to the device since the last flush
        self._flush_wanted = trio.Event()
        self._flushed = trio.Event()  # no flush pending: new audio may go to the stream
        self._flushed.set()
        self._aborting = False

    @property
    def playing(self) -> bool:
        return self._ring.queued > 0

    def mark_utterance(self) -> None:
        """A new utterance starts: `first_sample_at` will time its first audible sample."""
        self._gen += 1
        self.first_sample_at = None
        self._first = trio.Event()

    async def first_out(self) -> None:
        """Until the current utterance's first audible sample has gone to the device (so
        `first_sample_at` holds its DAC time), its queue ran dry without one, or it was
        stopped; at most FIRST_OUT_WAIT_S. Returns at once without a device."""
        if self.available and self._pushed == self._gen:
            with trio.move_on_after(FIRST_OUT_WAIT_S):
                await self._first.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the output stream until cancelled; started() once it plays or no device found."""
        token = trio.lowlevel.current_trio_token()
        try:
            await keep_device_open(
                "output",
                self.settings.output_device,
                self.settings,
                partial(self._serve, token),
                self._state,
                task_status,
            )
        finally:
            self._gone()

    async def play(self, audio: npt.ArrayLike, rate: int) -> None:
        """Queue `audio` (mono, `rate` Hz) after what is queued; returns once queued."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        async with self._lock:
            # After a stop(), wait for the flush: it would drop the new audio too.
            await self._flushed.wait()
            dev_rate = self.rate
            if not self.available or dev_rate is None:
                self.discarded_s += len(x) / rate
                return
            stops = self._stops
            rs = self._resampler
            if rs is None or rs.src_rate != rate or rs.dst_rate != dev_rate:
                if rs is not None:
                    self._push(rs.flush())
                rs = self._resampler = StreamResampler(rate, dev_rate)
            if len(x) > rate * THREAD_ABOVE_S:
                y = await trio.to_thread.run_sync(rs.process, x)
            else:
                y = rs.process(x)
            if stops == self._stops and self.available:  # else stopped meanwhile: drop it
                self._push(y)

    def stop(self) -> float:
        """Barge-in: drop everything queued, at once. Returns the trio time of the stop."""
        self._stops += 1
        self._closing = True
        self._resampler = None
        self._ring.clear()
        self._idle.set()
        self._first.set()
        if self._dirty and self.available:
            self._dirty = False
            if self._flushed.is_set():
                self._flushed = trio.Event()
            self._flush_wanted.set()
        return trio.current_time()

    async def drained(self) -> None:
        """End of the utterance: wait until everything queued has gone to the device."""
        async with self._lock:
            if self._resampler is not None:
                self._push(self._resampler.flush())
            self._closing = True
        await self._idle.wait()

    def _push(self, y: F32) -> None:
        if len(y) == 0:
            return
        self._closing = False
        self._dirty = True
        self._pushed = self._gen
        if self._idle.is_set():
            self._idle = trio.Event()
        self._ring.push(np.clip(y, -1.0, 1.0), self._gen)

    # --- trio-thread handlers scheduled by the callback ---

    def _first_out(self, gen: int, t_dac: float) -> None:
        if gen == self._gen and self.first_sample_at is None:
            self.first_sample_at = trio_time(t_dac)
            self._first.set()

    def _ran_dry(self, starved: bool) -> None:
        if self._ring.queued == 0:
            if starved and not self._closing:
                self.underruns += 1
            self._idle.set()
            self._first.set()

    def _underflow(self, audible: bool) -> None:
        if audible:
            self.underruns += 1
        else:
            self.idle_underflows += 1

    def _state(self, state: str) -> None:
        self.available = state == "ok"
        if not self.available:
            self._gone()
        if self._on_state is not None:
            self._on_state(state)

    def _gone(self) -> None:
        rate = self.rate or 48000
        self.available = False
        self.device_name = None
        self.rate = None
        self._resampler = None
        dropped = self._ring.clear()
        if dropped:
            log.info("audio output gone: %.2f s of queued audio dropped", dropped / rate)
        self._idle.set()
        self._first.set()
        self._flushed.set()

    async def _serve(
        self, token: trio.lowlevel.TrioToken, dev: Device, ready: Callable[[], None]
    ) -> None:
        self.attempts += 1
        sd = load_sounddevice()
        ring = self._ring
        first = trio.Event()
        gone = trio.Event()
        last_cb = time.monotonic()
        prev_filled = 0  # samples of queued audio in the previous callback's buffer
        latency = self.settings.output_latency_ms / 1000

        tap = self.tap

        def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            nonlocal last_cb, prev_filled
            now = last_cb = time.monotonic()
            filled, loud, dry = ring.pull(outdata[:, 0])
            # The stream clock -> monotonic: when outdata[0] will reach the speaker.
            dac = time_info.outputBufferDacTime - time_info.currentTime + now
            if filled:
                tap.push(dac, outdata[:filled, 0].copy(), dev.rate)
            try:
                if not first.is_set():
                    token.run_sync_soon(first.set)
                if status.output_underflow:
                    # The gap lies between the previous buffer and this one: audio was lost only
                    # if both carried it. The stream also runs on silence between utterances,
                    # where a late callback (a busy box) is harmless.
                    token.run_sync_soon(self._underflow, bool(filled and prev_filled))
                if loud is not None:
                    gen, i = loud
                    token.run_sync_soon(self._first_out, gen, dac + i / dev.rate)
                if dry:
                    token.run_sync_soon(self._ran_dry, not self._closing)
            except trio.RunFinishedError:
                pass
            prev_filled = filled

        def finished() -> None:
            if self._aborting:  # our own flush, not a lost device
                return
            try:
                token.run_sync_soon(gone.set)
            except trio.RunFinishedError:
                pass

        def open_stream() -> Any:
            return open_started(
                dev,
                sd.OutputStream,
                # Four callbacks per buffer: a late one still finds audio queued.
                blocksize=max(1, round(dev.rate * latency / 4)),
                latency=latency,
                callback=callback,
                finished_callback=finished,
            )

        async def flusher(stream: Any) -> None:
            # Barge-in: what PortAudio and the sound server already hold (output latency)
            # would still play; aborting the stream drops it, then it starts again on silence.
            while True:
                await self._flush_wanted.wait()
                self._flush_wanted = trio.Event()
                self._aborting = True
                t0 = trio.current_time()
                try:
                    await trio.to_thread.run_sync(stream.abort)
                    t1 = trio.current_time()
                    await trio.to_thread.run_sync(stream.start)
                    log.debug(
                        "audio output flushed",
                        extra={
                            "abort_ms": round((t1 - t0) * 1000, 1),
                            "restart_ms": round((trio.current_time() - t1) * 1000, 1),
                        },
                    )
                finally:
                    self._aborting = False
                    self._flushed.set()

        def on_ready(stream: Any, nursery: trio.Nursery) -> None:
            self._flush_wanted = trio.Event()
            nursery.start_soon(flusher, stream)
            self.rate = dev.rate
            self.latency_s = float(stream.latency)
            self.device_name = dev.label
            log.info(
                "audio output ok: %s at %d Hz",
                dev.label,
                dev.rate,
                extra={"latency_ms": round(self.latency_s * 1000, 1)},
            )
            ready()

        try:
            await serve_stream(dev, open_stream, first, gone, lambda: last_cb, on_ready)
        finally:
            self._gone()
