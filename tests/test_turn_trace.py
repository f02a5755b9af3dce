"""Per-turn trace and barge-in outcomes in the conversation log.

A turn is recorded once, at its real end: for a voice turn that is after playback (or the
barge-in that cut it), with the voice pipeline's stage durations, the turn's own marks, the first
reply audio and the end of playback. A barge-in is stored as "interrupted" (before or after
reply.done); a typed cancel stays "cancelled". Turn-level tests drive `run_text` with a
`VoiceLeg` whose hooks are plain awaitables; pipeline tests run the real models (Silero,
Moonshine, Piper) against the scripted LLM over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from support import make_config
from test_pipeline import REPLY, Harness, ListSink, engine, feed, silence
from trio.testing import MockClock
from voicefixtures import speech_16k

from appliance.config import Config
from appliance.demo import turn_stack
from appliance.dialog import Conversation, DialogEvent, DialogState, SessionRegistry
from appliance.events import ServerEvent, to_wire
from appliance.fakes.scripted_llm import Script, ScriptedLLM
from appliance.metrics import Metrics
from appliance.store import AsyncStore, Store, TurnRecord
from appliance.turns import TurnRunner, VoiceLeg
from appliance.voice.pipeline import open_pipeline

WHOLE = REPLY.strip()
VOICE_KEYS = ("vad_end_ms", "asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms")


class Logged:
    """A TurnRunner (the service's turn machinery, warmed up) writing to a real SQLite log."""

    def __init__(self, runner: TurnRunner, astore: AsyncStore, store: Store) -> None:
        self.runner = runner
        self.astore = astore
        self.store = store

    @property
    def metrics(self) -> Metrics:
        return self.runner.metrics

    async def rows(self) -> list[TurnRecord]:
        """Every turn written so far, oldest first."""
        await self.astore.flush()
        rows = await trio.to_thread.run_sync(self.store.recent_turns, 100)
        return sorted(rows, key=lambda r: (r.session, r.turn))

    def turns_counted(self, outcome: str, source: str) -> float:
        labels = {"outcome": outcome, "source": source}
        value = self.metrics.registry.get_sample_value("appliance_turns_total", labels)
        return value or 0.0

    def conversation(self) -> Conversation:
        reg = SessionRegistry(idle_reset_s=60, history_turns=2)
        conv, _ = reg.resume_or_create(None, trio.current_time())
        return conv


def config(tmp_path: Path, llm: ScriptedLLM) -> Config:
    # A stalled stream stays silent (no stall/turn budget runs out) until the test cancels it.
    budgets = {"first_token_s": 5.0, "stall_s": 60.0, "turn_s": 90.0}
    return make_config(
        tmp_path, [{"name": "scripted", "url": llm.url, "model": "m"}], budgets=budgets
    )


@pytest.fixture
async def logged(llm: ScriptedLLM, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Logged]:
    llm.script = Script(reply=REPLY)
    store = Store(tmp_path / "trace.db")
    astore = AsyncStore(store)
    await nursery.start(astore.run)
    async with turn_stack(config(tmp_path, llm), Metrics()) as runner:
        runner.store = astore
        yield Logged(runner, astore, store)


class Emitted:
    def __init__(self) -> None:
        self.msgs: list[dict[str, Any]] = []
        self.first_delta = trio.Event()

    async def emit(self, ev: ServerEvent) -> None:
        msg = to_wire(ev)
        self.msgs.append(msg)
        if msg["type"] == "reply.delta":
            self.first_delta.set()
        await trio.lowlevel.checkpoint()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m["type"] == kind]

    def reply_text(self) -> str:
        return "".join(m["text"] for m in self.of("reply.delta")).strip()


async def run_cancelled(
    logged: Logged,
    conv: Conversation,
    out: Emitted,
    cancel_when: trio.Event,
    leg: VoiceLeg | None = None,
    before_cancel: Any = None,
) -> None:
    """Run a turn the way the transports do (holding the session's slot) and cancel it, as a
    stop button or a barge-in does, once `cancel_when` is set."""
    runner = logged.runner

    async def turn() -> None:
        async with runner.exclusive(conv.session_id):
            source = "voice" if leg is not None else "text"
            await runner.run_text(conv, "When do you open?", out.emit, source=source, leg=leg)

    async with trio.open_nursery() as n:
        n.start_soon(turn)
        with trio.fail_after(10):
            await cancel_when.wait()
        if before_cancel is not None:
            before_cancel()
        assert runner.cancel(conv.session_id)


# -- run_text with and without a voice leg ----------------------------------------------------


async def test_text_cancel_is_still_stored_as_cancelled(logged: Logged, llm: ScriptedLLM) -> None:
    llm.script = Script(mode="stall", reply=REPLY, stall_after_tokens=6)
    conv, out = logged.conversation(), Emitted()
    await run_cancelled(logged, conv, out, out.first_delta)
    [row] = await logged.rows()
    assert row.outcome == "cancelled" and row.source == "text"
    assert row.reply_text == out.reply_text() and WHOLE.startswith(row.reply_text)
    assert out.of("reply.done") == []
    assert "playback_end" not in row.timings and "total" in row.timings
    assert logged.turns_counted("cancelled", "text") == 1
    assert logged.turns_counted("interrupted", "text") == 0
    assert conv.state is DialogState.IDLE


async def test_barge_in_while_the_llm_streams_is_stored_as_interrupted(
    logged: Logged, llm: ScriptedLLM
) -> None:
    llm.script = Script(mode="stall", reply=REPLY, stall_after_tokens=6)
    conv, out = logged.conversation(), Emitted()
    leg = VoiceLeg(timings={"vad_end_ms": 310.0, "asr_final_ms": 95.0})

    def barge_in() -> None:
        leg.interrupted = True  # what the pipeline does before cancelling the turn

    await run_cancelled(logged, conv, out, out.first_delta, leg, barge_in)
    [row] = await logged.rows()
    assert row.outcome == "interrupted" and row.source == "voice"
    assert row.reply_text == out.reply_text() and row.reply_text
    assert WHOLE.startswith(row.reply_text) and len(row.reply_text) < len(WHOLE)
    assert out.of("reply.done") == []
    # The voice side of the trace is kept even though the turn never finished.
    assert row.timings["vad_end_ms"] == 310.0 and row.timings["asr_final_ms"] == 95.0
    assert "llm_first_token_ms" in row.timings
    assert "playback_end" not in row.timings  # no reply audio had started
    assert logged.turns_counted("interrupted", "voice") == 1
    assert logged.turns_counted("cancelled", "voice") == 0
    assert conv.state is DialogState.IDLE
    with trio.fail_after(10):
        await llm.wait_idle()
    assert llm.aborted == 1  # the LLM stream was cancelled with the turn


async def test_cancel_during_playback_is_interrupted_with_the_whole_reply(
    logged: Logged,
) -> None:
    conv, out = logged.conversation(), Emitted()
    playing = trio.Event()
    leg = VoiceLeg(timings={"vad_end_ms": 300.0, "asr_final_ms": 120.0, "asr_rtf": 0.08})

    async def first_audio() -> None:
        leg.events["tts_first_audio"] = trio.current_time()
        await trio.lowlevel.checkpoint()

    async def playback() -> None:
        playing.set()
        await trio.sleep_forever()  # "heard" until the barge-in

    leg.first_audio, leg.playback = first_audio, playback

    def next_utterance_starts() -> None:
        # The visitor's new utterance moves the dialog on (idle -> listening) before the old
        # turn's cancel lands: the old turn must not drag it back to idle with a second CANCEL.
        leg.interrupted = True
        conv.apply(DialogEvent.SPEECH_STARTED)

    await run_cancelled(logged, conv, out, playing, leg, next_utterance_starts)
    assert conv.state is DialogState.LISTENING
    [done] = out.of("reply.done")
    assert done["outcome"] == "ok" and done["text"] == WHOLE
    [row] = await logged.rows()
    assert row.outcome == "interrupted" and row.reply_text == WHOLE
    t = row.timings
    assert t["playback_end"] >= t["tts_first_audio"] >= t["total"]
    assert "playback_end" not in done["timings"]  # sent before playback ended
    assert {k: v for k, v in t.items() if k != "playback_end"} == done["timings"]
    assert logged.turns_counted("interrupted", "voice") == 1
    assert logged.turns_counted("ok", "voice") == 0
    # Text and audio were delivered before the cut: the exchange stays in the context.
    assert [e.assistant for e in conv.history] == [WHOLE]


async def test_voice_leg_marks_are_ms_since_the_turn_began(
    logged: Logged, mock_clock: MockClock
) -> None:
    """First audio 250 ms after the text is done, playback of 1.5 s: exact on the mock clock."""
    conv, out = logged.conversation(), Emitted()
    leg = VoiceLeg(timings={"vad_end_ms": 280.0, "asr_final_ms": 140.0})
    order: list[str] = []

    async def first_audio() -> None:
        await trio.sleep(0.25)
        leg.events["tts_first_audio"] = trio.current_time()
        leg.timings["tts_first_audio_ms"] = 180.0
        order.append("first_audio")

    async def playback() -> None:
        order.append("playback")
        await trio.sleep(1.5)
        assert await logged.rows() == []  # nothing recorded before the real end of the turn

    leg.first_audio, leg.playback = first_audio, playback

    async def emit(msg: ServerEvent) -> None:
        if msg.type == "reply.done":
            order.append("reply.done")
        await out.emit(msg)

    async with logged.runner.exclusive(conv.session_id):
        result = await logged.runner.run_text(conv, "Hi?", emit, source="voice", leg=leg)
    assert order == ["first_audio", "reply.done", "playback"]
    [row] = await logged.rows()
    assert row.outcome == "ok" and result.outcome == "ok" and row.timings == result.timings
    t = row.timings
    assert t["tts_first_audio"] - t["total"] == pytest.approx(250.0, abs=0.02)
    assert t["playback_end"] - t["tts_first_audio"] == pytest.approx(1500.0, abs=0.02)
    assert t["llm_first_token_ms"] == t["llm_first_token"]
    [done] = out.of("reply.done")
    assert done["timings"]["tts_first_audio"] == t["tts_first_audio"]
    assert done["timings"]["vad_end_ms"] == 280.0 and done["timings"]["tts_first_audio_ms"] == 180.0
    assert "playback_end" not in done["timings"]
    assert logged.turns_counted("ok", "voice") == 1


async def test_a_spoken_question_found_only_in_another_hearing_is_asked_back(
    llm: ScriptedLLM, tmp_path: Path
) -> None:
    """ASR's other hypotheses reach the answer policy: the best one alone matches nothing and
    would be declined, the runner-up is the toilets; the visitor is asked."""
    cfg = make_config(
        tmp_path, [{"name": "scripted", "url": llm.url, "model": "m"}],
        # Sound-alike repair off: it would find the toilets in "tally lets" by itself.
        knowledge={"semantic": True, "answer_mode": "faq", "soundalike": False},
    )  # fmt: skip
    reg = SessionRegistry(idle_reset_s=60, history_turns=2)
    async with turn_stack(cfg, Metrics()) as runner:
        for alternatives in ((), ("Where are the toilets?", "Where are the tally let?")):
            conv, out = reg.resume_or_create(None, trio.current_time())[0], Emitted()
            async with runner.exclusive(conv.session_id):
                await runner.run_text(
                    conv, "Where are the tally lets?", out.emit, source="voice",
                    alternatives=alternatives,
                )  # fmt: skip
            [done] = out.of("reply.done")
            if not alternatives:
                assert done["kind"] == "decline", done  # heard one way only: nothing found
                continue
            assert done["kind"] == "clarify", done
            assert [c["label"] for c in done["choices"]] == ["Where are the toilets?"]


# -- the voice pipeline on real models ---------------------------------------------------------


class VoiceHarness(Harness):
    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.first_delta = trio.Event()

    async def emit(self, ev: ServerEvent) -> None:
        if ev.type == "reply.delta":
            self.first_delta.set()
        await super().emit(ev)


async def test_voice_turn_is_stored_with_its_trace_after_playback(logged: Logged) -> None:
    h = VoiceHarness(logged.runner.cfg)
    sink = ListSink()
    sink.blocking = True
    question = speech_16k("When does the museum open on Sunday?")
    async with open_pipeline(engine(), logged.runner, h.conv, h.emit, sink) as pipe:
        await feed(pipe, np.concatenate([silence(0.3), question, silence(1.0)]))
        with trio.fail_after(30):
            await sink.submitted.wait()  # the whole reply is playing
        assert len(h.of("reply.done")) == 1
        assert await logged.rows() == []  # still speaking: not recorded yet
        sink.heard.set()
        with trio.fail_after(30):
            await pipe.wait_idle()
    [row] = await logged.rows()
    assert row.source == "voice" and row.outcome == "ok" and row.reply_text == WHOLE
    assert "museum" in row.user_text.lower()
    t = row.timings
    for key in (*VOICE_KEYS, "voice_to_voice_ms", "tts_first_audio", "playback_end"):
        assert key in t and t[key] >= 0, key
    assert t["playback_end"] >= t["tts_first_audio"] >= t["llm_first_token"]
    assert t["voice_to_voice_ms"] >= t["vad_end_ms"]
    [done] = h.of("reply.done")
    assert {k: v for k, v in t.items() if k != "playback_end"} == done["timings"]
    assert pipe.turns[0].timings == t and not pipe.turns[0].interrupted
    assert logged.turns_counted("ok", "voice") == 1


async def test_barge_in_during_playback_is_stored_as_interrupted(logged: Logged) -> None:
    h = VoiceHarness(logged.runner.cfg)
    sink = ListSink()
    sink.blocking = True  # the long reply keeps "playing" until stopped
    q1 = speech_16k("When does the museum open on Sunday?")
    q2 = speech_16k("Where are the toilets?")
    metrics = logged.metrics
    async with open_pipeline(
        engine(), logged.runner, h.conv, h.emit, sink, metrics=metrics
    ) as pipe:
        await feed(pipe, np.concatenate([silence(0.3), q1, silence(0.8)]))
        with trio.fail_after(30):
            await sink.submitted.wait()
        await feed(pipe, np.concatenate([silence(0.2), q2, silence(1.0)]))
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert pipe.barge_ins == 1 and sink.stops >= 1
    first, second = await logged.rows()
    assert first.outcome == "interrupted" and first.reply_text == WHOLE
    assert "playback_end" in first.timings and "tts_first_audio" in first.timings
    assert first.timings["playback_end"] >= first.timings["tts_first_audio"]
    for key in VOICE_KEYS:
        assert key in first.timings, key
    assert second.outcome == "ok" and "toilet" in second.user_text.lower()
    assert logged.turns_counted("interrupted", "voice") == 1
    assert logged.turns_counted("ok", "voice") == 1
    text = logged.metrics.render().decode()
    assert 'appliance_stage_latency_seconds_count{stage="barge_in"} 1.0' in text


async def test_barge_in_while_the_reply_streams_is_stored_as_interrupted(
    logged: Logged, llm: ScriptedLLM
) -> None:
    llm.script = Script(mode="stall", reply=REPLY, stall_after_tokens=8)
    h = VoiceHarness(logged.runner.cfg)
    sink = ListSink()
    q1 = speech_16k("When does the museum open on Sunday?")
    q2 = speech_16k("Where are the toilets?")
    async with open_pipeline(engine(), logged.runner, h.conv, h.emit, sink) as pipe:
        await feed(pipe, np.concatenate([silence(0.3), q1, silence(0.8)]))
        with trio.fail_after(30):
            await h.first_delta.wait()  # the model is writing, then stalls: still streaming
        assert llm.active == 1
        llm.script = Script(reply="The toilets are by the entrance.")
        await feed(pipe, np.concatenate([silence(0.2), q2, silence(1.0)]))
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert pipe.barge_ins == 1
    first, second = await logged.rows()
    assert first.outcome == "interrupted" and first.source == "voice"
    assert first.reply_text and WHOLE.startswith(first.reply_text)
    assert len(first.reply_text) < len(WHOLE)
    assert first.reply_text == pipe.turns[0].reply.strip()
    assert "vad_end_ms" in first.timings and "asr_final_ms" in first.timings
    assert [m["turn"] for m in h.of("reply.done")] == [second.turn]
    assert second.outcome == "ok" and second.reply_text == "The toilets are by the entrance."
    assert logged.turns_counted("interrupted", "voice") == 1
    assert logged.turns_counted("cancelled", "voice") == 0
    assert llm.aborted == 1
