"""Browser voice over /ws: PCM16 mic frames in, transcripts + reply text + reply audio out.

The real service (real Silero/Moonshine/Piper models, scripted LLM over HTTP) on loopback.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import trio
from support import StartService
from voicefixtures import speech_16k

from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.voice.engine import engine_of
from appliance.voice.prefill import warm_chunks

FRAME = 1600  # 100 ms of 16 kHz audio per binary frame


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


class Rx:
    """Everything the server sent, text and binary, in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.msgs: list[dict[str, Any]] = []
        self.audio: list[bytes] = []
        self.order: list[str] = []

    async def next(self) -> None:
        raw = await self.ws.get_message()
        if isinstance(raw, bytes):
            self.audio.append(raw)
            self.order.append("binary")
        else:
            msg = json.loads(raw)
            self.msgs.append(msg)
            self.order.append(msg["type"])

    async def until(self, pred: Any, within: float = 30.0) -> dict[str, Any]:
        with trio.fail_after(within):
            while True:
                for m in self.msgs:
                    if pred(m):
                        return m
                await self.next()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.msgs if m["type"] == kind]


async def speak(client: Any, rx: Rx, stream: np.ndarray) -> None:
    """`stream` (16 kHz) as a browser microphone sends it, between audio.start and .end."""
    await client.send({"type": "audio.start", "rate": 16000})
    for i in range(0, len(stream), FRAME):
        await client.send(pcm16(stream[i : i + FRAME]))
        # Paced like a microphone (a little fast): audio beyond 1.5 x real time is dropped.
        await trio.sleep(FRAME / 16000 / 1.25)
        if i >= 16000 and not rx.of("transcript"):
            # A live mic is slower than this loop: give the partial pass its time once.
            await rx.until(lambda m: m["type"] == "transcript", within=10)
    await client.send({"type": "audio.end"})


async def test_voice_question_gets_transcripts_reply_and_audio(
    start_service: StartService, connect: Any, llm: ScriptedLLM
) -> None:
    llm.script.reply = "The museum opens at ten on Sundays."
    svc = await start_service(voice={"enabled": True})
    question = speech_16k("What are the opening hours?")
    stream = np.concatenate([np.zeros(4800, np.float32), question, np.zeros(16000, np.float32)])
    async with connect(svc) as client:
        rx = Rx(client.ws)
        await client.send({"type": "hello"})
        hello = await rx.until(lambda m: m["type"] == "hello")
        assert hello["config"]["voice"] is True
        await client.send(pcm16(stream[:FRAME]))  # before audio.start: still out of protocol
        err = await rx.until(lambda m: m["type"] == "error")
        assert err["code"] == "audio_not_started"

        await speak(client, rx, stream)
        done = await rx.until(lambda m: m["type"] == "reply.done")
        end = await rx.until(lambda m: m["type"] == "audio.end")

    transcripts = rx.of("transcript")
    finals = [m for m in transcripts if m["final"]]
    assert transcripts[0]["final"] is False, "a partial comes first"
    assert len(finals) == 1 and "opening hours" in finals[0]["text"].lower()
    assert "".join(m["text"] for m in rx.of("reply.delta")).strip() == llm.script.reply
    assert done["text"] == llm.script.reply and done["outcome"] == "ok"
    for key in ("asr_final_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms"):
        assert key in done["timings"], key
    start = rx.of("audio.start")[0]
    assert start["turn"] == done["turn"] == end["turn"] and start["rate"] == 22050
    # binary reply audio sits between audio.start and audio.end, and is speech, not silence
    i0, i1 = rx.order.index("audio.start"), rx.order.index("audio.end")
    assert "binary" in rx.order[i0:i1]
    reply = np.frombuffer(b"".join(rx.audio), dtype="<i2").astype(np.float32) / 32768
    assert len(reply) / 22050 > 1.0 and float(np.sqrt(np.mean(reply**2))) > 0.01
    states = [m["state"] for m in rx.of("state")]
    assert states[:2] == ["idle", "listening"] and "speaking" in states


async def test_audio_end_then_binary_is_out_of_protocol_again(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service(voice={"enabled": True})
    async with connect(svc) as client:
        rx = Rx(client.ws)
        await client.send({"type": "hello"})
        await client.send({"type": "audio.start", "rate": 16000})
        await client.send(pcm16(np.zeros(FRAME, np.float32)))
        await client.send({"type": "audio.end"})
        await client.send(pcm16(np.zeros(FRAME, np.float32)))
        err = await rx.until(lambda m: m["type"] == "error")
        assert err["code"] == "audio_not_started"
        assert rx.of("hello")[0]["config"]["voice"] is True


async def test_a_first_question_is_answered_from_speech_made_while_idle(
    start_service: StartService, connect: Any
) -> None:
    """After READY the service makes the usual replies' speech while nobody talks
    (voice.warm_replies); a browser's first question of a kind then starts from it."""
    svc = await start_service(
        voice={"enabled": True, "warm_replies": True},
        knowledge={"semantic": True, "answer_mode": "faq", "fact_guard": True},
    )
    engine = engine_of(svc.ctx)
    assert engine is not None
    ticket = next(e.answer for e in svc.ctx.runner.knowledge.entries if "ticket" in e.question)
    usual = [*svc.ctx.runner.usual_replies(), svc.ctx.cfg.voice.retry_reply]
    assert ticket in usual
    chunks = warm_chunks(usual)
    with trio.fail_after(120):
        while not all(engine.spoken.holds(engine.tts.model, c, 1.0) for c in chunks):
            await trio.sleep(0.2)  # waits for the background work; asserts no timing
    assert engine.spoken.size[0] == len(chunks) and engine.spoken.hits == 0
    question = speech_16k("How much does a ticket cost?")
    stream = np.concatenate([np.zeros(4800, np.float32), question, np.zeros(16000, np.float32)])
    async with connect(svc) as client:
        rx = Rx(client.ws)
        await client.send({"type": "hello"})
        await speak(client, rx, stream)
        done = await rx.until(lambda m: m["type"] == "reply.done")
        await rx.until(lambda m: m["type"] == "audio.end")
    assert done["kind"] == "faq" and done["text"] == ticket
    assert engine.spoken.hits == 1 and rx.audio
