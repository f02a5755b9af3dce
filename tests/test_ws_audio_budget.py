"""Browser microphone audio over /ws has budgets: bytes per second per connection, voice
streams in all, and the box's own microphone first.

The real service with its real voice models on loopback, real WebSocket clients; the box's own
voice conversation is driven through `LocalVoice.emit`, the path its microphone pipeline uses.
"""

from __future__ import annotations

import re
from typing import Any, cast

import httpx
import numpy as np
import trio
from support import Client, StartService, base_url

from appliance.events import StateEvent
from appliance.fakes.scripted_llm import ScriptedLLM
from appliance.supervisor import Service
from appliance.voice.local import LocalVoice, audio_settings
from appliance.web.ws import AUDIO_BURST_S, AUDIO_RATE_FACTOR

VOICE = {"voice": {"enabled": True}}


def silence(seconds: float, rate: int) -> bytes:
    return np.zeros(int(seconds * rate), "<i2").tobytes()


async def bad_input(svc: Service, code: str) -> float:
    async with httpx.AsyncClient() as c:
        text = (await c.get(base_url(svc) + "/metrics")).text
    m = re.search(rf'appliance_bad_input_total{{code="{code}"}} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


async def errors_until_pong(client: Client) -> list[str]:
    """Error codes the server sent before answering a ping sent now (frames are handled in
    order, so everything sent before the ping has been dealt with)."""
    before = len(client.seen)
    await client.send({"type": "ping", "t": 1})
    await client.until("pong")
    return [m["code"] for m in client.seen[before:] if m["type"] == "error"]


async def test_audio_flood_is_dropped_at_the_budget_and_text_still_works(
    start_service: StartService, connect: Any, llm: ScriptedLLM
) -> None:
    llm.script.reply = "Still here for your typed questions."
    svc = await start_service(**VOICE)
    rate, frame_s, frames = 16000, 0.5, 400  # 200 s of audio, sent as fast as loopback allows
    frame = silence(frame_s, rate)
    async with connect(svc) as client:
        await client.hello()
        await client.send({"type": "audio.start", "rate": rate})
        began = trio.current_time()
        for _ in range(frames):
            await client.send(frame)
        errors = await errors_until_pong(client)
        elapsed = trio.current_time() - began
        dropped = await bad_input(svc, "audio_flood")
        accepted_s = (frames - dropped) * frame_s
        # The budget: the burst plus 1.5 x real time (one frame of rounding).
        assert accepted_s <= AUDIO_BURST_S + AUDIO_RATE_FACTOR * elapsed + frame_s, (
            accepted_s,
            elapsed,
        )
        assert accepted_s >= AUDIO_BURST_S - frame_s  # the burst itself got through
        assert errors == ["audio_flood"], errors  # told once, not once per frame
        # Frames longer than the burst are refused before they are decoded (a 1 MiB frame at
        # 8 kHz is 64 s of audio: resampled, 4 MB of floats each).
        await client.send({"type": "audio.start", "rate": 8000})
        await client.send(silence(64.0, 8000)[: 1024 * 1024])
        assert await errors_until_pong(client) == ["frame_too_large"]
        await client.send({"type": "audio.end"})
        # The connection is fine for text.
        done = await client.ask("Are you still there?")
        assert done["text"] == llm.script.reply and done["outcome"] == "ok"


async def test_browser_voice_streams_are_capped_in_all(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service(voice={"enabled": True, "max_browser_sessions": 2})
    async with connect(svc) as a, connect(svc) as b, connect(svc) as c:
        for client in (a, b, c):
            await client.hello()
        for client in (a, b):
            await client.send({"type": "audio.start", "rate": 16000})
            assert await errors_until_pong(client) == []
        await c.send({"type": "audio.start", "rate": 16000})
        assert await errors_until_pong(c) == ["voice_full"]
        assert svc.ctx.voice_streams == 2
        # A stream that ends frees its place.
        await a.send({"type": "audio.end"})
        await errors_until_pong(a)
        await c.send({"type": "audio.start", "rate": 16000})
        await c.send(silence(0.1, 16000))
        assert await errors_until_pong(c) == []
    # ... and so does a client that leaves.
    with trio.fail_after(5):
        while svc.ctx.voice_streams:
            await trio.sleep(0.01)


async def test_voice_off_for_browsers_when_capped_at_zero(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service(voice={"enabled": True, "max_browser_sessions": 0})
    async with connect(svc) as client:
        hello = await client.hello()
        assert hello["config"]["voice"] is False
        await client.send({"type": "audio.start", "rate": 16000})
        assert await errors_until_pong(client) == ["voice_unavailable"]


async def test_the_box_s_own_microphone_comes_first(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service(**VOICE)
    local = LocalVoice(svc.ctx, cast(Any, None), audio_settings(svc.ctx.cfg))
    async with connect(svc) as client:
        await client.hello()
        # A visitor speaks to the box itself: browser voice is refused meanwhile.
        await local.emit(StateEvent("listening"))
        await client.send({"type": "audio.start", "rate": 16000})
        assert await errors_until_pong(client) == ["voice_busy"]
        assert svc.ctx.voice_streams == 0
        await local.emit(StateEvent("idle"))
        await client.send({"type": "audio.start", "rate": 16000})
        await client.send(silence(0.1, 16000))
        assert await errors_until_pong(client) == []
        assert svc.ctx.voice_streams == 1
        # The box's own conversation starts a turn: the browser stream ends, said once.
        await local.emit(StateEvent("thinking"))
        for _ in range(3):
            await client.send(silence(0.1, 16000))
        assert await errors_until_pong(client) == ["voice_busy"]
        assert svc.ctx.voice_streams == 0
        await local.emit(StateEvent("idle"))
        await client.send({"type": "audio.start", "rate": 16000})
        await client.send(silence(0.1, 16000))
        assert await errors_until_pong(client) == []
