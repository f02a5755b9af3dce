"""Microphone -> 16 kHz mono float32 blocks of 512 samples on a bounded trio channel.

PortAudio calls back on its own thread; there we resample (the device's native rate -> 16 kHz)
and cut VAD-sized blocks, then hand each block to trio with `token.run_sync_soon`. The trio
side only does `send_nowait`: a full channel drops the block and counts it (`dropped`), so a
slow consumer can never stall the audio thread or grow memory. Each block carries the time its
first sample entered the microphone (PortAudio's ADC time on `time.monotonic()`), the clock the
echo reference is placed on (see `farend.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import trio

from appliance.audio.devices import (
    AudioSettings,
    Device,
    keep_device_open,
    load_sounddevice,
    open_started,
    serve_stream,
)
from appliance.audio.farend import MicBlock
from appliance.audio.resample import StreamResampler

log = logging.getLogger("appliance.audio")

RATE = 16000

__all__ = ["RATE", "Capture"]


class _ReceiverClosed(Exception):
    pass


class Capture:
    """Mic -> 16 kHz mono float32 blocks of 512 samples on a bounded trio channel; drops counted.

    `on_state` (called on the trio thread) gets "ok", "lost" or "unavailable".
    """

    def __init__(
        self, settings: AudioSettings, on_state: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self._on_state = on_state
        self.block = RATE * settings.block_ms // 1000
        self.dropped = 0  # blocks lost because the channel was full
        self.blocks = 0  # blocks delivered
        self.overflows = 0  # PortAudio reported input overflow (audio lost before us)
        self.attempts = 0  # device opens tried
        self.device_name: str | None = None
        self.available = False
        self.latency_s: float | None = None  # PortAudio's input latency + resampler delay

    async def run(
        self,
        send: trio.MemorySendChannel[MicBlock],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Capture until cancelled (or the receiving end is closed).

        started() once audio flows, or once no device was found (then keeps retrying).
        """
        token = trio.lowlevel.current_trio_token()
        try:
            await keep_device_open(
                "input",
                self.settings.input_device,
                self.settings,
                partial(self._serve, send, token),
                self._state,
                task_status,
            )
        except _ReceiverClosed:
            log.info("audio capture stopped: the receiver closed its channel")
        finally:
            self.available = False

    def _state(self, state: str) -> None:
        self.available = state == "ok"
        if state != "ok":
            self.device_name = None
        if self._on_state is not None:
            self._on_state(state)

    async def _serve(
        self,
        send: trio.MemorySendChannel[MicBlock],
        token: trio.lowlevel.TrioToken,
        dev: Device,
        ready: Callable[[], None],
    ) -> None:
        self.attempts += 1
        sd = load_sounddevice()
        resampler = StreamResampler(dev.rate, RATE)
        n = self.block
        native_block = max(1, round(dev.rate * self.settings.device_block_ms / 1000))
        first = trio.Event()
        gone = trio.Event()
        closed = False
        pending = np.zeros(0, np.float32)
        pending_t = 0.0  # monotonic ADC time of pending[0]
        last_cb = time.monotonic()

        def deliver(block: MicBlock) -> None:  # trio thread
            nonlocal closed
            first.set()
            try:
                send.send_nowait(block)
                self.blocks += 1
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                closed = True
                gone.set()

        def count_overflow() -> None:
            self.overflows += 1

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            nonlocal pending, pending_t, last_cb
            now = last_cb = time.monotonic()
            out = resampler.process(indata[:, 0])
            # The stream clock -> monotonic; the resampler's output lags its input.
            adc = time_info.inputBufferAdcTime - time_info.currentTime + now
            out_t = adc - resampler.delay_s
            # Where the pending samples end, per this block's stamp (no drift between stamps).
            pending_t = out_t - len(pending) / RATE
            pending = np.concatenate((pending, out))
            try:
                if status.input_overflow:
                    token.run_sync_soon(count_overflow)
                while len(pending) >= n:
                    token.run_sync_soon(deliver, MicBlock(pending[:n].copy(), pending_t))
                    pending = pending[n:]
                    pending_t += n / RATE
            except trio.RunFinishedError:
                pass

        def finished() -> None:  # PortAudio ended the stream (error or close)
            try:
                token.run_sync_soon(gone.set)
            except trio.RunFinishedError:
                pass

        def open_stream() -> Any:
            return open_started(
                dev,
                sd.InputStream,
                blocksize=native_block,
                callback=callback,
                finished_callback=finished,
            )

        def on_ready(stream: Any, _: trio.Nursery) -> None:
            self.latency_s = float(stream.latency) + resampler.delay_s
            self.device_name = dev.label
            log.info(
                "audio input ok: %s at %d Hz -> %d Hz",
                dev.label,
                dev.rate,
                RATE,
                extra={"latency_ms": round(self.latency_s * 1000, 1)},
            )
            ready()

        await serve_stream(dev, open_stream, first, gone, lambda: last_cb, on_ready)
        if closed:
            raise _ReceiverClosed
