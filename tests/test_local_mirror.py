"""The box's own voice conversation mirrored to the kiosk screen over /ws (`voice.local {msg}`).

Real service on loopback; local voice messages enter through `LocalVoice.emit` (the path the
kiosk's microphone pipeline uses) and, in the last test, from a spoken question on a PulseAudio
virtual microphone through the whole local pipeline.
"""

from __future__ import annotations

import socket
from typing import Any, cast

import httpx
import numpy as np
import pytest
import trio
import trio.testing
from pulse import RATE, PulseDaemon, pulse  # noqa: F401  (fixture)
from support import Client, StartService, event
from trio_websocket import open_websocket_url
from voicefixtures import speech_16k

from appliance.audio.resample import resample
from appliance.events import (
    to_wire,
)
from appliance.fakes.scripted_llm import Script, ScriptedLLM
from appliance.mirror import LocalMirror
from appliance.supervisor import Service
from appliance.voice.local import LocalVoice, audio_settings

# One local voice exchange as the pipeline emits it (deltas word by word, Markdown included).
EXCHANGE: list[dict[str, Any]] = [
    {"type": "state", "state": "listening"},
    {"type": "transcript", "text": "when do you", "final": False},
    {"type": "transcript", "text": "When do you open?", "final": True},
    {"type": "state", "state": "thinking"},
    {"type": "reply.delta", "turn": 1, "text": "We open at "},
    {"type": "reply.delta", "turn": 1, "text": "**9:30**."},
    {"type": "state", "state": "speaking"},
    {
        "type": "reply.done",
        "turn": 1,
        "text": "We open at **9:30**.",
        "outcome": "ok",
        "timings": {"voice_to_voice_ms": 812.0},
    },
    {"type": "state", "state": "idle"},
]


def wire(events: Any) -> list[dict[str, Any]]:
    return [to_wire(e) for e in events]


def local_voice(svc: Service) -> LocalVoice:
    """The local voice task's object, without its devices running: only `emit` is used (it
    needs no voice engine)."""
    return LocalVoice(svc.ctx, cast(Any, None), audio_settings(svc.ctx.cfg))


async def kiosk_hello(c: Client, **extra: Any) -> dict[str, Any]:
    """hello as the kiosk screen; returns the answer, after the session's own `state` that
    immediately follows it (anything mirrored comes after both)."""
    await c.send({"type": "hello", "local": True, **extra})
    hello = await c.until("hello")
    assert (await c.recv())["type"] == "state"
    return hello


async def local_until(c: Client, inner: str, within: float = 10.0) -> list[dict[str, Any]]:
    """Mirrored messages (unwrapped) up to and including the first of type `inner`; a message
    of the page's own session in between is a failure."""
    got: list[dict[str, Any]] = []
    with trio.fail_after(within):
        while True:
            msg = await c.recv()
            if msg["type"] in ("ping", "pong"):
                continue
            assert msg["type"] == "voice.local", msg
            got.append(msg["msg"])
            if msg["msg"]["type"] == inner:
                return got


async def pong_after(c: Client) -> list[dict[str, Any]]:
    """Everything the server sent before answering a ping sent now."""
    await c.send({"type": "ping", "t": 7})
    before = len(c.seen)
    await c.until("pong")
    return c.seen[before:-1]


# -- the fan-out itself ----------------------------------------------------------------------------


async def test_mirror_merges_what_is_superseded_and_drops_what_does_not_fit() -> None:
    mirror = LocalMirror(limit=4)
    sub = mirror.subscribe()
    assert wire(sub._buf) == [{"type": "state", "state": "idle"}]  # the current state first
    for m in EXCHANGE[:7]:
        assert mirror.publish(event(m)) in (0, 1)
    # idle->listening collapse; the buffer is then full with four distinct messages, so both
    # deltas are dropped (counted) while the newer state still replaces the older one.
    assert wire(sub._buf) == [
        {"type": "state", "state": "listening"},
        {"type": "transcript", "text": "when do you", "final": False},
        {"type": "transcript", "text": "When do you open?", "final": True},
        {"type": "state", "state": "speaking"},
    ]
    assert sub.dropped == mirror.dropped == 2
    taken = [to_wire(await sub.receive()) for _ in range(4)]
    assert taken[0]["state"] == "listening" and len(sub) == 0
    # A reset delta starts over and is never merged into what came before it.
    mirror.publish(event({"type": "reply.delta", "turn": 2, "text": "a"}))
    mirror.publish(event({"type": "reply.delta", "turn": 2, "text": "b", "reset": True}))
    mirror.publish(event({"type": "reply.delta", "turn": 2, "text": "c"}))
    assert [(m["text"], m.get("reset")) for m in wire(sub._buf)] == [("a", None), ("bc", True)]
    for i in range(10):
        assert mirror.publish(event({"type": "reply.done", "turn": 10 + i, "text": "x"})) == (i < 2)
    assert len(sub) == 4 and sub.dropped == mirror.dropped == 10
    # Audio (and anything else outside the dialog messages) is never mirrored.
    assert mirror.publish(event({"type": "audio.start", "turn": 1, "rate": 22050})) == 0
    # A reader takes what is buffered, then waits; closing ends it and unsubscribes.
    drained: list[dict[str, Any]] = []

    async def read_all() -> None:
        async for m in sub:
            drained.append(to_wire(m))

    async with trio.open_nursery() as n:
        n.start_soon(read_all)
        await trio.testing.wait_all_tasks_blocked()
        assert len(drained) == 4 and len(sub) == 0
        sub.close()
    assert mirror.subscriptions == ()
    assert mirror.publish(event({"type": "state", "state": "idle"})) == 0


async def test_mirror_buffer_merges_exactly() -> None:
    mirror = LocalMirror(limit=64)
    sub = mirror.subscribe()
    for m in EXCHANGE:
        mirror.publish(event(m))
    got = [to_wire(await sub.receive()) for _ in range(len(sub))]
    assert got == [
        {"type": "state", "state": "listening"},
        {"type": "transcript", "text": "when do you", "final": False},
        {"type": "transcript", "text": "When do you open?", "final": True},
        {"type": "state", "state": "thinking"},
        {"type": "reply.delta", "turn": 1, "text": "We open at **9:30**."},
        {"type": "state", "state": "speaking"},
        EXCHANGE[7],
        {"type": "state", "state": "idle"},
    ]
    assert sub.dropped == 0 and mirror.published == len(EXCHANGE)


# -- over /ws --------------------------------------------------------------------------------------


async def test_kiosk_screen_sees_the_local_turn_and_other_pages_do_not(
    start_service: StartService, connect: Any, llm: ScriptedLLM
) -> None:
    svc = await start_service()
    voice = local_voice(svc)
    async with connect(svc) as screen, connect(svc) as tablet, connect(svc) as old:
        hello = await kiosk_hello(screen)
        assert hello["local"] is True
        assert (await local_until(screen, "state"))[-1] == {"type": "state", "state": "idle"}
        assert (await tablet.hello())["local"] is False  # did not ask
        assert (await kiosk_hello(old, session=None, local=False))["local"] is False
        assert len(svc.ctx.local_mirror.subscriptions) == 1

        for m in EXCHANGE:
            await voice.emit(event(m))
        got = await local_until(screen, "reply.done")
        got += await local_until(screen, "state")
        finals = [m["text"] for m in got if m["type"] == "transcript" and m["final"]]
        assert finals == ["When do you open?"]
        text = "".join(m["text"] for m in got if m["type"] == "reply.delta")
        assert text == "We open at **9:30**."
        done = [m for m in got if m["type"] == "reply.done"]
        assert done[0]["text"] == "We open at **9:30**." and done[0]["turn"] == 1
        assert got[-1] == {"type": "state", "state": "idle"}
        assert {m["type"] for m in got} <= {"state", "transcript", "reply.delta", "reply.done"}

        # The pages that did not ask (or asked not to) got none of it.
        for c in (tablet, old):
            assert all(m["type"] != "voice.local" for m in await pong_after(c))
            assert all(m["type"] != "voice.local" for m in c.seen)

        # The screen's own session is untouched: its own turn streams unwrapped, numbered 1.
        llm.script = Script(reply="Own answer.")
        own = await screen.ask("And tickets?")
        assert own["text"] == "Own answer." and own["turn"] == 1

        # local: false unsubscribes; later local messages no longer arrive.
        assert (await kiosk_hello(screen, local=False))["local"] is False
        assert svc.ctx.local_mirror.subscriptions == ()
        await voice.emit(event({"type": "transcript", "text": "Anyone?", "final": True}))
        assert all(m["type"] != "voice.local" for m in await pong_after(screen))


async def test_a_reconnecting_screen_gets_the_current_local_state(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service()
    voice = local_voice(svc)
    await voice.emit(event({"type": "state", "state": "speaking"}))
    async with connect(svc) as screen:
        assert (await kiosk_hello(screen))["local"] is True  # hello, own state, then the mirror
        assert await local_until(screen, "state") == [{"type": "state", "state": "speaking"}]
        # A second hello on the same socket (start over) keeps the mirror, no duplicate replay.
        assert (await kiosk_hello(screen))["local"] is True
        assert len(svc.ctx.local_mirror.subscriptions) == 1
        assert all(m["type"] != "voice.local" for m in await pong_after(screen))


async def test_bad_local_field_is_an_error_and_the_connection_stays(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service()
    async with connect(svc) as c:
        await c.send({"type": "hello", "local": "yes"})
        err = await c.until("error")
        assert err["code"] == "bad_field" and "local" in err["message"]
        assert svc.ctx.local_mirror.subscriptions == ()
        assert (await kiosk_hello(c))["local"] is True


def _lan_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.123", 9))  # no packet is sent: this only picks a route
            addr = str(s.getsockname()[0])
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


async def test_a_lan_browser_never_gets_the_mirror_even_when_it_asks(
    start_service: StartService, connect: Any
) -> None:
    lan = _lan_address()
    if lan is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    svc = await start_service(web={"host": "0.0.0.0"})
    port = int(svc.urls[0].rsplit(":", 1)[1])
    voice = local_voice(svc)
    async with open_websocket_url(f"ws://{lan}:{port}/ws", disconnect_timeout=2) as ws:
        phone = Client(ws)
        hello = await kiosk_hello(phone)
        assert hello["local"] is False
        assert svc.ctx.local_mirror.subscriptions == ()
        async with connect(svc) as screen:  # loopback: the same request is granted
            assert (await kiosk_hello(screen))["local"] is True
            for m in EXCHANGE:
                await voice.emit(event(m))
            assert (await local_until(screen, "reply.done"))[-1]["text"] == EXCHANGE[7]["text"]
        assert all(m["type"] != "voice.local" for m in await pong_after(phone))
        assert all(m["type"] != "voice.local" for m in phone.seen)
    await ws._stream.aclose()  # after the exit: inside it, the close could wait for ever


async def test_a_screen_that_never_reads_does_not_block_the_local_voice(
    start_service: StartService, connect: Any
) -> None:
    svc = await start_service(web={"send_queue": 16})
    mirror = svc.ctx.local_mirror
    voice = local_voice(svc)
    big = "x" * 60_000
    async with connect(svc, message_queue_size=1) as lazy:
        assert (await kiosk_hello(lazy))["local"] is True
        (sub,) = mirror.subscriptions
        # The page stops reading: socket buffers, then half its send queue, then its mirror
        # buffer fill up; distinct replies cannot merge, so the mirror must start dropping.
        turn = 0
        with trio.fail_after(30):
            while mirror.dropped == 0:
                turn += 1
                await voice.emit(event({"type": "reply.done", "turn": turn, "text": big}))
        assert sub.dropped == mirror.dropped > 0
        for _ in range(50):
            turn += 1
            await voice.emit(event({"type": "reply.done", "turn": turn, "text": big}))
        # Bounded, and every message is accounted for: forwarded to the page's send queue,
        # still waiting in the mirror buffer, or dropped (replies never merge; +1: the state
        # replayed on subscribing). The page took only a few of them.
        assert len(sub) <= sub.limit
        assert sub.dropped == mirror.dropped
        assert sub.delivered + len(sub) + sub.dropped == turn + 1
        assert sub.delivered < turn // 2
        assert len(voice.messages) == voice.messages.maxlen  # the local voice went on
        # Every other page is served as before: a screen that reads gets the next local turn.
        async with connect(svc) as screen:
            assert (await kiosk_hello(screen))["local"] is True
            await voice.emit(event({"type": "transcript", "text": "Still here?", "final": True}))
            got = await local_until(screen, "transcript")
            assert got[-1]["text"] == "Still here?"
        # The slow page was not closed because of the mirror (its own session's policy is
        # unchanged: test_web.py's never-reading client is still closed as a slow consumer).
        async with httpx.AsyncClient(base_url=svc.urls[0]) as http:
            metrics = (await http.get("/metrics")).text
        assert 'appliance_ws_closed_total{reason="slow_consumer"}' not in metrics
        assert sub in mirror.subscriptions


# -- end to end: the box's own microphone ----------------------------------------------------------


async def test_spoken_question_on_the_box_shows_on_the_kiosk_screen(
    pulse: PulseDaemon,  # noqa: F811
    start_service: StartService,
    connect: Any,
) -> None:
    svc = await start_service(
        audio={"enabled": True},
        voice={"enabled": True, "listen": ["always"]},
        knowledge={"semantic": True, "answer_mode": "faq"},
    )
    async with connect(svc) as screen, connect(svc) as tablet:
        assert (await kiosk_hello(screen))["local"] is True
        await tablet.hello()
        q = speech_16k("Can I bring my dog?")
        question = np.concatenate([np.zeros(8000, np.float32), q, np.zeros(16000, np.float32)])
        await pulse.feed_mic(resample(question, 16000, RATE), RATE)
        got = await local_until(screen, "reply.done", within=40)
        heard = " ".join(m["text"] for m in got if m["type"] == "transcript" and m["final"])
        assert "dog" in heard.lower() or "bring" in heard.lower(), got
        assert got[-1]["text"], got  # the reply, as spoken on the box
        # The screen follows the turn. "thinking" may be superseded before the page reads it
        # (the mirror keeps a page's newest state): an answer decided during the visitor's
        # silence starts speaking at once.
        states = [m["state"] for m in got if m["type"] == "state"]
        assert "speaking" in states and states.index("listening") < states.index("speaking"), got
        assert set(states) <= {"idle", "listening", "thinking", "speaking"}, got
        assert all(m["type"] != "voice.local" for m in await pong_after(tablet))
