"""The kiosk's own microphone and speaker: Capture -> voice pipeline -> Playback.

The same `VoicePipeline` as the browser path (`web/ws.py`), fed from the sound card instead of
/ws frames, with one long-lived "local" conversation (its context still resets itself after
`dialog.idle_reset_s` of silence, see `Conversation.touch`). Dialog messages (state,
transcripts, replies) are logged here and published to `ctx.local_mirror`, which shows them on
the kiosk's own screen (`web/ws.py`: pages that ask with `hello {local: true}` from loopback).

No microphone is not an error: `Capture` logs it once and keeps retrying with backoff, and the
kiosk runs on text and touch meanwhile. No speaker: `Playback` discards reply audio (counted)
and the reply is still shown as text.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from ..audio.capture import Capture
from ..audio.devices import AudioSettings
from ..audio.farend import FarEndTap, MicBlock
from ..audio.frontend import DELAY_SAMPLES, AudioFrontEnd, FarAligner, FrontEndSettings
from ..audio.playback import Playback
from ..config import Config
from ..dialog import Conversation
from ..events import ErrorEvent, ReplyDone, ServerEvent, StateEvent, Transcript, to_wire
from ..mirror import MIRRORED_TYPES
from ..models_manifest import ModelError, load_manifest
from ..service import ServiceContext
from .engine import VoiceEngine
from .listening import ListenGate
from .pipeline import PipelineSettings, VoicePipeline, open_pipeline
from .wake import WakeSettings, WakeWordDetector

__all__ = ["LocalVoice", "PlaybackSink", "audio_settings", "run_local_voice"]

log = logging.getLogger("appliance.voice.local")

F32 = npt.NDArray[np.float32]


def audio_settings(cfg: Config) -> AudioSettings:
    return AudioSettings(input_device=cfg.audio.input_device, output_device=cfg.audio.output_device)


class PlaybackSink:
    """`AudioSink` over the sound card: an utterance opens at the first `play` after a
    `drain`/`stop` (so `first_sample_at` times that utterance's first audible sample), and
    that `play` returns once the device took the sample, so `first_sample_at` is its DAC
    time (one callback period, ~20 ms, while the audio already plays)."""

    def __init__(self, playback: Playback) -> None:
        self.playback = playback
        self._open = False

    @property
    def first_sample_at(self) -> float | None:
        # None when the device never took an audible sample in time (ReplySpeech then uses
        # the current time).
        return self.playback.first_sample_at if self._open else None

    @first_sample_at.setter
    def first_sample_at(self, value: float | None) -> None:
        self.playback.first_sample_at = value

    async def play(self, audio: F32, rate: int) -> None:
        first = not self._open
        if first:
            self._open = True
            self.playback.mark_utterance()
        await self.playback.play(audio, rate)
        if first:
            await self.playback.first_out()

    async def drain(self) -> None:
        await self.playback.drained()
        self._open = False

    def stop(self) -> None:
        self.playback.stop()
        self._open = False


class LocalVoice:
    """Handles for tests and status: the devices and, while it runs, the pipeline."""

    def __init__(self, ctx: ServiceContext, engine: VoiceEngine, settings: AudioSettings) -> None:
        self.ctx = ctx
        self.engine = engine
        self.capture = Capture(settings, on_state=self._mic_state)
        self.playback = Playback(settings)
        a = ctx.cfg.audio
        self.frontend: AudioFrontEnd | None = None
        # The raw microphone, DELAY_SAMPLES behind (see _detect).
        self._raw_line = np.zeros(DELAY_SAMPLES, dtype=np.float32)
        self.aligner: FarAligner | None = None
        # The pipeline's echo gate reads what the aligner forwards (draining a tap removes
        # what it read, so the aligner is its only reader).
        self.far_end = FarEndTap()
        if a.echo_cancellation or a.noise_suppression:
            fe = FrontEndSettings(
                echo_cancellation=a.echo_cancellation,
                noise_suppression=a.noise_suppression,
                ns_level=a.ns_level,
            )
            self.frontend = AudioFrontEnd(fe)
            self.aligner = FarAligner(fe.reference_lead_ms, forward=self.far_end)
        v = ctx.cfg.voice
        self.gate = ListenGate(v.listen, follow_up_s=v.follow_up_s, attention_dbfs=v.attention_dbfs)
        self.wake: WakeWordDetector | None = None
        if "wake" in v.listen:
            try:
                self.wake = WakeWordDetector.load(
                    WakeSettings(model=v.wake_word, threshold=v.wake_threshold or None),
                    load_manifest(),
                    check_hash=v.check_hashes,
                )
            except (ModelError, OSError, ValueError, RuntimeError) as exc:
                # A bad wake-word file costs the wake word, not the microphone: touch (and the
                # kiosk's other modes) still work.
                log.error("wake word unavailable, listening by touch only: %s", exc)
        self.sink = PlaybackSink(self.playback)
        self.conv: Conversation | None = None
        self.pipeline: VoicePipeline | None = None
        self.messages: deque[dict[str, Any]] = deque(maxlen=64)  # the latest, for status/tests
        self.wakes = 0  # wake words heard since start

    def _mic_state(self, state: str) -> None:
        if state == "ok":
            log.info("local voice: listening on %s", self.capture.device_name)

    def _session(self) -> Conversation:
        """The kiosk's own conversation: kept across restarts of this task while it exists."""
        sid = self.conv.session_id if self.conv is not None else None
        conv, _ = self.ctx.sessions.resume_or_create(sid, trio.current_time())
        self.conv = conv
        return conv

    async def emit(self, ev: ServerEvent) -> None:
        """Dialog events of the local session: logged, and mirrored to the kiosk screen (the
        mirror never waits: a slow page loses mirrored messages, not the pipeline's time)."""
        self.messages.append(to_wire(ev))
        if isinstance(ev, MIRRORED_TYPES):
            self.ctx.local_mirror.publish(ev)
        match ev:
            # What a visitor said and was told is theirs: debug level only (off in production),
            # so the journal never keeps it past the store's retention. Outcome and timings stay.
            case Transcript(final=True):
                log.debug("local voice heard: %r", ev.text)
            case ReplyDone():
                log.info(
                    "local voice replied (turn %d, %s)",
                    ev.turn,
                    ev.outcome,
                    extra={"turn": ev.turn, "outcome": ev.outcome, "timings": ev.timings},
                )
                log.debug("local voice reply text: %r", ev.text, extra={"turn": ev.turn})
            case StateEvent():
                log.debug("local voice state: %s", ev.state, extra={"state": ev.state})
            case ErrorEvent():
                log.warning("local voice error: %s", ev.message, extra={"code": ev.code})
        await trio.lowlevel.checkpoint()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled. started() once both devices are open or found missing (retrying)."""
        ctx = self.ctx
        conv = self._session()
        settings = PipelineSettings.from_config(ctx.cfg.voice)
        if self.frontend is not None:
            # The gate then judges the raw microphone re-timed onto the front end's output, and
            # our own voice left 3 frames unexplained often enough to interrupt 3 of 30 replies
            # with the quick barge-in for a plainly foreign voice (`bench echo --configs webrtc`).
            seg = settings.segmenter
            quick = dataclasses.replace(seg, bargein_clear_speech_s=seg.bargein_min_speech_s)
            settings = dataclasses.replace(settings, segmenter=quick)
        send, recv = trio.open_memory_channel[MicBlock](self.capture.settings.queue_blocks)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.playback.run)
            await nursery.start(self.capture.run, send)
            nursery.start_soon(self._export_counters)
            async with (
                recv,
                open_pipeline(
                    self.engine,
                    ctx.runner,
                    conv,
                    self.emit,
                    self.sink,
                    settings,
                    ctx.metrics,
                    far_end=self.far_end if self.frontend is not None else self.playback.tap,
                    spoken=self.engine.spoken,
                ) as pipe,
            ):
                self.pipeline = pipe
                pipe.gate = self.gate
                pipe.wake_phrase = self.wake.phrase if self.wake is not None else ""
                ctx.local_listen = self.listen
                ctx.local_voice_status = self.status
                task_status.started()
                try:
                    async for raw in recv:
                        block = self._clean(raw)
                        await pipe.feed(block, self._detect(raw) if block is not raw else None)
                        if self.wake is not None and self.wake.process(block.samples):
                            self.wakes += 1
                            log.info("local voice: wake word heard")
                            await pipe.wake()
                finally:
                    self.pipeline = None
                    ctx.local_listen = None
                    ctx.local_voice_status = None
            nursery.cancel_scope.cancel()

    def status(self) -> dict[str, Any]:
        """What the admin status page shows of the box's own microphone and speaker.

        `false_wakes`: the detector fired but the transcript had no wake phrase (the turn was
        not started); a wake with nothing said after it is not counted as one."""
        gate = self.gate
        turns = self.pipeline.turns if self.pipeline is not None else []

        return {
            "microphone": self.capture.device_name,
            "speaker": self.playback.device_name,
            "input_latency_ms": _ms(self.capture.latency_s),
            "output_latency_ms": _ms(self.playback.latency_s),
            "dropped_blocks": self.capture.dropped,
            "underruns": self.playback.underruns,
            "listen": list(gate.modes),
            "wake_word": self.wake.phrase if self.wake is not None else None,
            "wakes_heard": self.wakes,
            # Wakes whose utterance did not carry the wake phrase (no turn was started).
            "false_wakes": self.pipeline.false_wakes if self.pipeline is not None else 0,
            "listening_opened": gate.opened,
            "utterances_ignored": gate.ignored,
            "turns": sum(1 for t in turns if t.outcome == "ok"),
            "echo_gate": self.ctx.cfg.voice.echo_gate,
            # The speaker -> microphone paths the echo gate found (direct sound first).
            "echo_paths_ms": self.pipeline.echo_paths_ms if self.pipeline is not None else [],
            "front_end": self._front_end_status(),
        }

    def _front_end_status(self) -> dict[str, Any] | None:
        if self.frontend is None:
            return None
        st, fe = self.frontend.stats(), self.frontend.settings
        return {
            "echo_cancellation": fe.echo_cancellation,
            "noise_suppression": fe.noise_suppression,
            "erle_db": None if st.erle_db is None else round(st.erle_db, 1),
            "cpu_us_per_10ms": round(st.cpu_us_per_10ms, 1),
            "echo_active": st.echo_active,
            "delay_ms": _ms(self.frontend.delay_s),
        }

    def listen(self) -> bool:
        """Touch to talk: the box's own microphone listens for one question."""
        if self.pipeline is None or "touch" not in self.gate.modes:
            return False
        self.pipeline.listen()
        log.info("local voice: listening after a tap on the screen")
        return True

    def _detect(self, raw: MicBlock) -> F32:
        """The raw microphone delayed onto the cleaned audio's timeline (the front end's own
        re-framing delay; WebRTC's few ms more are inside one VAD frame), for VAD and the echo
        gate: see VoicePipeline.feed."""
        self._raw_line = np.concatenate([self._raw_line, raw.samples])
        out = self._raw_line[: len(raw.samples)]
        self._raw_line = self._raw_line[len(raw.samples) :]
        return out

    def _clean(self, block: MicBlock) -> MicBlock:
        """The mic block after echo cancellation and noise suppression (~0.2 ms per 32 ms
        block, inline: a thread hop would cost more). The output runs `delay_s` behind the
        input, so its capture time moves with it: the echo gate stays on the right clock."""
        if self.frontend is None or self.aligner is None:
            return block
        far = self.aligner.far_for(block, self.playback.tap)
        clean = self.frontend.process(block.samples, far)
        t = None if block.t is None else block.t - self.frontend.delay_s
        return MicBlock(clean, t)

    async def _export_counters(self, period_s: float = 1.0) -> None:
        """Copy the devices' plain int counters (kept by their callbacks' trio side) and the front
        end's ERLE to /metrics."""
        m = self.ctx.metrics
        dropped = underruns = 0
        while True:
            d, u = self.capture.dropped, self.playback.underruns
            # max(0, ...): a counter never goes down, even if a device object starts over.
            m.audio_dropped.inc(max(0, d - dropped))
            m.playback_underruns.inc(max(0, u - underruns))
            dropped, underruns = d, u
            if self.frontend is not None and (erle := self.frontend.erle_db) is not None:
                m.frontend_erle.set(erle)
            await trio.sleep(period_s)


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 1)


async def run_local_voice(ctx: ServiceContext, engine: VoiceEngine) -> None:
    """The local voice task, until cancelled (the supervisor restarts it if it crashes)."""
    await LocalVoice(ctx, engine, audio_settings(ctx.cfg)).run()
