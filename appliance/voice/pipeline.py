"""One voice session: 16 kHz audio in -> VAD/endpoint -> ASR -> a turn -> reply speech out.

Audio time (samples fed / 16 kHz) drives the segmenter, the partial-ASR cadence and the echo
gate, so the same code runs on a live microphone, a browser stream and a file fed faster than
real time (tests). Wall time (trio clock) is used only for the latency figures: end of speech
is when its last voiced sample entered the microphone (the capture's ADC time, `FrameClock`),
or when its frame arrived for a source without a clock (a browser, a file).

Flow per utterance: SpeechStarted (barge-in if a turn is running or audio playing) ->
partial ASR passes every `partial_interval_s` of audio (`transcript {final:false}`, and the
turn-taking hint for the segmenter) -> SilenceStarted starts the final pass speculatively,
SpeechResumed aborts it -> SpeechEnded takes that pass (or runs one) under the `asr_s` budget
-> `transcript {final:true}` -> the spoken turn (`spoken_turn.SpokenTurn`). A barge-in cancels
one scope over the LLM stream, TTS and playback; the turn is recorded as "interrupted". Every
model call runs on a worker thread (ModelRunner).

What is here is listening's orchestration (frames, VAD, ASR scheduling, barge-in): one state
machine over shared utterance state, ~500 lines; its pure parts live in `listening`, `echo`
and `segmenter`, the reply side in `spoken_turn` and `speech`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from ..audio.farend import FarEndTap, MicBlock, trio_time
from ..config import VoiceConfig
from ..dialog import Conversation, DialogError, DialogEvent
from ..events import Emit, ErrorEvent, StateEvent, Transcript
from ..metrics import Metrics
from ..turns import TurnRunner, VoiceLeg
from .asr import TranscriptionAborted
from .echo import EchoGate
from .engine import VoiceEngine, bias_wake_phrase
from .listening import (
    FRAME,
    FRAME_S,
    RATE,
    AsrPass,
    AudioRing,
    FrameClock,
    InFlight,
    ListenGate,
    agreed,
    is_stop_request,
    loops,
    says_no_wake_phrase,
    speech_end,
    strip_wake_phrase,
    usable_transcript,
)
from .moonshine import GREEDY
from .segmenter import (
    Event,
    NoSpeechTimeout,
    Segmenter,
    SegmenterSettings,
    SilenceStarted,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
)
from .speech import (
    AudioSink,
    Prefetch,
    ReplySpeech,
    SpokenCache,
    first_chunk,
    synthesize_chunk,
)
from .spoken_turn import SpokenTurn, VoiceTurn
from .turntaking import looks_complete

__all__ = ["PipelineSettings", "VoicePipeline", "VoiceTurn", "open_pipeline"]

log = logging.getLogger("appliance.voice.pipeline")

F32 = npt.NDArray[np.float32]
_MIN_PARTIAL_S = 0.4  # shorter audio gives Moonshine nothing to work with
# How much wider than the segmenter's cut a final pass that heard nothing looks again.
_WIDER_PRE_S = 0.2
_WIDER_POST_S = 0.3
_BEAM_MAX_AUDIO_S = 10.0  # longer utterances: greedy final pass (see _run_asr)
_EMPTY: F32 = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class PipelineSettings:
    """The pipeline's settings; defaults and meanings are [voice]'s (config.VoiceConfig)."""

    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)
    post_roll_s: float = VoiceConfig.post_roll_s
    partial_interval_s: float = VoiceConfig.partial_interval_s
    speculative_final: bool = VoiceConfig.speculative_final
    settled_words: int = VoiceConfig.settled_words
    paused_words: int = VoiceConfig.paused_words
    asr_s: float = VoiceConfig.asr_s
    tts_first_s: float = VoiceConfig.tts_first_s
    length_scale: float = VoiceConfig.length_scale
    retry_reply: str = VoiceConfig.retry_reply
    echo_gate: bool = VoiceConfig.echo_gate
    echo_leak: float = VoiceConfig.echo_leak
    echo_margin: float = VoiceConfig.echo_margin
    echo_max_lag_s: float = VoiceConfig.echo_max_lag_s
    echo_taps: int = VoiceConfig.echo_taps

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
        spoken: SpokenCache | None = None,
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
            leak=settings.echo_leak,
            margin=settings.echo_margin,
            max_lag_s=settings.echo_max_lag_s,
            taps=settings.echo_taps,
        )
        self._pending = _EMPTY
        self._pending_detect = _EMPTY  # `detect` samples not yet a whole frame
        self._samples = 0  # samples fed = audio time * RATE
        self._clock = FrameClock()  # audio time -> wall time, ~33 s of frames
        self._utt_start = 0.0
        self._last_partial = 0.0
        self._partial: AsrPass | None = None
        self._spec: AsrPass | None = None
        # A speculative pass the visitor talked on after: left to finish, for its words.
        self._lingering: AsrPass | None = None
        # The last finished partial's token ids, and what it and the one before agreed on but
        # the last few words: (utterance start, token ids) each.
        self._heard: tuple[float, tuple[int, ...]] = (-1.0, ())
        self._settled: tuple[float, tuple[int, ...]] = (-1.0, ())
        self._turn_scope: trio.CancelScope | None = None
        self._leg: VoiceLeg | None = None
        self._turn_done = trio.Event()
        self._turn_done.set()
        self._speaking = False
        self._utterances = InFlight()  # transcribed and answered: wait_idle()
        self.turns: list[VoiceTurn] = []
        self.barge_ins = 0
        self.echo_frames = 0
        self._gate_log: deque[float | None] = deque(maxlen=8)  # residual / echo, last frames
        self._prefetch = Prefetch()
        self._spoken = spoken if spoken is not None else SpokenCache()
        self._first_sources: Counter[str] = Counter()  # see ReplySpeech.first_source
        self._prefetches = InFlight()
        # Who may start a turn (voice/listening.ListenGate): every utterance unless the owner
        # (the box's own microphone) sets wake word / touch modes.
        self.gate = ListenGate()
        self.wake_phrase = ""
        self._utt_opened = False  # the wake word ended inside the current utterance
        self._utt_barge = False  # the current utterance interrupted the box
        self._utt_shown = True  # the current utterance is shown (state, partials)
        self._utt_vouched = True  # ... and was let in before any wake word in it
        self.false_wakes = 0  # wakes whose utterance did not carry the wake phrase

    @property
    def echo_paths_ms(self) -> list[float]:
        """The echo paths the gate last learned from our own voice (direct sound first)."""
        return [round(d / RATE * 1000.0, 1) for d in self._gate.paths]

    @property
    def prefetch_hits(self) -> int:
        """Replies whose first chunk was synthesized during the hangover and then used."""
        return self._prefetch.hits

    @property
    def cache_hits(self) -> int:
        """This pipeline's replies whose first chunk came from the cache (said before, by any
        pipeline sharing it, or made ahead)."""
        return self._first_sources["cache"]

    # -- input -----------------------------------------------------------------------------

    @property
    def audio_time(self) -> float:
        return self._samples / RATE

    async def feed(
        self, audio: npt.ArrayLike | MicBlock, detect: npt.ArrayLike | None = None
    ) -> None:
        """Any number of 16 kHz float32 mono samples; full 32 ms frames are processed now.

        A `MicBlock` with a capture time also anchors the microphone's clock, on which the
        far-end tap (the box's own speaker) places the echo reference and the latency figures
        time the end of speech. `detect`: the same samples before the audio front end, on the
        same timeline, for VAD and the echo gate (ASR gets `audio`): an echo canceller that has
        not converged yet also pulls a visitor who talks over the reply down by 5-10 dB, enough
        to miss the barge-in."""
        start = self._samples + len(self._pending)
        spoken = None
        if isinstance(audio, MicBlock):
            if audio.t is not None:
                self._gate.reference.anchor(start, audio.t)
                spoken = trio_time(audio.t)
            audio = audio.samples
        self._clock.anchor(start, spoken)
        a = np.asarray(audio, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._pending, a]) if len(self._pending) else a
        d = buf
        if detect is not None:
            da = np.asarray(detect, dtype=np.float32).reshape(-1)
            if len(da) != len(a):
                raise ValueError(f"detect has {len(da)} samples for {len(a)} of audio")
            d = np.concatenate([self._pending_detect, da]) if len(self._pending_detect) else da
        n = len(buf) // FRAME
        for i in range(n):
            frame = buf[i * FRAME : (i + 1) * FRAME]
            await self._frame(
                frame, detect=None if detect is None else d[i * FRAME : (i + 1) * FRAME]
            )
        self._pending = buf[n * FRAME :].copy()
        self._pending_detect = d[n * FRAME :].copy() if detect is not None else _EMPTY

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
        self._pending = self._pending_detect = _EMPTY
        self._clock.anchor(self._samples, None)  # made-up silence: never spoken
        silence = np.zeros(FRAME, dtype=np.float32)
        limit = int(self.settings.segmenter.hangover_s / FRAME_S) + 2
        for _ in range(limit):
            if self._seg.state == "waiting":
                return
            await self._frame(silence, prob=0.0)

    async def wait_idle(self) -> None:
        """Until every utterance fed so far has been transcribed and its turn finished."""
        await self._utterances.wait()

    async def _frame(
        self, frame: F32, prob: float | None = None, detect: F32 | None = None
    ) -> None:
        self._ring.append(frame)
        heard = frame if detect is None else detect  # what VAD and the echo gate judge
        self._samples += FRAME
        t = self.audio_time
        self._clock.frame(self._samples, trio.current_time())
        if prob is None:
            prob = await self._vad.run(self._vad.model.prob, heard)
        if self._far_end is not None:
            self._gate.reference.sync(self._far_end)
        playing = self._gate.active(self._samples)
        self._seg.set_speaking(self._speaking or playing)
        if self._speaking or playing or self._seg.state != "waiting":
            self.engine.last_activity = trio.current_time()  # keeps background work off
        clear = False  # plainly a visitor's voice over ours: barge in sooner
        if playing and self.settings.echo_gate:
            verdict = self._gate.judge(heard, self._samples)
            fit = self._gate.last
            if fit is not None:  # for the barge-in log: what the gate saw just before
                self._gate_log.append(round(fit.residual / fit.echo, 3) if fit.echo else None)
            if verdict == "echo":
                self.echo_frames += 1
                prob = 0.0
            clear = verdict == "clear"
        for ev in self._seg.process(prob, t, FRAME_S, clear=clear):
            await self._on_event(ev, playing)
        if (
            self._seg.state != "waiting"
            and t - self._last_partial >= self.settings.partial_interval_s
            and self._partial is None
            and self._spec is None
            and t - self._utt_start >= _MIN_PARTIAL_S
        ):
            self._last_partial = t
            p = AsrPass(self._utt_start, t, final=False)
            self._partial = p
            self._nursery.start_soon(self._run_partial, p)

    async def _on_event(self, ev: Event, playing: bool) -> None:
        match ev:
            case SpeechStarted(t=t):
                self._utt_start = t
                self._last_partial = t
                self._utt_opened = False
                self._utt_barge = self._speaking or playing or not self._turn_done.is_set()
                # Talk the box is not listening to (no wake word, no tap, no follow-up) is
                # neither shown nor answered.
                self._utt_shown = self._utt_barge or self.gate.listening(t)
                self._utt_vouched = self._utt_shown  # admitted without a wake word
                if self._utt_barge:
                    self._barge_in(t)
                elif self._utt_shown:
                    await self._set_state(DialogEvent.SPEECH_STARTED)
            case SilenceStarted(t=t):
                if self._partial is not None:
                    self._partial.stop = True  # the final pass has priority on the ASR runner
                if self._lingering is not None:
                    self._lingering.stop = True
                    self._lingering = None
                if self.settings.speculative_final:
                    self._spec = self._final_pass(self._utt_start, t)
                    self._nursery.start_soon(self._run_speculative, self._spec)
            case SpeechResumed():
                spec, self._spec = self._spec, None
                if spec is None:
                    pass
                elif not self.settings.paused_words:
                    spec.stop = True
                elif spec.done.is_set():
                    self._settle_paused(spec)
                else:
                    self._lingering = spec  # its words may still start the final pass
            case SpeechEnded():
                spec, self._spec = self._spec, None
                if self._lingering is not None:
                    self._lingering.stop = True
                    self._lingering = None
                if self._partial is not None:
                    self._partial.stop = True
                if not self._admitted(ev):
                    if spec is not None:
                        spec.stop = True
                    if self._utt_shown:
                        await self._set_state(DialogEvent.SPEECH_ABANDONED)
                    self.turns.append(VoiceTurn("", outcome="not_addressed"))
                    return
                self._utterances.begin()
                self._nursery.start_soon(
                    self._finish_utterance,
                    ev,
                    spec,
                    self._utt_barge,
                    self._utt_opened,
                    self._utt_vouched,
                )
            case NoSpeechTimeout():
                pass

    def _admitted(self, ev: SpeechEnded) -> bool:
        """Does the utterance that just ended become a turn (ListenGate)? A barge-in always
        does: the visitor is talking to the box."""
        if self._utt_barge:
            return True
        audio = self._ring.slice(ev.start, ev.end, pre_roll_s=0.0, post_roll_s=0.0)
        ok = self.gate.admit(ev.start, _speech_dbfs(audio), self._utt_opened)
        if not ok:
            log.debug("utterance not addressed to the box: no turn")
        return ok

    async def wake(self) -> None:
        """The wake word was heard (it ends now): the utterance it ends, or the next one that
        starts within the gate's window, may become a turn."""
        self.gate.open(self.audio_time)
        if self._seg.state != "waiting":
            self._utt_opened = True
            if not self._utt_shown:
                self._utt_shown = True
                await self._set_state(DialogEvent.SPEECH_STARTED)

    def listen(self) -> None:
        """Touch to talk: the next utterance (within the gate's window) may become a turn."""
        self.gate.open(self.audio_time)

    async def _set_state(self, event: DialogEvent) -> None:
        try:
            self.conv.apply(event)
        except DialogError:
            return
        await self.emit(StateEvent(self.conv.state.value))

    # -- ASR ---------------------------------------------------------------------------------

    async def _run_asr(self, p: AsrPass) -> None:
        s = self.settings
        audio = self._ring.slice(
            p.start, p.end, pre_roll_s=s.segmenter.pre_roll_s, post_roll_s=s.post_roll_s
        )
        p.audio_s = len(audio) / RATE
        asr = self.engine.asr
        try:
            # The final passes search toward the FAQ now loaded (a no-op unless it changed).
            # A long ramble gets the greedy search: a beam's cost grows with the tokens, and
            # over the ASR budget the visitor would be asked to say it all again.
            beam = p.final and p.audio_s <= _BEAM_MAX_AUDIO_S
            options = None if beam else GREEDY
            if beam:
                await self.engine.sync_bias(
                    self.runner.knowledge, bias_wake_phrase(self.runner.cfg)
                )
            tr = await asr.run(asr.model.transcribe, audio, lambda: p.stop, options, p.prefix)
            p.text, p.alternatives, p.compute_s = tr.text, tr.alternatives, tr.compute_s
            p.token_ids = tr.token_ids
        except TranscriptionAborted:
            pass
        except Exception:
            log.exception("asr pass failed")
        finally:
            p.done.set()

    def _final_pass(self, start: float, end: float) -> AsrPass:
        """A final pass over [start, end], from the words settled so far in this utterance:
        what the last two partials agreed on (`settled_words`) or a speculative pass heard
        up to a pause (`paused_words`)."""
        since, prefix = self._settled
        return AsrPass(start, end, final=True, prefix=prefix if since == start else ())

    def _wider_pass(self, ev: SpeechEnded) -> AsrPass:
        """A final pass, started, over a wider cut of an utterance in which the first heard
        nothing: the VAD's onset came late or its end early, and Moonshine hears nothing in a
        word cut in two ("What times are the star shows in the dome?" with its first 0.07 s
        cut: nothing; 0.1 s more before it: every word). Not for a barge-in: over our own
        reply, nothing heard is what the echo should give."""
        log.info("the final pass heard nothing: again over a wider cut")
        p = AsrPass(ev.start - _WIDER_PRE_S, min(ev.end + _WIDER_POST_S, ev.t), final=True)
        self._nursery.start_soon(self._run_asr, p)
        return p

    def _scratch_pass(self, p: AsrPass) -> AsrPass:
        """A final pass, started, over `p`'s cut from scratch: `p` started from settled words
        and then said a phrase over and over (held-out 16: "… not bringing the car and we
        are not bringing the car and …"), the decoder lost in the audio after the prefix."""
        log.info("the final pass from settled words looped: again from scratch")
        again = AsrPass(p.start, p.end, final=True)
        self._nursery.start_soon(self._run_asr, again)
        return again

    async def _run_partial(self, p: AsrPass) -> None:
        try:
            await self._run_asr(p)
        finally:
            self._partial = None
        n = self.settings.settled_words
        if n and p.token_ids and not p.stop:
            since, before = self._heard
            both = agreed(before, p.token_ids) if since == p.start else ()
            self._heard = (p.start, p.token_ids)
            self._settled = (p.start, self.engine.asr.model.tokenizer.settled(both, n))
        if p.text and not p.stop and self._seg.state != "waiting":
            self._seg.set_complete_hint(looks_complete(p.text))
            if self._utt_shown:
                await self.emit(Transcript(p.text, final=False))

    def _settle_paused(self, p: AsrPass) -> None:
        """The visitor talked on after the pause `p` transcribed up to: what it heard, but its
        last `paused_words` words, is where the final pass will start (when that is more than
        the utterance has settled)."""
        if not p.token_ids or p.stop or p.start != self._utt_start:
            return
        words = self.engine.asr.model.tokenizer.settled(p.token_ids, self.settings.paused_words)
        since, before = self._settled
        if since != p.start or len(words) > len(before):
            self._settled = (p.start, words)

    async def _run_speculative(self, p: AsrPass) -> None:
        await self._run_asr(p)
        if p is self._lingering:
            self._lingering = None
            self._settle_paused(p)
            return
        # The whole utterance is transcribed while the visitor is still silent: if it reads as a
        # finished question, the segmenter may end the turn on the short hangover right away
        # (partials alone often stop a word short of the end).
        if p.text and not p.stop and self._spec is p and self._seg.state == "trailing":
            self._seg.set_complete_hint(looks_complete(p.text))
            self._nursery.start_soon(self._prefetch_reply, p.text, p.alternatives)

    async def _prefetch_reply(self, question: str, alternatives: tuple[str, ...] = ()) -> None:
        """While the hangover runs: when the reply is predictable (a confident FAQ match), have
        its first chunk synthesized before the turn starts (~50-200 ms off the first sample);
        when the LLM will answer, have a local one evaluate the prompt now (TurnRunner.
        prepare_reply). A visitor who keeps talking only costs us that work."""
        self._prefetches.begin()
        try:
            answer = await self.runner.prepare_reply(self.conv, question, alternatives)
            chunk = first_chunk(answer) if answer else None
            model, speed = self.engine.tts.model, self.settings.length_scale
            if chunk is None or self._spoken.holds(model, chunk, speed):
                return  # nothing to say, or said before: the turn takes it from the cache
            if not self._prefetch.begin(chunk):
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

    async def _finish_utterance(
        self, ev: SpeechEnded, spec: AsrPass | None, barge: bool, woken: bool, vouched: bool
    ) -> None:
        try:
            await self._finish(ev, spec, barge, woken, vouched)
        finally:
            self._utterances.end()

    async def _finish(
        self,
        ev: SpeechEnded,
        spec: AsrPass | None,
        barge: bool = False,
        woken: bool = False,
        vouched: bool = True,
    ) -> None:
        """`woken`: a wake word ended inside the utterance; `vouched`: it was let in before
        that (a follow-up, a tap, a barge-in), so it needs no wake phrase in its words."""
        s = self.settings
        now = trio.current_time()
        # Spoken (the microphone's clock, at the last loud sample) vs decided (when the
        # pipeline had the frame): vad_end_ms is the hangover, the VAD's own lag behind the
        # voice and the capture path's latency.
        wall_end = self._clock.spoken_at(self._speech_end(ev), now)
        wall_decided = self._clock.arrived_at(ev.t, now)
        if spec is None or spec.start != ev.start or abs(spec.end - ev.end) > 1e-6:
            if spec is not None:
                spec.stop = True
            spec = self._final_pass(ev.start, ev.end)
            self._nursery.start_soon(self._run_asr, spec)
        # The budget bounds our wait, not the pass: it polls `stop` and ends on its own.
        wider = again = False
        with trio.move_on_at(wall_decided + s.asr_s):
            await spec.done.wait()
            if spec.prefix and not spec.stop and loops(spec.text or ""):
                spec, again = self._scratch_pass(spec), True
                await spec.done.wait()
            if not barge and not spec.stop and not (spec.text or "").strip():
                spec, wider = self._wider_pass(ev), True
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
            await self.emit(ErrorEvent("asr_timeout", s.retry_reply))
            await self._speak_only(s.retry_reply)
            self.turns.append(VoiceTurn("", outcome="asr_timeout", timings=timings))
            return
        text = (spec.text or "").strip()
        alternatives = spec.alternatives
        if spec.compute_s and spec.audio_s:
            timings["asr_rtf"] = round(spec.compute_s / spec.audio_s, 3)
        if spec.prefix:
            timings["asr_settled_tokens"] = len(spec.prefix)  # read, not searched
        if wider:
            timings["asr_wider"] = 1
        if again:
            timings["asr_from_scratch"] = 1
        if woken and self.wake_phrase:
            if not vouched and says_no_wake_phrase(text, self.wake_phrase):
                # The detector fired on "...my dog..." (its near misses: "my <noun>"), and
                # nobody said the phrase: a false wake, not a visitor talking to the box.
                log.info("wake word not in the transcript: a false wake, no turn")
                await self._set_state(DialogEvent.SPEECH_ABANDONED)
                self.false_wakes += 1
                self.turns.append(VoiceTurn("", outcome="false_wake", timings=timings))
                return
            text = strip_wake_phrase(text, self.wake_phrase)
            alternatives = tuple(strip_wake_phrase(a, self.wake_phrase) for a in alternatives)
            if not usable_transcript(text):  # the wake word alone: the question follows
                self.gate.open(self.audio_time)
        if barge and is_stop_request(text, barged_in=True):
            log.info("the visitor asked the box to stop: no turn")
            await self._set_state(DialogEvent.SPEECH_ABANDONED)
            self.turns.append(VoiceTurn(text, outcome="stopped", timings=timings))
            return
        if not usable_transcript(text):
            log.info("utterance without usable words: no turn")
            log.debug("the unusable utterance: %r", text)  # visitor speech: debug only
            await self._set_state(DialogEvent.SPEECH_ABANDONED)
            self.turns.append(VoiceTurn(text, outcome="no_words", timings=timings))
            return
        await self.emit(Transcript(text, final=True))
        # A previous turn (barge-in) must be gone before this one takes the session.
        await self._turn_done.wait()
        vt = VoiceTurn(text, timings=timings, alternatives=alternatives)
        self.turns.append(vt)
        await self._run_turn(vt, wall_end)

    def _speech_end(self, ev: SpeechEnded) -> float:
        """Audio time where the voice stopped (`speech_end`), for the latency figures only:
        ASR keeps the VAD's segment. The ring holds the whole utterance and its hangover."""
        audio = self._ring.slice(ev.start, ev.t, pre_roll_s=0.0, post_roll_s=0.0)
        return ev.start + speech_end(audio, round((ev.end - ev.start) * RATE)) / RATE

    async def _speak_only(self, text: str) -> None:
        speech = self._new_speech()
        speech.feed(text)
        speech.close()
        try:
            await speech.run()
        finally:
            self._count_first_chunk(speech)
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
            cache=self._spoken,
        )

    def _count_first_chunk(self, speech: ReplySpeech) -> None:
        if speech.first_source is None:
            return
        self._first_sources[speech.first_source] += 1
        if self.metrics is not None:
            self.metrics.reply_first_chunk.labels(source=speech.first_source).inc()

    async def _run_turn(self, vt: VoiceTurn, wall_end: float) -> None:
        speech = self._new_speech()
        spoken = SpokenTurn(
            vt,
            speech,
            self.sink,
            self.emit,
            wall_end=wall_end,
            tts_first_s=self.settings.tts_first_s,
            observe=self._observe,
            metrics=self.metrics,
        )
        self._turn_done = trio.Event()
        scope = trio.CancelScope()
        self._turn_scope = scope
        self._leg = spoken.leg
        completed = False
        try:
            # One cancel scope over the LLM stream, TTS and playback: a barge-in ends them all.
            with scope:
                async with self.runner.exclusive(self.conv.session_id):
                    self._speaking = True
                    result = await spoken.run(self.runner, self.conv)
                    vt.timings = result.timings
                    completed = True
        finally:
            self._count_first_chunk(speech)
            self._speaking = False
            self._turn_scope = None
            self._leg = None
            self._turn_done.set()
            self.gate.reply_done(self.audio_time)
            if not completed or scope.cancel_called:
                completed = False
                vt.interrupted = True
                vt.outcome = vt.outcome or (
                    "interrupted" if spoken.leg.interrupted else "cancelled"
                )
                self.sink.stop()
        if completed and spoken.held_state is not None:
            await self.emit(spoken.held_state)

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
        now = trio.current_time()
        onset = now - self._clock.spoken_at(t, now)
        log.info(
            "barge-in: reply interrupted",
            extra={
                "session": self.conv.session_id,
                "turn": last.turn if last else None,
                "partial_reply": last.reply if last else "",
                "residual_over_echo": list(self._gate_log),
                # where the time to stop goes: the voice's onset -> this decision, and how far
                # the frame that decided lags the microphone (capture buffers, a busy loop)
                "onset_to_decision_ms": round(onset * 1000, 1),
                "frame_lag_ms": round(
                    (now - self._clock.spoken_at(self.audio_time, now)) * 1000, 1
                ),
            },
        )
        self._observe("barge_in", onset)
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
    spoken: SpokenCache | None = None,
) -> AsyncIterator[VoicePipeline]:
    """A pipeline whose background work (ASR passes, turns) lives as long as the block.
    `spoken`: the cache of replies' first chunks to share (`VoiceEngine.spoken` in the
    service); None = one of its own."""
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
            spoken,
        )
        try:
            yield pipe
        finally:
            nursery.cancel_scope.cancel()


def _speech_dbfs(audio: npt.NDArray[np.float32]) -> float:
    """How loud an utterance is: the 90th percentile of its 32 ms frames' RMS, in dBFS (the
    voiced frames, not the pauses between words)."""
    n = len(audio) // FRAME
    if n == 0:
        return -120.0
    frames = audio[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return float(20.0 * np.log10(max(float(np.percentile(rms, 90)), 1e-6)))
