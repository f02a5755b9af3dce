"""The kiosk's own mic and speaker, end to end on PulseAudio virtual devices (tests/pulse.py).

The real service (Silero/Moonshine/Piper, FAQ direct answers with the embedding model, the
scripted LLM over HTTP) listens on `vmic` and speaks on `spk`; we play a spoken question into
the mic, record the speaker's monitor and transcribe what the box said.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import numpy as np
import pytest
import trio
from pulse import RATE, PulseDaemon, pulse  # noqa: F401  (fixture)
from support import StartService
from voicefixtures import asr, speech_16k  # noqa: F401  (fixture)

from appliance.audio.resample import resample
from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.supervisor import Service
from appliance.voice.local import audio_settings
from appliance.voice.moonshine import MoonshineAsr

SECTIONS = {
    "audio": {"enabled": True},
    "voice": {"enabled": True, "listen": ["always"]},  # every utterance (wake: its own test)
    "knowledge": {"semantic": True, "answer_mode": "faq"},
}


def with_front_end(on: bool) -> dict[str, Any]:
    audio = {**SECTIONS["audio"], "echo_cancellation": on, "noise_suppression": on}
    return {**SECTIONS, "audio": audio}


class LocalLog(logging.Handler):
    """Events from the local voice task's log lines (emitted on the trio thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.listening = trio.Event()
        self.replied = trio.Event()
        self.idle_after_reply = trio.Event()
        self.heard: list[str] = []
        self.replies: list[str] = []
        self.states: list[str] = []
        # (seconds since the handler was made, what): for a failure's message, the order and
        # spacing of what the box heard, said and did.
        self.timeline: list[tuple[float, str]] = []
        self._t0 = time.monotonic()

    def next_reply(self) -> None:
        """Wait afresh for the next reply (`replied`, `idle_after_reply`)."""
        self.replied = trio.Event()
        self.idle_after_reply = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("local voice: listening"):
            self.listening.set()
        elif msg.startswith("local voice heard"):
            self.heard.append(msg)
        elif msg.startswith("local voice replied"):
            self.replied.set()
        elif msg.startswith("local voice reply text"):  # the text itself: debug level only
            self.replies.append(msg)
        state = getattr(record, "state", None)
        if msg.startswith(("local voice heard", "local voice replied")) or isinstance(state, str):
            self.timeline.append((round(time.monotonic() - self._t0, 3), state or msg[:60]))
        if isinstance(state, str):
            self.states.append(state)
            if state == "idle" and self.replied.is_set():
                self.idle_after_reply.set()


@pytest.fixture
def local_log() -> Iterator[LocalLog]:
    logger = logging.getLogger("appliance.voice.local")
    handler = LocalLog()
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


async def say(pulse: PulseDaemon, text: str, *, lead_s: float = 0.0, tail_s: float = 1.0) -> None:  # noqa: F811
    """Speak `text` (Piper, 16 kHz) into the virtual microphone between silences."""
    audio = np.concatenate(
        [
            np.zeros(int(lead_s * 16000), np.float32),
            speech_16k(text),
            np.zeros(int(tail_s * 16000), np.float32),
        ]
    )
    await pulse.feed_mic(resample(audio, 16000, RATE), RATE)


def voice_turns(svc: Service) -> float:
    total = 0.0
    for metric in svc.ctx.metrics.turns.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels.get("source") == "voice":
                total += s.value
    return total


async def test_spoken_faq_question_is_answered_aloud_on_the_speaker(
    pulse: PulseDaemon,  # noqa: F811
    asr: MoonshineAsr,  # noqa: F811
    start_service: StartService,
    llm: ScriptedLLM,
    local_log: LocalLog,
) -> None:
    llm.script.reply = "The scripted model says hello."  # must not be what we hear
    svc = await start_service(**SECTIONS)
    with trio.fail_after(15):
        await local_log.listening.wait()
    q = speech_16k("Can I bring my dog?")
    question = np.concatenate([np.zeros(8000, np.float32), q, np.zeros(16000, np.float32)])
    async with pulse.record("spk.monitor") as rec:
        await pulse.feed_mic(resample(question, 16000, RATE), RATE)
        with trio.fail_after(30):
            await local_log.idle_after_reply.wait()  # reply played to the end (drained)
        got = rec.samples
    assert voice_turns(svc) == 1
    loud = np.flatnonzero(np.abs(got) > 0.01)
    assert loud.size > 0, "nothing was played on the speaker"
    reply = got[max(0, loud[0] - RATE // 10) : loud[-1] + RATE // 10]
    text = asr.transcribe(resample(reply, RATE, 16000)).text.lower()
    assert "assistance" in text or "dogs" in text, (text, local_log.heard, local_log.replies)
    assert "scripted" not in text
    # The devices' counters reach /metrics (values depend on load; their presence must not).
    async with httpx.AsyncClient(base_url=svc.urls[0]) as http:
        metrics = (await http.get("/metrics")).text
    assert "appliance_audio_dropped_blocks_total " in metrics
    assert "appliance_playback_underruns_total " in metrics


@pytest.mark.parametrize("front_end", [False, True], ids=["echo_gate", "webrtc_front_end"])
async def test_own_reply_echoed_into_the_mic_starts_no_turn(
    pulse: PulseDaemon,  # noqa: F811
    start_service: StartService,
    local_log: LocalLog,
    front_end: bool,
) -> None:
    """Self-interruption: the speaker is looped back into the microphone (a kiosk's speaker
    next to its mic); the box hears its whole reply and must not take it for a visitor. With
    the echo gate alone, and with the WebRTC front end (echo cancellation and noise
    suppression) in front of ASR."""
    svc = await start_service(**with_front_end(front_end))
    with trio.fail_after(15):
        await local_log.listening.wait()
    q = speech_16k("Can I bring my dog?")
    question = np.concatenate([np.zeros(8000, np.float32), q, np.zeros(16000, np.float32)])
    idx = int(
        pulse.pactl(
            "load-module", "module-loopback", "source=spk.monitor", "sink=micfeed",
            "latency_msec=40",
        ).strip()
    )  # fmt: skip
    try:
        async with pulse.record("vmic") as mic:
            await pulse.feed_mic(resample(question, 16000, RATE), RATE)
            fed = len(mic.samples)
            with trio.fail_after(30):
                await local_log.idle_after_reply.wait()
            echo = mic.samples[fed:]
        # What the loop held back by then (PulseAudio grows it when it underruns on a busy
        # box): part of a failure's message, since the gate only looks 0.3 s back.
        loop_latency = [
            line.strip()
            for line in pulse.pactl("list", "sink-inputs").splitlines()
            if "atency" in line
        ]
    finally:
        pulse.pactl("unload-module", str(idx))
    assert np.abs(echo).max() > 0.05, "the reply did not reach the microphone"
    assert svc.ctx.local_voice_status is not None
    if not front_end:
        # The gate learned the loop's path (shown on the admin page): the loopback's ~40 ms
        # and the devices' buffers. (With the front end its timeline runs behind the raw mic.)
        paths = svc.ctx.local_voice_status()["echo_paths_ms"]
        assert paths and 10 <= paths[0] <= 300, paths
    # No sleep to prove a negative: a second question must be the very next thing heard.
    local_log.next_reply()
    await say(pulse, "Can I take photos?")
    with trio.fail_after(30):
        # Played to the end: a turn is counted and logged then, not at reply.done.
        await local_log.idle_after_reply.wait()
    why = (local_log.heard, local_log.timeline, svc.ctx.local_voice_status(), loop_latency)
    assert len(local_log.heard) == 2, why
    assert "photo" in local_log.heard[1].lower(), why
    assert voice_turns(svc) == 2


@pytest.mark.parametrize("front_end", [False, True], ids=["echo_gate", "webrtc_front_end"])
async def test_visitor_talking_over_the_reply_stops_it_and_is_answered(
    pulse: PulseDaemon,  # noqa: F811
    start_service: StartService,
    local_log: LocalLog,
    front_end: bool,
) -> None:
    """Barge-in on the real devices: a second question spoken while the box reads out a long
    answer stops that answer (stored as interrupted) and becomes the next turn. With the
    front end on, VAD and the echo gate judge the raw microphone (an echo canceller that has
    not converged pulls the visitor down too) and ASR the cleaned audio."""
    svc = await start_service(**with_front_end(front_end))
    with trio.fail_after(15):
        await local_log.listening.wait()
    # The opening hours: ~10 s of speech.
    await say(pulse, "What time do you open?", lead_s=0.5, tail_s=0.0)
    with trio.fail_after(30):
        await local_log.replied.wait()  # reply.done goes out once the first sample has played
    assert local_log.states[-1] == "speaking"
    local_log.next_reply()
    await say(pulse, "Where are the toilets?")
    with trio.fail_after(30):
        await local_log.idle_after_reply.wait()
    assert len(local_log.heard) == 2, local_log.heard
    if not front_end:
        # With the front end, ASR hears the visitor through an echo canceller still adapting
        # during double talk, which can garble the words ("Floor it."): detection and the
        # stop are what that variant shows (a known limit, see docs/bench/README.md).
        assert "toilet" in local_log.heard[1].lower(), local_log.heard
        assert "toilet" in local_log.replies[-1].lower(), local_log.replies
    assert "appliance_barge_ins_total 1.0" in svc.ctx.metrics.render().decode()
    astore = svc.ctx.runner.store
    assert astore is not None
    await astore.flush()
    rows = await trio.to_thread.run_sync(svc.ctx.store.recent_turns, 10)
    by_turn = sorted(rows, key=lambda r: r.turn)
    assert [r.outcome for r in by_turn] == ["interrupted", "ok"], by_turn
    cut = by_turn[0].timings
    # Stopped well before the end: the stored playback span is shorter than the answer.
    assert cut["playback_end"] - cut["tts_first_audio"] < 8000, cut


def test_the_front_end_cleans_mic_blocks_on_the_device_clock(tmp_path: Path) -> None:
    """With echo cancellation on, each mic block passes the WebRTC front end against what the
    speaker played (through the aligner), and its capture time moves back by the front end's
    delay so the echo gate stays aligned."""
    from appliance.audio.farend import MicBlock
    from appliance.config import parse_config
    from appliance.service import ServiceContext
    from appliance.voice.local import LocalVoice

    cfg = parse_config({"audio": {"echo_cancellation": True, "noise_suppression": True}})
    ctx = cast(ServiceContext, SimpleNamespace(cfg=cfg))
    voice = LocalVoice(ctx, cast(Any, None), audio_settings(cfg))
    assert voice.frontend is not None and voice.aligner is not None
    block = MicBlock(np.full(512, 0.1, np.float32), 100.0)
    out = voice._clean(block)
    assert out.t == pytest.approx(100.0 - voice.frontend.delay_s) and len(out.samples) == 512
    assert voice.frontend.stats().frames > 0
    plain = cast(ServiceContext, SimpleNamespace(cfg=parse_config({})))
    off = LocalVoice(plain, cast(Any, None), audio_settings(plain.cfg))
    assert off.frontend is None and off._clean(block) is block


async def test_in_a_lobby_the_box_answers_only_who_addresses_it(
    pulse: PulseDaemon,  # noqa: F811
    start_service: StartService,
    local_log: LocalLog,
    connect: Any,
) -> None:
    """The default listening modes (wake word + touch + a follow-up window) on the real
    devices: talk that is not addressed to the box starts nothing; "Hey Mycroft, ..." does; a
    follow-up right after the reply needs no wake word; a tap on the kiosk screen (`listen`
    over /ws from loopback) opens the microphone for one question."""
    svc = await start_service(**{**SECTIONS, "voice": {"enabled": True, "follow_up_s": 2.0}})
    assert svc.ctx.cfg.voice.listen == ("wake", "touch")  # the default for a new install
    with trio.fail_after(15):
        await local_log.listening.wait()
    # Two people chatting near the box: heard by the microphone, answered by nobody. No sleep
    # to prove a negative: the addressed question must be the very next thing answered.
    await say(pulse, "Can I bring my dog?")
    await say(pulse, "Hey Mycroft, can I take photos?", lead_s=0.5)
    with trio.fail_after(30):
        await local_log.idle_after_reply.wait()
    assert len(local_log.heard) == 1 and "photo" in local_log.heard[0].lower(), local_log.heard
    assert "mycroft" not in local_log.heard[0].lower()  # the wake phrase is not the question
    # Within the follow-up window: no wake word needed.
    local_log.next_reply()
    await say(pulse, "Where are the toilets?", lead_s=0.3)
    with trio.fail_after(30):
        await local_log.idle_after_reply.wait()
    assert len(local_log.heard) == 2 and "toilet" in local_log.heard[1].lower(), local_log.heard
    assert voice_turns(svc) == 2
    # The follow-up window has passed (2.5 s of silence first): not answered. Then a tap on
    # the kiosk's own screen opens the microphone for one question.
    await say(pulse, "Can I bring my dog?", lead_s=2.5)
    async with connect(svc) as screen:
        await screen.hello()
        await screen.send({"type": "listen"})
        local_log.next_reply()
        await say(pulse, "Is there a cafe?", lead_s=0.3)
        with trio.fail_after(30):
            await local_log.idle_after_reply.wait()
    assert len(local_log.heard) == 3 and "caf" in local_log.heard[2].lower(), local_log.heard
    # What the admin status page shows of it.
    assert svc.ctx.local_voice_status is not None
    status = svc.ctx.local_voice_status()
    assert status["listen"] == ["wake", "touch"] and status["wake_word"]
    assert status["wakes_heard"] >= 1 and status["turns"] == 3, status
    # The two remarks about the dog: ignored, or (the detector's near miss "...my dog") a wake
    # that the transcript check refused.
    assert status["utterances_ignored"] + status["false_wakes"] >= 2, status
    assert status["front_end"] is None and status["microphone"], status  # front end off by default
