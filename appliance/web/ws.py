"""One kiosk WebSocket connection: reader, bounded writer, heartbeat, turns.

One module (~530 lines): the reader, writer, heartbeat and turn dispatch share one
connection's state; the wire format itself is `protocol.py`.

The writer owns the socket's send side behind a bounded queue: a client that stops reading fills
the queue and is closed, instead of growing our memory or blocking a turn. Bad frames get an
`error` and the connection stays up; only protocol abuse we cannot absorb (a full send queue, a
dead peer) ends it.

The kiosk's own screen also shows the box's own voice conversation (its microphone and speaker,
`voice/local.py`). A page asks for it with `hello {local: true}` and gets it only when it
connects from loopback (the kiosk browser runs on the box itself; a LAN browser or a phone never
sees another visitor's conversation, whatever it asks). The `hello` answer says `local: true|false`
(whether this connection now mirrors); `local: false` stops it, a `hello` without the field keeps
what was set. Each mirrored message arrives wrapped as `voice.local {msg}`, where `msg` is one of
the local conversation's `state`, `transcript`, `reply.delta`, `reply.done` or `error` (never
audio: the box's speaker plays the reply), so the page's own session messages stay apart. After
subscribing the page first gets the local conversation's latest `state`. Mirrored messages use at
most half of the connection's send queue: beyond that they wait in the mirror's bounded
per-page buffer and are dropped (counted) there, so a slow page neither stalls the voice pipeline
nor gets closed because of the mirror.

Microphone audio has budgets of its own (binary frames skip the message bucket): per connection,
a token bucket in seconds of audio refilled at 1.5 x real time with a 1 s burst (so a re-sent
`audio.start` cannot refill it), checked before a frame is decoded or resampled; a queue to the
voice pipeline bounded in bytes (4 s of 16 kHz float audio). What does not fit is dropped and
counted (`appliance_bad_input_total{code="audio_flood"}`), and the client is told once per
stream. Browser voice streams are capped in all (`voice.max_browser_sessions`), and the box's own
microphone comes first: while its conversation is in a turn (the local mirror's state is not
idle), `audio.start` is refused with `voice_busy`, and a stream already running is ended the
same way. Refused rather than queued: live speech queued behind someone else's turn would be
transcribed late, out of its moment, and the visitor can type meanwhile.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from ..admin.auth import is_loopback
from ..audio.resample import StreamResampler
from ..dialog import Conversation
from ..events import (
    DialogEvent,
    ErrorEvent,
    HelloEvent,
    PingEvent,
    PongEvent,
    ServerEvent,
    StateEvent,
    VoiceLocal,
)
from ..images import ImageError
from ..mirror import MirrorSubscription
from ..service import ServiceContext
from ..voice.engine import VoiceEngine, engine_of
from ..voice.listening import pcm16_to_float
from ..voice.pipeline import PipelineSettings, open_pipeline
from ..voice.wake import wake_phrase
from . import protocol as P
from .audio_sink import WsSink
from .ratelimit import TokenBucket

__all__ = ["WsConnection"]

log = logging.getLogger("appliance.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN = 1013
# Browser mic audio per connection: seconds of audio allowed per second (refill) and at once
# (burst; also the longest frame); audio waiting for the voice pipeline, in seconds at 16 kHz.
AUDIO_RATE_FACTOR = 1.5
AUDIO_BURST_S = 1.0
AUDIO_QUEUE_S = 4.0
_AUDIO_QUEUE_BYTES = int(AUDIO_QUEUE_S * 16000 * 4)  # float32 samples after resampling

AudioItem = npt.NDArray[np.float32] | None  # None: the client sent audio.end


class WsConnection:
    def __init__(self, ctx: ServiceContext, ws: Any) -> None:
        self.ctx = ctx
        self.ws = ws
        cfg = ctx.cfg.web
        # Events stay objects until the writer: queued reply deltas can then be merged.
        self._send, self._outbox = trio.open_memory_channel[ServerEvent | bytes](cfg.send_queue)
        self.bucket = TokenBucket(cfg.rate_per_s, cfg.rate_burst)
        self.conv: Conversation | None = None
        self.last_rx = trio.current_time()
        self.close_code: int | None = None
        self.close_reason = "client"
        self._limited_notice = False
        self._binary_notice = False
        self._nursery: trio.Nursery | None = None
        self._flushed = trio.Event()
        # Voice: the pipeline task's input while the client streams (audio.start..audio.end).
        self._audio_in: trio.MemorySendChannel[AudioItem] | None = None
        self._audio_rate: int | None = None
        self._resampler: StreamResampler | None = None  # client rate -> 16 kHz, one per stream
        self._voice_scope: trio.CancelScope | None = None
        # Seconds of audio; one bucket for the connection's life (re-announcing does not refill).
        self._audio_bucket = TokenBucket(AUDIO_RATE_FACTOR, AUDIO_BURST_S)
        self._audio_queued = 0  # bytes in the pipeline's queue
        self._flood_notice = False
        self._voice_slot = False  # counted in ctx.voice_streams
        # The local voice mirror (kiosk screen only) and the writer's progress it waits on.
        self._mirror: MirrorSubscription | None = None
        self._mirror_room = max(1, cfg.send_queue // 2)
        self._progress = trio.lowlevel.ParkingLot()

    # -- sending ----------------------------------------------------------------------------------

    def send_nowait(self, msg: ServerEvent) -> None:
        """Queue a message; a client too slow to drain its queue is disconnected."""
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            self.close(CLOSE_TRY_AGAIN, "slow_consumer")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def send_bytes_nowait(self, data: bytes) -> None:
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            self.close(CLOSE_TRY_AGAIN, "slow_consumer")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def emit(self, msg: ServerEvent) -> None:
        self.send_nowait(msg)
        await trio.lowlevel.checkpoint()

    def error(self, code: str, message: str) -> None:
        self.ctx.metrics.bad_input.labels(code=code).inc()
        self.send_nowait(ErrorEvent(code, message))

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            log.info("closing websocket: %s (%d)", reason, code)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _writer(self) -> None:
        try:
            await self._write_all()
        finally:
            self._flushed.set()

    async def _write_all(self) -> None:
        async with self._outbox:
            async for first in self._outbox:
                # Under load several deltas wait here: one frame (one syscall) for all of them.
                batch = [first]
                while True:
                    try:
                        batch.append(self._outbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                self._progress.unpark_all()  # room in the queue again (the mirror waits on it)
                for item in P.coalesce(batch):
                    await self.ws.send(item if isinstance(item, bytes) else P.encode(item))

    # -- lifecycle --------------------------------------------------------------------------------

    async def serve(self) -> None:
        ctx = self.ctx
        ctx.metrics.ws_connects.inc()
        ctx.ws_open += 1
        # The writer lives outside the connection's own nursery: hypercorn shields its socket
        # writes without a timeout, so a writer stuck on a peer that stopped reading cannot be
        # cancelled. Everything else (reader, heartbeat, turns, accounting) ends when we decide.
        async with trio.open_nursery() as outer:
            outer.start_soon(self._writer)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._heartbeat)
                    nursery.start_soon(self._watch_stop)
                    await self._reader()
                    nursery.cancel_scope.cancel()
            finally:
                if self._mirror is not None:
                    self._mirror.close()
                self._release_voice()
                ctx.ws_open -= 1
                ctx.metrics.ws_closed.labels(reason=self.close_reason).inc()
                if self.conv is not None:
                    # The visitor left mid-turn: stop spending LLM time on a reply nobody reads.
                    ctx.runner.cancel(self.conv.session_id)
                self._send.close()  # the writer sends what is queued, then ends
            if self.close_reason == "slow_consumer":
                outer.cancel_scope.cancel()  # drop the backlog; only a write in flight remains
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                await self._flushed.wait()
                if self.close_code is not None:
                    try:
                        await self.ws.close(self.close_code)
                    except Exception:  # the peer may be gone already
                        pass

    async def _watch_stop(self) -> None:
        await self.ctx.stopping.wait()
        self.close(CLOSE_GOING_AWAY, "shutdown")

    async def _heartbeat(self) -> None:
        """Ping quiet clients; close ones that stay silent (a vanished tablet, a dead NAT)."""
        cfg = self.ctx.cfg.web
        pinged_rx: float | None = None  # last_rx when we pinged; None: no ping outstanding
        while True:
            # Sleep until a ping (or, once pinged, the close) could be due, not on a periodic
            # tick: hundreds of open screens would each wake the loop every few seconds.
            due = cfg.heartbeat_s + (cfg.heartbeat_timeout_s if pinged_rx is not None else 0.0)
            await trio.sleep_until(self.last_rx + due + 0.001)
            if pinged_rx is not None and self.last_rx > pinged_rx:
                pinged_rx = None  # heard from since the ping
                continue
            quiet = trio.current_time() - self.last_rx
            if quiet > cfg.heartbeat_s + cfg.heartbeat_timeout_s:
                self.close(CLOSE_GOING_AWAY, "dead")
                return
            if quiet > cfg.heartbeat_s and pinged_rx is None:
                pinged_rx = self.last_rx
                await self.emit(PingEvent(round(trio.current_time(), 3)))

    async def _reader(self) -> None:
        while True:
            frame = await self.ws.receive()
            now = trio.current_time()
            self.last_rx = now
            if isinstance(frame, bytes):
                self._on_binary(frame)
                continue
            if not self.bucket.allow(now):
                if not self._limited_notice:
                    self._limited_notice = True
                    self.error("rate_limited", "Too many messages; please wait a moment.")
                else:
                    self.ctx.metrics.bad_input.labels(code="rate_limited").inc()
                continue
            self._limited_notice = False
            try:
                msg = P.parse_client_frame(
                    frame,
                    max_text_chars=self.ctx.cfg.web.max_text_chars,
                    max_frame_bytes=self.ctx.cfg.web.max_frame_bytes,
                )
            except P.ProtocolError as exc:
                self.error(exc.code, exc.message)
                continue
            await self._dispatch(msg)

    def _on_binary(self, frame: bytes) -> None:
        # Mic audio (PCM s16le mono) between audio.start and audio.end feeds the voice
        # pipeline; outside that, binary frames are out of protocol. One notice per burst, not
        # one per 20 ms frame.
        if len(frame) > self.ctx.cfg.web.max_frame_bytes:
            self.error("frame_too_large", "Audio frame too large.")
            return
        if self._audio_in is not None and self._audio_rate is not None:
            self._on_audio(frame, self._audio_rate, self._audio_in)
            return
        if not self._binary_notice:
            self._binary_notice = True
            self.error("audio_not_started", "Binary audio frames must follow 'audio.start'.")
        else:
            self.ctx.metrics.bad_input.labels(code="audio_not_started").inc()

    def _on_audio(
        self, frame: bytes, rate: int, audio_in: trio.MemorySendChannel[AudioItem]
    ) -> None:
        """One mic frame within the budgets (checked before any decoding), else dropped."""
        if self._local_busy():
            # The box's own microphone has a visitor: this stream ends (see the module doc).
            self._end_stream()
            self._binary_notice = True  # the frames still in flight are not worth a notice
            self._voice_busy()
            return
        seconds = len(frame) / (2 * rate)
        if seconds > AUDIO_BURST_S:
            self.error("frame_too_large", f"Audio frames must be at most {AUDIO_BURST_S:g} s long.")
            return
        if not self._audio_bucket.allow(trio.current_time(), seconds):
            self._flooded()
            return
        audio = pcm16_to_float(frame)
        if self._resampler is not None:
            audio = self._resampler.process(audio)
        if self._audio_queued + audio.nbytes > _AUDIO_QUEUE_BYTES:
            self._flooded()  # the pipeline is behind: drop rather than grow
            return
        try:
            audio_in.send_nowait(audio)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self._audio_queued += audio.nbytes

    def _flooded(self) -> None:
        if not self._flood_notice:
            self._flood_notice = True
            self.error(
                "audio_flood",
                "Audio is arriving faster than real time; some of it was dropped.",
            )
        else:
            self.ctx.metrics.bad_input.labels(code="audio_flood").inc()

    def _local_busy(self) -> bool:
        """The box's own voice conversation is in a turn (listening, thinking or speaking)."""
        last: DialogEvent | None = self.ctx.local_mirror.last_state
        return isinstance(last, StateEvent) and last.state != "idle"

    def _voice_busy(self) -> None:
        self.error(
            "voice_busy",
            "Someone is talking with the kiosk in person; please type your question, "
            "or try the microphone again in a moment.",
        )

    def _claim_voice(self) -> bool:
        """A browser voice slot for this connection (held until audio.end or it leaves)."""
        if self._local_busy():
            self._voice_busy()
            return False
        if self._voice_slot:
            return True
        if self.ctx.voice_streams >= self.ctx.cfg.voice.max_browser_sessions:
            self.error(
                "voice_full",
                "Voice input is busy on other screens right now; please type your question, "
                "or try the microphone again in a moment.",
            )
            return False
        self.ctx.voice_streams += 1
        self._voice_slot = True
        return True

    def _release_voice(self) -> None:
        if self._voice_slot:
            self._voice_slot = False
            self.ctx.voice_streams -= 1

    def _end_stream(self) -> None:
        """audio.end, from the client or from us: the utterance in progress ends now."""
        self._release_voice()
        if self._audio_in is not None and self._audio_rate is not None:
            self._audio_rate = None  # binary frames are out of protocol again
            try:
                self._audio_in.send_nowait(None)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                pass

    # -- messages ---------------------------------------------------------------------------------

    def _session(self, requested: str | None) -> Conversation:
        conv, resumed = self.ctx.sessions.resume_or_create(requested, trio.current_time())
        self.conv = conv
        cfg = self.ctx.cfg
        self.send_nowait(
            HelloEvent(
                session=conv.session_id,
                resumed=resumed,
                config={
                    "idle_reset_s": cfg.dialog.idle_reset_s,
                    "max_text_chars": cfg.web.max_text_chars,
                    "max_image_bytes": cfg.images.max_bytes,
                    "image_max_side": cfg.images.max_side,
                    "vision": any(ep.vision for ep in cfg.llm.endpoints),
                    "voice": engine_of(self.ctx) is not None and cfg.voice.max_browser_sessions > 0,
                    "heartbeat_s": cfg.web.heartbeat_s,
                    "listen": list(cfg.voice.listen),
                    "local_voice": self.ctx.local_listen is not None,  # the box's own mic runs
                    "wake_phrase": wake_phrase(cfg.voice.wake_word),
                },
                local=self._mirror is not None,
            )
        )
        self.send_nowait(StateEvent(conv.state.value))
        return conv

    async def _dispatch(self, msg: P.ClientMessage) -> None:
        assert self._nursery is not None
        match msg:
            case P.Hello(session=session, local=local):
                if self.conv is not None and self.conv.session_id != session:
                    self.ctx.runner.cancel(self.conv.session_id)
                    self._stop_voice()
                started = self._set_local(local) if local is not None else None
                # hello (with `local`) goes out before anything the mirror forwards: the pump
                # below only runs after this task's next checkpoint.
                self._session(session)
                if started is not None:
                    self._nursery.start_soon(self._forward_local, started)
            case P.Ping(t=t):
                self.send_nowait(PongEvent(t))
            case P.Pong():
                pass
            case P.Cancel():
                if self.conv is not None:
                    self.ctx.runner.cancel(self.conv.session_id)
            case P.Listen():
                # The box's own microphone: only the kiosk's own screen (loopback) may open it.
                hook = self.ctx.local_listen
                if not is_loopback(self._remote_addr()) or hook is None or not hook():
                    self.error("listen_unavailable", "The kiosk's microphone is not available.")
            case P.TextQuestion():
                conv = self.conv or self._session(None)
                self._binary_notice = False
                self._nursery.start_soon(self._turn, conv, msg)
            case P.Choose(turn=turn, id=choice):
                conv = self.conv or self._session(None)
                label = self.ctx.runner.choice_label(conv, turn, choice)
                if label is None:
                    self.error("choice_expired", "That question has moved on; please ask again.")
                    return
                self._nursery.start_soon(self._turn, conv, P.TextQuestion(text=label, image=None))
            case P.AudioStart(rate=rate):
                engine = engine_of(self.ctx)
                if engine is None or self.ctx.cfg.voice.max_browser_sessions <= 0:
                    self.error(
                        "voice_unavailable",
                        "Voice input is not available on this kiosk; please type your question.",
                    )
                    return
                if not self._claim_voice():
                    return
                conv = self.conv or self._session(None)
                self._binary_notice = False
                self._flood_notice = False
                self._audio_rate = rate
                self._resampler = StreamResampler(rate, 16000) if rate != 16000 else None
                if self._audio_in is None:
                    # Unbounded in items, bounded in bytes by _on_audio (_AUDIO_QUEUE_BYTES).
                    send, recv = trio.open_memory_channel[AudioItem](math.inf)
                    self._audio_in = send
                    self._audio_queued = 0
                    self._nursery.start_soon(self._voice, conv, engine, recv)
            case P.AudioEnd():
                self._end_stream()

    # -- the local voice mirror (kiosk screen only) ------------------------------------------------

    def _remote_addr(self) -> str | None:
        addr = getattr(self.ws, "remote_addr", None)
        return addr if isinstance(addr, str) else None

    def _set_local(self, want: bool) -> MirrorSubscription | None:
        """Subscribe or unsubscribe; returns a new subscription for the caller to start."""
        if not want:
            if self._mirror is not None:
                self._mirror.close()  # its forwarder ends
                self._mirror = None
            return None
        if self._mirror is not None:
            return None
        addr = self._remote_addr()
        if not is_loopback(addr):
            log.info("local voice mirror refused to a non-loopback client", extra={"addr": addr})
            return None
        self._mirror = self.ctx.local_mirror.subscribe()
        return self._mirror

    async def _forward_local(self, sub: MirrorSubscription) -> None:
        with sub:
            async for msg in sub:
                # Leave half the send queue to the page's own session: a page that reads slowly
                # is never closed as a slow consumer because of the mirror.
                while self._send.statistics().current_buffer_used >= self._mirror_room:
                    await self._progress.park()
                if sub.closed:
                    break
                self.send_nowait(VoiceLocal(msg))
        if sub.dropped:
            log.info(
                "local voice mirror: %d message(s) dropped for a slow page",
                sub.dropped,
                extra={"dropped": sub.dropped},
            )
        if self._mirror is sub:
            self._mirror = None

    def _stop_voice(self) -> None:
        if self._voice_scope is not None:
            self._voice_scope.cancel()
        self._release_voice()
        self._audio_in = None
        self._audio_rate = None

    async def _voice(
        self,
        conv: Conversation,
        engine: VoiceEngine,
        recv: trio.MemoryReceiveChannel[AudioItem],
    ) -> None:
        """The session's voice pipeline, alive from the first audio.start until the client
        leaves or switches session; reply audio goes back on this socket."""
        sink = WsSink(self.send_nowait, self.send_bytes_nowait, lambda: conv.turns)
        settings = PipelineSettings.from_config(self.ctx.cfg.voice)
        with trio.CancelScope() as scope:
            self._voice_scope = scope
            async with (
                recv,
                open_pipeline(
                    engine,
                    self.ctx.runner,
                    conv,
                    self.emit,
                    sink,
                    settings,
                    self.ctx.metrics,
                    spoken=engine.spoken,
                ) as pipe,
            ):
                async for item in recv:
                    if item is None:
                        await pipe.end_of_input()
                    else:
                        self._audio_queued -= item.nbytes
                        await pipe.feed(item)

    async def _turn(self, conv: Conversation, q: P.TextQuestion) -> None:
        runner = self.ctx.runner
        async with runner.exclusive(conv.session_id) as scope:
            image = None
            if q.image is not None:
                try:
                    image = await runner.prepare_image(q.image)
                except ImageError as exc:
                    self.error(exc.code, exc.message)
                    return
            await runner.run_text(conv, q.text, self.emit, image=image)
        if scope.cancelled_caught:
            # Cancelled by the visitor (or replaced by a new question): show where we are now.
            self.send_nowait(StateEvent(conv.state.value))
