"""One voice session: 16 kHz audio in -> VAD/endpoint -> ASR -> a turn -> reply speech out.

Audio time (samples fed / 16 kHz) drives the segmenter, the partial-ASR cadence and the echo
gate, so the same code runs on a live microphone, a browser stream and a file fed faster than
real time (tests). Wall time (trio clock) is used only for the latency figures.

Flow per utterance: SpeechStarted (barge-in if a turn is running or audio playing) ->
partial ASR passes every `partial_interval_s` of audio (`transcript {final:false}`, and the
turn-taking hint for the segmenter) -> SilenceStarted starts the final pass speculatively,
SpeechResumed aborts it -> SpeechEnded takes that pass (or runs one) under the `asr_s` budget
-> `transcript {final:true}` -> TurnRunner.run_text(source="voice") with an emit wrapper that
feeds reply text into ReplySpeech, and a VoiceLeg: run_text waits for the first reply sample
before `reply.done` and for the end of playback before it records the turn, so the stored turn
has the whole trace and a barge-in (one cancel scope over LLM stream, TTS and playback) is
recorded as "interrupted". Every model call runs on a worker thread (ModelRunner).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from ..audio.farend import EchoReference, FarEndTap, MicBlock
from ..config import VoiceConfig
from ..dialog import Conversation, DialogError, DialogEvent, DialogState
from ..metrics import Metrics
from ..turns import Emit, TurnRunner, VoiceLeg
from .asr import TranscriptionAborted
from .endpoint import (
    Event,
    NoSpeechTimeout,
    Segmenter,
    SegmenterSettings,
    SilenceStarted,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
    segment_samples,
)
from .engine import VoiceEngine
from .speech import AudioSink, Prefetch, ReplySpeech, first_chunk, synthesize_chunk
from .turntaking import looks_complete

__all__ = [
    "AudioSink",
    "EchoGate",
    "MemorySink",
    "PipelineSettings",
    "VoicePipeline",
    "WsSink",
    "open_pipeline",
    "pcm16_to_float",
    "usable_transcript",
]

log = logging.getLogger("appliance.voice.pipeline")

F32 = npt.NDArray[np.float32]
RATE = 16000
FRAME = 512
FRAME_S = FRAME / RATE
_MIN_PARTIAL_S = 0.4  # shorter audio gives Moonshine nothing to work with
_WALL_KEEP = 1024  # frames of (audio time -> wall time) history, ~33 s


@dataclass(frozen=True)
class PipelineSettings:
    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)
    post_roll_s: float = 0.1
    partial_interval_s: float = 0.6
    speculative_final: bool = True
    asr_s: float = 3.0
    tts_first_s: float = 2.0
    length_scale: float = 1.0
    retry_reply: str = "Sorry, could you say that again?"
    echo_gate: bool = True
    echo_leak: float = 0.1
    echo_margin: float = 2.0
    echo_max_lag_s: float = 0.3

    @classmethod
    def from_config(cls, v: VoiceConfig) -> PipelineSettings:
        # [voice] carries every segmenter threshold and every setting here under the same name.
        return cls(
            segmenter=SegmenterSettings(**_same_named(SegmenterSettings, v)),
            **_same_named(cls, v, skip="segmenter"),
        )


def _same_named(target: type[Any], source: object, skip: str = "") -> dict[str, Any]:
    """`source`'s values for the fields of dataclass `target` (but `skip`), by name."""
    return {f.name: getattr(source, f.name) for f in dataclasses.fields(target) if f.name != skip}


# -- pure helpers ----------------------------------------------------------------------------


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


class EchoGate:
    """Self-interruption guard: is a mic frame just our own voice coming back? Pure numpy.

    The reference (`EchoReference`) is what we play on the microphone's sample axis: placed by
    the devices' clocks for the box's own speaker, or when handed to the sink otherwise. For
    each mic frame while we play, the reference window of `max_lag_s` before the frame is
    searched for the single delay and gain that best explain the frame (least squares: a
    one-tap echo model). What that model cannot explain is the residual. The frame counts as
    the visitor's only if the residual is louder than `margin * leak * |echo|`, where `leak` is
    the part of our own voice a one-tap model leaves in a real room (reverb, speaker
    distortion); otherwise its VAD probability is zeroed.

    A heuristic, not echo cancellation: strong reverb or a distorting speaker can still leak
    through (then the segmenter's raised thresholds while speaking are the second guard).
    """

    def __init__(self, *, leak: float = 0.1, margin: float = 2.0, max_lag_s: float = 0.3) -> None:
        self.leak = leak
        self.margin = margin
        self.reference = EchoReference(max_lag_s)

    @property
    def max_lag(self) -> int:
        return self.reference.max_lag

    def add(self, ref: F32, mic_now_sample: int) -> None:
        """`ref` (16 kHz) starts playing now, or right after what is already queued."""
        self.reference.add(ref, mic_now_sample)

    def clear(self) -> None:
        self.reference.clear()

    def active(self, sample: int) -> bool:
        """Reference audio may still be reaching the mic at this sample."""
        return self.reference.active(sample)

    def is_echo(self, frame: F32, end_sample: int) -> bool:
        n = len(frame)
        ref = self.reference.window(end_sample - n - self.max_lag, end_sample)
        e_mic = float(np.dot(frame, frame))
        if e_mic <= 1e-9:
            return False
        corr = np.correlate(ref.astype(np.float64), frame.astype(np.float64), mode="valid")
        sq = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
        e_ref = sq[n:] - sq[:-n]  # energy of each lagged reference window
        ok = e_ref > 1e-9
        if not np.any(ok):
            return False  # a pause in our own speech: nothing to explain
        explained = np.where(ok, corr**2 / np.where(ok, e_ref, 1.0), 0.0)
        k = int(np.argmax(explained))
        residual = max(e_mic - float(explained[k]), 0.0)
        echo = float(explained[k])  # energy of the fitted echo g * ref
        # In quiet stretches of our own speech the room's noise floor alone exceeds a fraction of
        # a faint echo: what is left must also be louder than a whisper to count as a visitor.
        floor = n * _RESIDUAL_FLOOR_RMS**2
        return residual <= max((self.margin * self.leak) ** 2 * echo, floor)


_RESIDUAL_FLOOR_RMS = 0.003  # ~ -50 dBFS


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


class WsSink:
    """Reply audio to a /ws client: `audio.start {turn, rate}`, binary PCM16 frames,
    `audio.end {turn}` (with `interrupted: true` on barge-in). The browser plays as it
    receives, so `drain` waits for the estimated end of playback."""

    FRAME_S = 0.25  # per binary frame: small enough to start playing at once

    def __init__(
        self,
        send_json: Callable[[dict[str, Any]], None],
        send_bytes: Callable[[bytes], None],
        turn: Callable[[], int],
    ) -> None:
        self._send_json = send_json
        self._send_bytes = send_bytes
        self._turn = turn
        self._open: int | None = None  # the turn whose audio is streaming
        self._ends_at = 0.0
        self.first_sample_at: float | None = None

    async def play(self, audio: F32, rate: int) -> None:
        now = trio.current_time()
        if self._open is None:
            self._open = self._turn()
            self._send_json({"type": "audio.start", "turn": self._open, "rate": rate})
            self.first_sample_at = now
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        step = 2 * int(rate * self.FRAME_S)
        for i in range(0, len(pcm), step):
            self._send_bytes(pcm[i : i + step])
        self._ends_at = max(self._ends_at, now) + len(audio) / rate
        await trio.lowlevel.checkpoint()

    def _end(self, interrupted: bool) -> None:
        if self._open is not None:
            msg: dict[str, Any] = {"type": "audio.end", "turn": self._open}
            if interrupted:
                msg["interrupted"] = True
            self._send_json(msg)
        self._open = None
        self.first_sample_at = None

    async def drain(self) -> None:
        self._end(False)
        await trio.sleep_until(self._ends_at)

    def stop(self) -> None:
        self._end(True)
        self._ends_at = 0.0


# -- the pipeline -----------------------------------------------------------------------------


@dataclass
class _AsrPass:
    start: float
    end: float
    final: bool
    stop: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    text: str | None = None
    compute_s: float = 0.0
    audio_s: float = 0.0


class _InFlight:
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


@dataclass
class VoiceTurn:
    """What one utterance became (for the demo's report and tests).

    `outcome` is the reply's (reply.done's; "interrupted" or "cancelled" when the turn was cut
    before it); `interrupted` says the turn was cut short, reply text or playback (the stored
    turn then says "interrupted"). `reply` grows with the reply text as it streams. `timings`
    are the stored ones once the turn ran to its end (with playback_end), else reply.done's."""

    transcript: str
    turn: int | None = None
    reply: str = ""
    outcome: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False


class VoicePipeline:
    def __init__(
        self,
        engine: VoiceEngine,
        runner: TurnRunner,
        conv: Conversation,
        emit: Emit,
        sink: AudioSink,
        settings: PipelineSettings,
        nursery: trio.Nursery,
        metrics: Metrics | None = None,
        far_end: FarEndTap | None = None,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.conv = conv
        self.emit = emit
        self.sink = sink
        self.settings = settings
        self.metrics = metrics
        self._nursery = nursery
        self._far_end = far_end  # what the box's own speaker plays, device-clocked
        self._vad = engine.new_vad()
        self._seg = Segmenter(settings.segmenter)
        self._seg.reset(0.0)
        keep = settings.segmenter.max_utterance_s + settings.segmenter.pre_roll_s + 2.0
        self._ring = AudioRing(keep)
        self._gate = EchoGate(
            leak=settings.echo_leak, margin=settings.echo_margin, max_lag_s=settings.echo_max_lag_s
        )
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples = 0  # samples fed = audio time * RATE
        self._wall: deque[tuple[float, float]] = deque(maxlen=_WALL_KEEP)
        self._utt_start = 0.0
        self._last_partial = 0.0
        self._partial: _AsrPass | None = None
        self._spec: _AsrPass | None = None
        self._turn_scope: trio.CancelScope | None = None
        self._leg: VoiceLeg | None = None
        self._turn_done = trio.Event()
        self._turn_done.set()
        self._speaking = False
        self._utterances = _InFlight()  # transcribed and answered: wait_idle()
        self.turns: list[VoiceTurn] = []
        self.barge_ins = 0
        self.echo_frames = 0
        self._prefetch = Prefetch()
        self._prefetches = _InFlight()

    @property
    def prefetch_hits(self) -> int:
        """Replies whose first chunk was synthesized during the hangover and then used."""
        return self._prefetch.hits

    # -- input -----------------------------------------------------------------------------

    @property
    def audio_time(self) -> float:
        return self._samples / RATE

    async def feed(self, audio: npt.ArrayLike | MicBlock) -> None:
        """Any number of 16 kHz float32 mono samples; full 32 ms frames are processed now.

        A `MicBlock` with a capture time also anchors the microphone's clock, on which the
        far-end tap (the box's own speaker) places the echo reference."""
        if isinstance(audio, MicBlock):
            if audio.t is not None:
                start = self._samples + len(self._pending)
                self._gate.reference.anchor(start, audio.t)
            audio = audio.samples
        a = np.asarray(audio, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._pending, a]) if len(self._pending) else a
        n = len(buf) // FRAME
        for i in range(n):
            await self._frame(buf[i * FRAME : (i + 1) * FRAME])
        self._pending = buf[n * FRAME :].copy()

    async def settle(self) -> None:
        """Wait for the ASR passes (partial, speculative final) and the reply prefetch in
        flight. A source faster than real time (tests) calls this between blocks to get what
        a live microphone would: real time lets them finish before the next audio."""
        for p in (self._partial, self._spec):
            if p is not None:
                await p.done.wait()
                await trio.lowlevel.checkpoint()  # let the pass's task deliver its result
        await self._prefetches.wait()

    async def end_of_input(self) -> None:
        """The source stopped (file end, `audio.end`): end an utterance in progress now."""
        self._pending = np.zeros(0, dtype=np.float32)
        silence = np.zeros(FRAME, dtype=np.float32)
        limit = int(self.settings.segmenter.hangover_s / FRAME_S) + 2
        for _ in range(limit):
            if self._seg.state == "waiting":
                return
            await self._frame(silence, prob=0.0)

    async def wait_idle(self) -> None:
        """Until every utterance fed so far has been transcribed and its turn finished."""
        await self._utterances.wait()

    def _wall_at(self, t: float) -> float:
        """When the frame containing audio time `t` arrived (trio clock)."""
        for t_end, wall in self._wall:
            if t_end >= t - 1e-9:
                return wall
        return trio.current_time()

    async def _frame(self, frame: F32, prob: float | None = None) -> None:
        self._ring.append(frame)
        self._samples += FRAME
        t = self.audio_time
        self._wall.append((t, trio.current_time()))
        if prob is None:
            prob = await self._vad.run(self._vad.model.prob, frame)
        if self._far_end is not None:
            self._gate.reference.sync(self._far_end)
        playing = self._gate.active(self._samples)
        self._seg.set_speaking(self._speaking or playing)
        if playing and self.settings.echo_gate and self._gate.is_echo(frame, self._samples):
            self.echo_frames += 1
            prob = 0.0
        for ev in self._seg.process(prob, t, FRAME_S):
            await self._on_event(ev, playing)
        if (
            self._seg.state != "waiting"
            and t - self._last_partial >= self.settings.partial_interval_s
            and self._partial is None
            and self._spec is None
            and t - self._utt_start >= _MIN_PARTIAL_S
        ):
            self._last_partial = t
            p = _AsrPass(self._utt_start, t, final=False)
            self._partial = p
            self._nursery.start_soon(self._run_partial, p)

    async def _on_event(self, ev: Event, playing: bool) -> None:
        match ev:
            case SpeechStarted(t=t):
                self._utt_start = t
                self._last_partial = t
                if self._speaking or playing or not self._turn_done.is_set():
                    self._barge_in(t)
                else:
                    await self._set_state(DialogEvent.SPEECH_STARTED)
            case SilenceStarted(t=t):
                if self._partial is not None:
                    self._partial.stop = True  # the final pass has priority on the ASR runner
                if self.settings.speculative_final:
                    self._spec = _AsrPass(self._utt_start, t, final=True)
                    self._nursery.start_soon(self._run_speculative, self._spec)
            case SpeechResumed():
                if self._spec is not None:
                    self._spec.stop = True
                    self._spec = None
            case SpeechEnded():
                spec, self._spec = self._spec, None
                if self._partial is not None:
                    self._partial.stop = True
                self._utterances.begin()
                self._nursery.start_soon(self._finish_utterance, ev, spec)
            case NoSpeechTimeout():
                pass

    async def _set_state(self, event: DialogEvent) -> None:
        try:
            self.conv.apply(event)
        except DialogError:
            return
        await self.emit({"type": "state", "state": self.conv.state.value})

    # -- ASR ---------------------------------------------------------------------------------

    async def _run_asr(self, p: _AsrPass) -> None:
        s = self.settings
        audio = self._ring.slice(
            p.start, p.end, pre_roll_s=s.segmenter.pre_roll_s, post_roll_s=s.post_roll_s
        )
        p.audio_s = len(audio) / RATE
        asr = self.engine.asr
        try:
            tr = await asr.run(asr.model.transcribe, audio, lambda: p.stop)
            p.text, p.compute_s = tr.text, tr.compute_s
        except TranscriptionAborted:
            pass
        except Exception:
            log.exception("asr pass failed")
        finally:
            p.done.set()

    async def _run_partial(self, p: _AsrPass) -> None:
        try:
            await self._run_asr(p)
        finally:
            self._partial = None
        if p.text and not p.stop and self._seg.state != "waiting":
            self._seg.set_complete_hint(looks_complete(p.text))
            await self.emit({"type": "transcript", "text": p.text, "final": False})

    async def _run_speculative(self, p: _AsrPass) -> None:
        await self._run_asr(p)
        # The whole utterance is transcribed while the visitor is still silent: if it reads as a
        # finished question, the segmenter may end the turn on the short hangover right away
        # (partials alone often stop a word short of the end).
        if p.text and not p.stop and self._spec is p and self._seg.state == "trailing":
            self._seg.set_complete_hint(looks_complete(p.text))
            self._nursery.start_soon(self._prefetch_reply, p.text)

    async def _prefetch_reply(self, question: str) -> None:
        """While the hangover runs: when the reply is predictable (a confident FAQ match), have
        its first chunk synthesized before the turn starts (~50-200 ms off the first sample);
        when the LLM will answer, have a local one evaluate the prompt now (TurnRunner.
        prepare_reply). A visitor who keeps talking only costs us that work."""
        self._prefetches.begin()
        try:
            answer = await self.runner.prepare_reply(self.conv, question)
            chunk = first_chunk(answer) if answer else None
            if chunk is None or not self._prefetch.begin(chunk):
                return
            audio = None
            try:
                tts = self.engine.tts
                audio = await tts.run(
                    synthesize_chunk, tts.model, chunk, self.settings.length_scale
                )
            except Exception:
                log.exception("prefetching the reply's first chunk failed (synthesized later)")
            finally:
                self._prefetch.finish(chunk, audio)
        finally:
            self._prefetches.end()

    async def _finish_utterance(self, ev: SpeechEnded, spec: _AsrPass | None) -> None:
        try:
            await self._finish(ev, spec)
        finally:
            self._utterances.end()

    async def _finish(self, ev: SpeechEnded, spec: _AsrPass | None) -> None:
        s = self.settings
        wall_end = self._wall_at(ev.end)
        wall_decided = self._wall_at(ev.t)
        if spec is None or spec.start != ev.start or abs(spec.end - ev.end) > 1e-6:
            if spec is not None:
                spec.stop = True
            spec = _AsrPass(ev.start, ev.end, final=True)
            self._nursery.start_soon(self._run_asr, spec)
        # The budget bounds our wait, not the pass: it polls `stop` and ends on its own.
        with trio.move_on_at(wall_decided + s.asr_s):
            await spec.done.wait()
        timings = {
            "vad_end_ms": round((wall_decided - wall_end) * 1000.0, 1),
            "asr_final_ms": round((trio.current_time() - wall_decided) * 1000.0, 1),
        }
        self._observe("vad_end", wall_decided - wall_end)
        self._observe("asr_final", trio.current_time() - wall_decided)
        if not spec.done.is_set():
            spec.stop = True
            log.warning("final ASR over its %.1f s budget; asking to repeat", s.asr_s)
            if self.metrics is not None:
                self.metrics.fallbacks.labels(reason="asr").inc()
            await self._set_state(DialogEvent.SPEECH_ABANDONED)
            await self.emit({"type": "error", "code": "asr_timeout", "message": s.retry_reply})
            await self._speak_only(s.retry_reply)
            self.turns.append(VoiceTurn("", outcome="asr_timeout", timings=timings))
            return
        text = (spec.text or "").strip()
        if spec.compute_s and spec.audio_s:
            timings["asr_rtf"] = round(spec.compute_s / spec.audio_s, 3)
        if not usable_transcript(text):
            log.info("utterance without usable words (%r): no turn", text)
            await self._set_state(DialogEvent.SPEECH_ABANDONED)
            self.turns.append(VoiceTurn(text, outcome="no_words", timings=timings))
            return
        await self.emit({"type": "transcript", "text": text, "final": True})
        # A previous turn (barge-in) must be gone before this one takes the session.
        await self._turn_done.wait()
        vt = VoiceTurn(text, timings=timings)
        self.turns.append(vt)
        await self._run_turn(vt, wall_end)

    async def _speak_only(self, text: str) -> None:
        speech = self._new_speech()
        speech.feed(text)
        speech.close()
        await speech.run()
        await self.sink.drain()

    # -- the turn ----------------------------------------------------------------------------

    def _new_speech(self) -> ReplySpeech:
        return ReplySpeech(
            self.engine.tts,
            self.sink,
            length_scale=self.settings.length_scale,
            # Without a device clock, the reference is placed when handed to the sink.
            on_audio=None if self._far_end else lambda ref: self._gate.add(ref, self._samples),
            prefetch=self._prefetch,
        )

    async def _run_turn(self, vt: VoiceTurn, wall_end: float) -> None:
        s = self.settings
        speech = self._new_speech()
        first_text_at: float | None = None
        held_state: dict[str, Any] | None = None
        done_seen = False
        leg = VoiceLeg(timings=dict(vt.timings))
        self._turn_done = trio.Event()

        def note_first_audio() -> None:
            at = speech.first_audio_at
            if at is None or "tts_first_audio" in leg.events:
                return
            leg.events["tts_first_audio"] = at
            tts_s = at - (first_text_at if first_text_at is not None else at)
            leg.timings["tts_first_audio_ms"] = round(tts_s * 1000.0, 1)
            leg.timings["voice_to_voice_ms"] = round((at - wall_end) * 1000.0, 1)
            self._observe("tts_first_audio", tts_s)
            self._observe("voice_to_voice", at - wall_end)

        async def watch_first_audio() -> None:
            # Also when a barge-in cuts the turn before reply.done: the stored trace then shows
            # how far the reply got (first audio, and playback_end at the cut).
            await speech.wait_first_audio()
            note_first_audio()

        async def first_audio() -> None:
            # Before reply.done: no more text, and the first sample is out (or the TTS budget
            # is spent), so reply.done's timings are complete.
            speech.close()
            with trio.move_on_after(s.tts_first_s):
                await speech.wait_first_audio()
            note_first_audio()
            if speech.first_audio_at is None:
                log.warning("no reply audio within %.1f s; the text is shown", s.tts_first_s)
                if self.metrics is not None:
                    self.metrics.fallbacks.labels(reason="tts").inc()

        async def playback() -> None:
            # After reply.done: every chunk synthesized and handed to the sink, then heard.
            await speech.finished.wait()
            await self.sink.drain()

        leg.first_audio = first_audio
        leg.playback = playback

        async def emit(msg: dict[str, Any]) -> None:
            nonlocal first_text_at, held_state, done_seen
            kind = msg.get("type")
            if kind == "reply.delta":
                vt.turn = msg["turn"]
                if first_text_at is None:
                    first_text_at = trio.current_time()
                if msg.get("reset"):
                    speech.restart()
                    vt.reply = ""
                speech.feed(str(msg["text"]))
                vt.reply += str(msg["text"])  # the partial reply, should the visitor cut in
            elif kind == "reply.done":
                done_seen = True
                vt.timings = dict(msg.get("timings", {}))
                vt.reply = str(msg.get("text", ""))
                vt.outcome = str(msg.get("outcome", ""))
            elif kind == "state" and done_seen and msg.get("state") == DialogState.IDLE.value:
                held_state = msg  # still talking: say idle when playback is over
                return
            await self.emit(msg)

        scope = trio.CancelScope()
        self._turn_scope = scope
        self._leg = leg
        completed = False
        try:
            # One cancel scope over the LLM stream, TTS and playback: a barge-in ends them all.
            with scope:
                async with self.runner.exclusive(self.conv.session_id):
                    async with trio.open_nursery() as n:
                        n.start_soon(speech.run)
                        n.start_soon(watch_first_audio)
                        self._speaking = True
                        result = await self.runner.run_text(
                            self.conv, vt.transcript, emit, source="voice", leg=leg
                        )
                        speech.close()
                    vt.timings = result.timings
                    completed = True
        finally:
            self._speaking = False
            self._turn_scope = None
            self._leg = None
            self._turn_done.set()
            if not completed or scope.cancel_called:
                completed = False
                vt.interrupted = True
                vt.outcome = vt.outcome or ("interrupted" if leg.interrupted else "cancelled")
                self.sink.stop()
        if completed and held_state is not None:
            await self.emit(held_state)

    def _barge_in(self, t: float) -> None:
        """The visitor spoke over us: stop the audio now, cancel the turn, listen."""
        self.barge_ins += 1
        if self.metrics is not None:
            self.metrics.barge_ins.inc()
        if self._leg is not None:
            self._leg.interrupted = True  # the turn is recorded as "interrupted", not "cancelled"
        if self._turn_scope is not None:
            self._turn_scope.cancel()
        self.sink.stop()
        self._gate.clear()
        last = self.turns[-1] if self.turns else None
        log.info(
            "barge-in: reply interrupted",
            extra={
                "session": self.conv.session_id,
                "turn": last.turn if last else None,
                "partial_reply": last.reply if last else "",
            },
        )
        self._observe("barge_in", trio.current_time() - self._wall_at(t))
        self._utterances.begin()
        self._nursery.start_soon(self._listen_after_barge_in)

    async def _listen_after_barge_in(self) -> None:
        try:
            await self._turn_done.wait()
            if self._seg.state != "waiting":
                await self._set_state(DialogEvent.SPEECH_STARTED)
        finally:
            self._utterances.end()

    def _observe(self, stage: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_stage(stage, max(0.0, seconds))


@asynccontextmanager
async def open_pipeline(
    engine: VoiceEngine,
    runner: TurnRunner,
    conv: Conversation,
    emit: Emit,
    sink: AudioSink,
    settings: PipelineSettings | None = None,
    metrics: Metrics | None = None,
    far_end: FarEndTap | None = None,
) -> AsyncIterator[VoicePipeline]:
    """A pipeline whose background work (ASR passes, turns) lives as long as the block."""
    async with trio.open_nursery() as nursery:
        pipe = VoicePipeline(
            engine,
            runner,
            conv,
            emit,
            sink,
            settings or PipelineSettings(),
            nursery,
            metrics,
            far_end,
        )
        try:
            yield pipe
        finally:
            nursery.cancel_scope.cancel()
