"""The voice pipeline on real models (Silero, Moonshine, Piper) and a scripted LLM over HTTP.

Audio is fed faster than real time: the pipeline runs on audio time, so these tests do not
wait for the clock (wall-time latency figures come from `appliance demo` / bench).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import trio
import trio.testing
from support import make_config
from voicefixtures import SETTINGS, clip_16k, manifest, speech_16k

from appliance import turns
from appliance.audio.resample import resample
from appliance.config import Config, VoiceConfig
from appliance.demo import turn_stack
from appliance.dialog import SessionRegistry
from appliance.events import ServerEvent, to_wire
from appliance.fakes.scripted_llm import Script, ScriptedLLM
from appliance.knowledge.policy import DEFAULT_CHAT_REPLIES
from appliance.metrics import Metrics
from appliance.turns import TurnRunner
from appliance.voice.echo import EchoGate
from appliance.voice.engine import VoiceEngine
from appliance.voice.listening import (
    AudioRing,
    agreed,
    loops,
    pcm16_to_float,
    usable_transcript,
)
from appliance.voice.pipeline import PipelineSettings, VoicePipeline, open_pipeline
from appliance.voice.prefill import fill_spoken, warm_chunks
from appliance.voice.speech import SpokenCache

F32 = npt.NDArray[np.float32]
REPLY = "We open at nine thirty on Sundays, and the cafe is on the second floor. " * 3


@functools.cache
def engine() -> VoiceEngine:
    return VoiceEngine.load_blocking(SETTINGS, manifest(), check_hash=False)


def silence(s: float) -> F32:
    return np.zeros(int(s * 16000), dtype=np.float32)


class ListSink:
    """Plays "in real time" as far as the pipeline can tell: drain() blocks until the test
    says the audio was heard (`heard`) or the pipeline stops it (barge-in)."""

    def __init__(self) -> None:
        self.first_sample_at: float | None = None
        self.parts: list[F32] = []
        self.rate = 0
        self.stops = 0
        self.heard = trio.Event()
        self.submitted = trio.Event()
        self.blocking = False
        self.mic_clock: Callable[[], float] = lambda: 0.0
        self.played_at: list[float] = []  # mic audio time of each play() call

    async def play(self, audio: F32, rate: int) -> None:
        if self.first_sample_at is None:
            self.first_sample_at = trio.current_time()
        self.rate = rate
        self.parts.append(audio)
        self.played_at.append(self.mic_clock())
        await trio.lowlevel.checkpoint()

    async def drain(self) -> None:
        self.submitted.set()
        if self.blocking:
            await self.heard.wait()
        self.first_sample_at = None

    def stop(self) -> None:
        self.stops += 1
        self.first_sample_at = None
        self.heard.set()

    def audio(self) -> F32:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.float32)

    def echo_from(self, t: float, *, gain: float, delay_s: float) -> F32:
        """What a mic would pick up of our playback from mic time `t` on: each chunk starts
        when it was handed over (or right after the previous one), delayed and attenuated."""
        chunks = [resample(a, self.rate, 16000) for a in self.parts]
        end = 0
        line = np.zeros(0, dtype=np.float32)
        for at, c in zip(self.played_at, chunks, strict=True):
            start = max(end, round(at * 16000))
            line = np.concatenate([line, np.zeros(start - len(line), np.float32), c])
            end = start + len(c)
        line = np.concatenate([np.zeros(round(delay_s * 16000), np.float32), line])
        return (gain * line[round(t * 16000) :]).astype(np.float32)


@pytest.fixture
async def runner(llm: ScriptedLLM, tmp_path: Path) -> AsyncIterator[TurnRunner]:
    llm.script = Script(reply=REPLY)
    cfg = make_config(tmp_path, [{"name": "scripted", "url": llm.url, "model": "m"}])
    async with turn_stack(cfg, Metrics()) as r:
        yield r


class Harness:
    def __init__(self, cfg: Config) -> None:
        self.msgs: list[dict[str, Any]] = []
        reg = SessionRegistry(idle_reset_s=60, history_turns=2)
        self.conv, _ = reg.resume_or_create(None, trio.current_time())

    async def emit(self, ev: ServerEvent) -> None:
        self.msgs.append(to_wire(ev))
        await trio.lowlevel.checkpoint()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m["type"] == kind]


async def feed(pipe: VoicePipeline, audio: F32, block: int = 1600, live: bool = False) -> None:
    for i in range(0, len(audio), block):
        await pipe.feed(audio[i : i + block])
        if live:
            await pipe.settle()


# -- pure pieces ------------------------------------------------------------------------------


def test_two_passes_agree_on_their_common_start() -> None:
    """An ending one pass invented ("... luggage? Do I need a pound") is not agreed on."""
    assert agreed([5, 6, 7, 8, 9, 5, 6], [5, 6, 7, 8, 10, 11]) == (5, 6, 7, 8)
    assert agreed([], [5, 6]) == () and agreed([5, 6], [5]) == (5,)
    assert agreed([7, 6], [5, 6]) == ()


def test_pcm16_and_usable_transcript() -> None:
    pcm = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes() + b"\x01"
    assert pcm16_to_float(pcm).tolist() == pytest.approx([0.0, 0.5, -1.0, 32767 / 32768])
    assert usable_transcript("When do you open?")
    assert not usable_transcript("")
    assert not usable_transcript("Um... uh.")


def test_a_phrase_said_twice_in_a_row_is_a_loop() -> None:
    """A final pass from settled words that lost its place in the audio says a phrase over
    and over (held-out 16); it is run again from scratch. A word or two said twice is how
    visitors talk."""
    looped = "My wife's in a wheelchair and we are not bringing the car and we are not bringing"
    assert loops(looped + " the car and we are")
    assert not loops(looped)
    assert not loops("No, no, no, I said the car. Sorry, sorry.")
    assert not loops("Where is the the toilet?")
    assert not loops("")


def test_audio_ring_slices_by_time_with_pre_roll() -> None:
    ring = AudioRing(keep_s=1.0)
    ring.append(np.arange(32000, dtype=np.float32))  # 2 s, keeps ~1 s
    seg = ring.slice(1.5, 1.75, pre_roll_s=0.25, post_roll_s=0.0)
    assert seg[0] == 20000 and len(seg) == 8000  # 1.25 s .. 1.75 s
    assert ring.slice(0.0, 0.5, pre_roll_s=0.0, post_roll_s=0.0).size == 0  # trimmed away


def test_echo_gate_suppresses_own_voice_but_not_the_visitor() -> None:
    own = speech_16k("Our cafe is open until five.")
    visitor = speech_16k("Where are the toilets?")
    gate = EchoGate(leak=0.1, margin=2.0, max_lag_s=0.3)
    gate.add(own, mic_now_sample=0)
    delay = 640  # 40 ms acoustic + buffer delay
    rng = np.random.default_rng(1)
    mic_echo = 0.5 * np.concatenate([np.zeros(delay, np.float32), own])[: len(own)]
    mic_echo = (mic_echo + rng.normal(0, 1e-3, len(own))).astype(np.float32)
    n = min(len(own), len(visitor)) // 512 * 512
    loud = [i for i in range(512, n, 512) if np.sqrt(np.mean(mic_echo[i - 512 : i] ** 2)) > 0.01]
    assert len(loud) > 10
    echo_hits = sum(gate.is_echo(mic_echo[i - 512 : i], i) for i in loud)
    both = (mic_echo[:n] + visitor[:n]).astype(np.float32)
    loud_v = [i for i in loud if np.sqrt(np.mean(visitor[i - 512 : i] ** 2)) > 0.05]
    assert len(loud_v) > 3
    visitor_hits = sum(gate.is_echo(both[i - 512 : i], i) for i in loud_v)
    assert echo_hits >= 0.9 * len(loud)  # our own voice: gated
    assert visitor_hits == 0  # the visitor over our voice: heard
    assert gate.active(n) and not gate.active(len(own) + 0.3 * 16000 + 1)


# -- the pipeline on real models --------------------------------------------------------------


async def test_utterance_becomes_a_spoken_turn(runner: TurnRunner, tmp_path: Path) -> None:
    h = Harness(runner.cfg)
    sink = ListSink()
    metrics = Metrics()
    audio = np.concatenate([silence(0.5), speech_16k("When does the museum open on Sunday?")])
    async with open_pipeline(engine(), runner, h.conv, h.emit, sink, metrics=metrics) as pipe:
        await feed(pipe, np.concatenate([audio, silence(1.0)]), live=True)
        with trio.fail_after(30):
            await pipe.wait_idle()
    finals = [m for m in h.of("transcript") if m["final"]]
    assert len(finals) == 1
    assert "museum" in finals[0]["text"].lower() and "sunday" in finals[0]["text"].lower()
    partials = [m for m in h.of("transcript") if not m["final"]]
    assert partials, "partial transcripts while speaking"
    assert h.msgs.index(partials[0]) < h.msgs.index(finals[0])
    done = h.of("reply.done")
    assert len(done) == 1 and done[0]["outcome"] == "ok"
    t = done[0]["timings"]
    for key in ("vad_end_ms", "asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms"):
        assert key in t and t[key] >= 0, key
    assert "voice_to_voice_ms" in t
    states = [m["state"] for m in h.of("state")]
    assert states[0] == "listening" and states[-1] == "idle" and "speaking" in states
    assert states.index("speaking") < len(states) - 1
    out = sink.audio()
    assert sink.rate == 22050 and len(out) / sink.rate > 3.0  # the whole reply, spoken
    assert float(np.sqrt(np.mean(out**2))) > 0.01
    assert pipe.turns[0].outcome == "ok" and not pipe.turns[0].interrupted
    text = metrics.render().decode()
    assert 'stage="voice_to_voice"' in text and 'stage="asr_final"' in text


async def test_a_long_question_final_pass_starts_from_settled_words(runner: TurnRunner) -> None:
    """The final pass reads what the last two partials agreed on instead of searching it again
    (a long question's final pass only searches its end), and still hears the whole question."""
    h = Harness(runner.cfg)
    question = (
        "Good morning, could you tell me when the museum opens on Sunday, "
        "and how much a ticket for a child costs?"
    )
    audio = np.concatenate([silence(0.5), speech_16k(question), silence(1.0)])
    settings = dataclasses.replace(PipelineSettings(), settled_words=1)  # off by default
    async with open_pipeline(engine(), runner, h.conv, h.emit, ListSink(), settings) as pipe:
        await feed(pipe, audio, live=True)
        with trio.fail_after(30):
            await pipe.wait_idle()
    (final,) = [m["text"].lower() for m in h.of("transcript") if m["final"]]
    for word in ("museum", "sunday", "ticket", "child"):
        assert word in final, final
    assert pipe.turns[0].timings.get("asr_settled_tokens", 0) >= 3, pipe.turns[0].timings


async def test_a_final_pass_starts_from_what_was_heard_at_a_pause(runner: TurnRunner) -> None:
    """A speculative final pass at a pause the visitor talks on after still finishes, and the
    final pass starts from its words but the last two (`paused_words = 2`, off by default);
    the whole question is still heard."""
    h = Harness(runner.cfg)
    # Unfinished at the pause (it ends "and"), so the turn does not end there.
    first = "Good morning, could you tell me when the museum opens on Sunday and"
    then = "how much a ticket for a child costs, and where we can park?"
    audio = np.concatenate(
        [silence(0.5), speech_16k(first), silence(0.1), speech_16k(then), silence(1.0)]
    )
    settings = dataclasses.replace(PipelineSettings(), paused_words=2)
    async with open_pipeline(engine(), runner, h.conv, h.emit, ListSink(), settings) as pipe:
        await feed(pipe, audio, live=True)
        with trio.fail_after(30):
            await pipe.wait_idle()
    (final,) = [m["text"].lower() for m in h.of("transcript") if m["final"]]
    for word in ("museum", "sunday", "ticket", "child", "park"):
        assert word in final, final
    assert pipe.turns[0].timings.get("asr_settled_tokens", 0) >= 5, pipe.turns[0].timings


async def test_a_final_pass_that_heard_nothing_looks_again_wider(runner: TurnRunner) -> None:
    """A final pass that hears nothing runs again over a wider cut (`test_asr` has the cut it
    is for); murmuring under babble (held-out 15: "mmm... yeah, no, hang on...", 5 dB SNR)
    still starts no turn."""
    audio = np.concatenate([clip_16k("hang_on_babble.wav"), silence(1.0)])
    h = Harness(runner.cfg)
    async with open_pipeline(engine(), runner, h.conv, h.emit, ListSink()) as pipe:
        await feed(pipe, audio, live=True)
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert [t.outcome for t in pipe.turns] == ["no_words"], pipe.turns
    assert pipe.turns[0].timings.get("asr_wider") == 1, pipe.turns[0].timings
    assert not h.of("reply.done")


async def test_noise_and_silence_start_no_turn(runner: TurnRunner) -> None:
    h = Harness(runner.cfg)
    sink = ListSink()
    rng = np.random.default_rng(0)
    noise = (rng.normal(0, 0.003, 16000 * 2)).astype(np.float32)
    async with open_pipeline(engine(), runner, h.conv, h.emit, sink) as pipe:
        await feed(pipe, np.concatenate([silence(1.0), noise, silence(1.0)]))
        await pipe.end_of_input()
        with trio.fail_after(10):
            await pipe.wait_idle()
    assert h.of("reply.done") == [] and sink.parts == []
    assert h.conv.state.value == "idle"


async def test_end_of_input_flushes_an_utterance(runner: TurnRunner) -> None:
    """audio.end / file end right after the words: no hangover needed to get the turn."""
    h = Harness(runner.cfg)
    async with open_pipeline(engine(), runner, h.conv, h.emit, ListSink()) as pipe:
        await feed(pipe, speech_16k("Is there a cafe?"))
        await pipe.end_of_input()
        with trio.fail_after(30):
            await pipe.wait_idle()
    finals = [m["text"].lower() for m in h.of("transcript") if m["final"]]
    assert finals and "cafe" in finals[0].replace("é", "e")
    assert len(h.of("reply.done")) == 1


async def test_barge_in_stops_playback_and_starts_the_next_turn(runner: TurnRunner) -> None:
    h = Harness(runner.cfg)
    sink = ListSink()
    sink.blocking = True  # the long reply keeps "playing" until stopped
    q1 = speech_16k("When does the museum open on Sunday?")
    q2 = speech_16k("Where are the toilets?")
    metrics = Metrics()
    async with open_pipeline(engine(), runner, h.conv, h.emit, sink, metrics=metrics) as pipe:
        await feed(pipe, np.concatenate([silence(0.3), q1, silence(0.8)]))
        with trio.fail_after(30):
            await sink.submitted.wait()  # the whole reply is queued and playing
        assert sink.stops == 0 and h.of("state")[-1]["state"] == "speaking"
        await feed(pipe, np.concatenate([silence(0.2), q2, silence(1.0)]))
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert sink.stops >= 1 and pipe.barge_ins == 1
    assert "appliance_barge_ins_total 1.0" in metrics.render().decode()
    assert len(pipe.turns) == 2
    first, second = pipe.turns
    assert first.interrupted and first.outcome == "ok"  # text done, playback cut
    assert "toilet" in second.transcript.lower()
    assert not second.interrupted and second.outcome == "ok"
    assert [m["turn"] for m in h.of("reply.done")] == [first.turn, second.turn]
    states = [m["state"] for m in h.of("state")]
    assert "listening" in states[states.index("speaking") :]


async def test_own_voice_fed_back_does_not_interrupt(runner: TurnRunner) -> None:
    """The box hears its own reply (delayed, quieter, a little noise): no barge-in, no turn."""
    h = Harness(runner.cfg)
    sink = ListSink()
    sink.blocking = True
    async with open_pipeline(engine(), runner, h.conv, h.emit, sink) as pipe:
        sink.mic_clock = lambda: pipe.audio_time
        await feed(pipe, np.concatenate([speech_16k("Is there a cafe?"), silence(0.8)]))
        with trio.fail_after(30):
            await sink.submitted.wait()
        echo = sink.echo_from(pipe.audio_time, gain=0.6, delay_s=0.03)
        assert len(echo) > 16000 * 3
        rng = np.random.default_rng(2)
        echo = (echo + rng.normal(0, 1e-3, len(echo))).astype(np.float32)
        await feed(pipe, echo, block=512)
        assert pipe.barge_ins == 0 and sink.stops == 0
        assert pipe.echo_frames > 20
        sink.heard.set()
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert len(pipe.turns) == 1 and not pipe.turns[0].interrupted
    assert h.conv.state.value == "idle"


async def test_gate_off_own_voice_does_interrupt(runner: TurnRunner) -> None:
    """The control for the test above: without the gate the same echo is a barge-in."""
    h = Harness(runner.cfg)
    sink = ListSink()
    sink.blocking = True
    settings = PipelineSettings(echo_gate=False)
    async with open_pipeline(engine(), runner, h.conv, h.emit, sink, settings) as pipe:
        sink.mic_clock = lambda: pipe.audio_time
        await feed(pipe, np.concatenate([speech_16k("Is there a cafe?"), silence(0.8)]))
        with trio.fail_after(30):
            await sink.submitted.wait()
        await feed(pipe, sink.echo_from(pipe.audio_time, gain=0.6, delay_s=0.03), block=512)
        assert pipe.barge_ins >= 1 and sink.stops >= 1
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert pipe.turns[0].interrupted


def faq_config(llm: ScriptedLLM, tmp_path: Path) -> Config:
    """The scripted LLM behind the answer policy with the sample FAQ (as shipped)."""
    return make_config(
        tmp_path,
        [{"name": "scripted", "url": llm.url, "model": "m"}],
        knowledge={"semantic": True, "answer_mode": "faq"},
    )


def asked(question: str) -> F32:
    """`question` spoken, between the silences a visitor leaves."""
    return np.concatenate([silence(0.5), speech_16k(question), silence(1.0)])


async def test_the_turn_takes_the_decision_prepared_for_it(
    llm: ScriptedLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare_reply ranks the question during the hangover; the turn that follows with the
    same words and context takes that decision instead of ranking it again. Other words, or
    the context a turn leaves, are ranked anew."""
    cfg = faq_config(llm, tmp_path)
    ranked: list[str] = []
    real = turns.ground

    def counted(kb: Any, question: str, **kw: Any) -> Any:
        ranked.append(question)
        return real(kb, question, **kw)

    monkeypatch.setattr(turns, "ground", counted)
    async with turn_stack(cfg, Metrics()) as runner:
        h = Harness(cfg)
        question = "How much does a ticket cost?"
        assert await runner.prepare_reply(h.conv, question)
        assert question in ranked
        before = len(ranked)
        await runner.run_text(h.conv, question, h.emit, source="voice")
        assert len(ranked) == before  # taken, not ranked again
        # Prepared with the context before that turn: a turn now (new context) ranks anew.
        await runner.prepare_reply(h.conv, "And for children?")
        await runner.run_text(h.conv, "And for children?", h.emit, source="voice")
        before = len(ranked)
        await runner.run_text(h.conv, "And for children?", h.emit, source="voice")
        assert len(ranked) > before  # nothing prepared for this one: ranked
        # The turn starts while the decision is still being made: it waits for that one.
        question = "Is there a cafe?"
        async with trio.open_nursery() as n:
            n.start_soon(runner.prepare_reply, h.conv, question)
            await trio.testing.wait_all_tasks_blocked()  # ranking on its worker thread
            await runner.run_text(h.conv, question, h.emit, source="voice")
        assert ranked.count(question) == 1
        # The same words prepared twice (heard again after a pause): the turn still takes it.
        question = "Where are the toilets?"
        await runner.prepare_reply(h.conv, question)
        await runner.prepare_reply(h.conv, question)
        await runner.run_text(h.conv, question, h.emit, source="voice")
        assert ranked.count(question) == 1
    first, second, third, cafe, toilets = h.of("reply.done")
    assert first["kind"] == "faq" and first["text"].startswith("An adult ticket costs")
    assert second["text"] == third["text"] and cafe["kind"] == "faq"
    assert toilets["kind"] == "faq"


async def test_reply_is_prepared_during_the_hangover(llm: ScriptedLLM, tmp_path: Path) -> None:
    """A confident FAQ match is predictable: its first chunk is ready when the turn starts. An
    LLM answer: the (loopback) endpoint evaluates the turn's exact prompt beforehand."""
    llm.script = Script(reply=REPLY)
    cfg = faq_config(llm, tmp_path)
    # The same service with every question sent to the LLM (answer_mode "open").
    open_cfg = dataclasses.replace(
        cfg, knowledge=dataclasses.replace(cfg.knowledge, answer_mode="open")
    )
    async with turn_stack(cfg, Metrics()) as runner:
        conv = Harness(cfg).conv
        answer = await runner.prepare_reply(conv, "How much does a ticket cost?")
        assert answer is not None and "€12" in answer
        chat = await runner.prepare_reply(conv, "Tell me a joke, please.")  # canned small talk
        assert chat and "€" not in chat
        assert llm.requests[-1]["messages"] == runner.prefix_messages()  # only the warm-ups yet
        runner.cfg = open_cfg
        assert await runner.prepare_reply(conv, "Tell me a joke, please.") is None  # LLM's
        prime = llm.requests[-1]
        assert prime["max_tokens"] == 1 and not prime["stream"]
        assert prime["messages"][-1] == {"role": "user", "content": "Tell me a joke, please."}
        # The turn that follows streams the very same prompt (so a llama.cpp cache hits).
        await runner.run_text(conv, "Tell me a joke, please.", Harness(cfg).emit, source="voice")
        streamed = llm.requests[-1]
        assert streamed["stream"] and streamed["messages"] == prime["messages"]
        modes = (("How much does a ticket cost?", 1, cfg), ("Tell me a joke.", 0, open_cfg))
        for question, hits, mode in modes:
            runner.cfg = mode
            h = Harness(cfg)
            sink = ListSink()
            audio = np.concatenate([silence(0.5), speech_16k(question), silence(1.0)])
            sent = len(llm.requests)
            async with open_pipeline(engine(), runner, h.conv, h.emit, sink) as pipe:
                await feed(pipe, audio, live=True)
                with trio.fail_after(30):
                    await pipe.wait_idle()
            assert pipe.prefetch_hits == hits, question
            (done,) = h.of("reply.done")
            assert done["outcome"] == "ok" and len(sink.audio()) > 0
            if hits:
                assert done["text"] == answer  # the staff's text, spoken from the prefetch
                assert len(llm.requests) == sent  # no LLM involved
            else:
                # Primed during the hangover, then streamed. The words match; punctuation may
                # not (the final pass can be a later one than the primed speculative one), so
                # the exact prompt match is asserted on the typed turn above.
                primed, streamed = llm.requests[sent], llm.requests[-1]
                assert not primed["stream"] and primed["max_tokens"] == 1 and streamed["stream"]
                said = [
                    re.findall(r"[a-z]+", r["messages"][-1]["content"].lower())
                    for r in (primed, streamed)
                ]
                assert said[0] == said[1] and said[0][:3] == ["tell", "me", "a"], said


def first_chunk_sources(metrics: Metrics) -> dict[str, float]:
    """appliance_reply_first_chunk_total by source, those counted."""
    sources = ("cache", "prefetch", "synthesized")
    get = metrics.registry.get_sample_value
    counts = {s: get("appliance_reply_first_chunk_total", {"source": s}) for s in sources}
    return {s: n for s, n in counts.items() if n}


async def test_a_reply_said_before_starts_from_the_cache(llm: ScriptedLLM, tmp_path: Path) -> None:
    """The same FAQ answer a second time: its first chunk is not synthesized again, not even
    ahead of the turn (the prefetch is skipped), and the reply is the same."""
    cfg = faq_config(llm, tmp_path)
    async with turn_stack(cfg, Metrics()) as runner:
        h = Harness(cfg)
        audio = asked("How much does a ticket cost?")
        metrics = Metrics()
        async with open_pipeline(
            engine(), runner, h.conv, h.emit, ListSink(), None, metrics
        ) as pipe:
            prefetched: list[int] = []
            for _ in range(2):
                await feed(pipe, audio, live=True)
                with trio.fail_after(30):
                    await pipe.wait_idle()
                prefetched.append(pipe.prefetch_hits)
            assert pipe.cache_hits == 1
            assert prefetched[1] == prefetched[0]  # nothing prefetched for the second
        # The first: made ahead of the turn or in it, whichever the timing allowed.
        sources = first_chunk_sources(metrics)
        assert sources.pop("cache") == 1 and sum(sources.values()) == 1, sources
        first, second = h.of("reply.done")
        assert first["kind"] == second["kind"] == "faq" and first["text"] == second["text"]


async def test_a_first_asking_starts_from_speech_made_ahead(
    llm: ScriptedLLM, tmp_path: Path
) -> None:
    """The usual replies' speech made ahead (voice/prefill.py, from TurnRunner.usual_replies)
    is exactly what a turn says: a question never asked before starts from it."""
    cfg = faq_config(llm, tmp_path)
    async with turn_stack(cfg, Metrics()) as runner:
        h = Harness(cfg)
        cache = SpokenCache()
        texts = runner.usual_replies()
        fixed = 2 + len(DEFAULT_CHAT_REPLIES)  # decline, say-again, small talk
        assert len(texts) == fixed + len(runner.knowledge.entries)  # ... + every answer
        made = await fill_spoken(cache, engine().tts, texts, 1.0, lambda: True)
        assert made == len(warm_chunks(texts))
        audio = asked("How much does a ticket cost?")
        metrics = Metrics()
        async with open_pipeline(
            engine(), runner, h.conv, h.emit, ListSink(), None, metrics, spoken=cache
        ) as pipe:
            await feed(pipe, audio, live=True)
            with trio.fail_after(30):
                await pipe.wait_idle()
            assert pipe.cache_hits == 1 and pipe.prefetch_hits == 0
        assert first_chunk_sources(metrics) == {"cache": 1.0}
        (done,) = h.of("reply.done")
        assert done["kind"] == "faq" and done["text"].startswith("An adult ticket costs")


def test_settings_from_config_take_every_voice_key_by_name() -> None:
    v = VoiceConfig(
        hangover_s=0.7, pre_roll_s=0.05, asr_s=2.5, echo_leak=0.3, retry_reply="Pardon?"
    )
    s = PipelineSettings.from_config(v)
    assert (s.segmenter.hangover_s, s.segmenter.pre_roll_s) == (0.7, 0.05)
    assert (s.asr_s, s.echo_leak, s.retry_reply) == (2.5, 0.3, "Pardon?")
    for f in dataclasses.fields(PipelineSettings):
        if f.name != "segmenter":
            assert getattr(s, f.name) == getattr(v, f.name), f.name


@pytest.mark.parametrize(
    ("said", "answered"),
    [("Can my dog come in with me?", False), ("Hey Mycroft, can I take photos?", True)],
)
async def test_a_wake_without_the_wake_phrase_in_its_words_starts_no_turn(
    runner: TurnRunner, said: str, answered: bool
) -> None:
    """The wake-word detector's near misses are "my <noun>" ("can my dog ..."): when only the
    detector let an utterance in, its transcript must carry the phrase, or it is a false wake."""
    from appliance.voice.listening import ListenGate

    h = Harness(runner.cfg)
    speech = speech_16k(said)
    half = len(speech) // 2
    async with open_pipeline(engine(), runner, h.conv, h.emit, ListSink()) as pipe:
        pipe.gate = ListenGate(("wake",))
        pipe.wake_phrase = "Hey Mycroft"
        await feed(pipe, np.concatenate([silence(0.5), speech[:half]]), live=True)
        await pipe.wake()  # the detector fires mid-utterance
        await feed(pipe, np.concatenate([speech[half:], silence(1.0)]), live=True)
        with trio.fail_after(30):
            await pipe.wait_idle()
    assert [t.outcome for t in pipe.turns] == (["ok"] if answered else ["false_wake"])
    assert pipe.false_wakes == (0 if answered else 1)
    assert bool(h.of("reply.done")) == answered
