"""One spoken reply: a text turn (TurnRunner.run_text) whose reply is also synthesized and played.

The turn's events pass through `emit` here: reply text feeds TTS as it streams; `reply.done`
waits (VoiceLeg.first_audio) until the first reply sample is out, so its timings are complete;
the `idle` state after `reply.done` is held back until playback ends (the box is still talking);
the turn is recorded after playback (VoiceLeg.playback), so the stored trace is whole. The
caller owns the cancel scope: a barge-in cancels the LLM stream, TTS and playback together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..dialog import Conversation, DialogState
from ..events import Emit, ReplyDelta, ReplyDone, ServerEvent, StateEvent
from ..metrics import Metrics
from ..turns import TurnResult, TurnRunner, VoiceLeg
from .speech import AudioSink, ReplySpeech

__all__ = ["SpokenTurn", "VoiceTurn"]

log = logging.getLogger("appliance.voice.turn")


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
    alternatives: tuple[str, ...] = ()  # ASR's other hypotheses of `transcript`, best first


class SpokenTurn:
    def __init__(
        self,
        vt: VoiceTurn,
        speech: ReplySpeech,
        sink: AudioSink,
        emit: Emit,
        *,
        wall_end: float,
        tts_first_s: float,
        observe: Callable[[str, float], None],
        metrics: Metrics | None = None,
    ) -> None:
        self.vt = vt
        self.speech = speech
        self.sink = sink
        self._emit = emit
        # When the visitor stopped speaking (trio clock; the microphone's ADC time when the
        # source has a clock), so voice_to_voice_ms = first_audio_at - wall_end is what a
        # recording of both would show.
        self.wall_end = wall_end
        self.tts_first_s = tts_first_s
        self._observe = observe
        self.metrics = metrics
        self.first_text_at: float | None = None
        self.held_state: StateEvent | None = None  # `idle`, sent when playback is over
        self.done_seen = False
        self.leg = VoiceLeg(timings=dict(vt.timings))
        self.leg.first_audio = self.first_audio
        self.leg.playback = self.playback

    async def run(self, runner: TurnRunner, conv: Conversation) -> TurnResult:
        """The turn, with TTS running beside it (the caller holds the session's slot)."""
        async with trio.open_nursery() as n:
            n.start_soon(self.speech.run)
            n.start_soon(self._watch_first_audio)
            result = await runner.run_text(
                conv,
                self.vt.transcript,
                self.emit,
                source="voice",
                leg=self.leg,
                alternatives=self.vt.alternatives,
            )
            self.speech.close()
        return result

    def _note_first_audio(self) -> None:
        at = self.speech.first_audio_at
        leg = self.leg
        if at is None or "tts_first_audio" in leg.events:
            return
        leg.events["tts_first_audio"] = at
        tts_s = at - (self.first_text_at if self.first_text_at is not None else at)
        leg.timings["tts_first_audio_ms"] = round(tts_s * 1000.0, 1)
        leg.timings["voice_to_voice_ms"] = round((at - self.wall_end) * 1000.0, 1)
        self._observe("tts_first_audio", tts_s)
        self._observe("voice_to_voice", at - self.wall_end)

    async def _watch_first_audio(self) -> None:
        # Also when a barge-in cuts the turn before reply.done: the stored trace then shows how
        # far the reply got (first audio, and playback_end at the cut).
        await self.speech.wait_first_audio()
        self._note_first_audio()

    async def first_audio(self) -> None:
        """Before reply.done: no more text, and the first sample is out (or the TTS budget is
        spent), so reply.done's timings are complete."""
        self.speech.close()
        with trio.move_on_after(self.tts_first_s):
            await self.speech.wait_first_audio()
        self._note_first_audio()
        if self.speech.first_audio_at is None:
            log.warning("no reply audio within %.1f s; the text is shown", self.tts_first_s)
            if self.metrics is not None:
                self.metrics.fallbacks.labels(reason="tts").inc()

    async def playback(self) -> None:
        """After reply.done: every chunk synthesized and handed to the sink, then heard."""
        await self.speech.finished.wait()
        await self.sink.drain()

    async def emit(self, ev: ServerEvent) -> None:
        vt = self.vt
        if isinstance(ev, ReplyDelta):
            vt.turn = ev.turn
            if self.first_text_at is None:
                self.first_text_at = trio.current_time()
            if ev.reset:
                self.speech.restart()
                vt.reply = ""
            self.speech.feed(ev.text)
            vt.reply += ev.text  # the partial reply, should the visitor cut in
        elif isinstance(ev, ReplyDone):
            self.done_seen = True
            vt.timings = dict(ev.timings)
            vt.reply = ev.text
            vt.outcome = ev.outcome
        elif isinstance(ev, StateEvent) and self.done_seen and ev.state == DialogState.IDLE.value:
            self.held_state = ev  # still talking: say idle when playback is over
            return
        await self._emit(ev)
