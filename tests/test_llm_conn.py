"""Kept-alive LLM connections (llm/conn.py) against the real scripted server on loopback:
a connection is reused across turns, and a turn that ends any other way than a complete
stream (barge-in, client gone, stall, fault) closes its connection instead of poisoning the
next turn's. TCP accepts are counted on the server side."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import pytest
import trio
from trio.testing import MockClock

from appliance.fakes.scripted_llm import Script, ScriptedLLM
from appliance.llm.client import Endpoint, LLMError, stream_chat
from appliance.llm.conn import KeepAlive
from appliance.llm.pool import LLMPool

MESSAGES = [{"role": "user", "content": "When do you open?"}]
REPLY = "Hello from the scripted model. "


@pytest.fixture
async def keepalive() -> AsyncIterator[KeepAlive]:
    k = KeepAlive()
    yield k
    k.close()


def make_pool(client: httpx.AsyncClient, keepalive: KeepAlive, url: str) -> LLMPool:
    return LLMPool(
        [Endpoint("local", url, "m")], client, first_token_s=1.0, stall_s=3.0, keepalive=keepalive
    )


async def turn(pool: LLMPool) -> str:
    async def on_delta(text: str, reset: bool) -> None:
        pass

    return (await pool.complete(MESSAGES, on_delta)).text


async def stream(client: httpx.AsyncClient, keepalive: KeepAlive, ep: Endpoint) -> str:
    chat = stream_chat(
        client, ep, MESSAGES, max_tokens=32, temperature=0, stall_s=5, keepalive=keepalive
    )
    async with aclosing(chat) as tokens:
        return "".join([t async for t in tokens])


async def settle(server: ScriptedLLM) -> None:
    with trio.fail_after(1):
        await server.wait_idle()


async def test_one_connection_serves_consecutive_turns(
    server: ScriptedLLM, client: httpx.AsyncClient, keepalive: KeepAlive
) -> None:
    pool = make_pool(client, keepalive, server.url)
    for _ in range(4):
        assert await turn(pool) == REPLY
    assert [s.outcome for s in server.served] == ["done"] * 4
    assert server.accepts == 1
    assert keepalive.opened == 1
    # The same turns over httpx (what main did): a new TCP connection per turn.
    plain = LLMPool([Endpoint("local", server.url, "m")], client, first_token_s=1.0, stall_s=3.0)
    for _ in range(2):
        assert await turn(plain) == REPLY
    assert server.accepts == 3


async def test_concurrent_turns_reuse_what_is_idle(
    server: ScriptedLLM, client: httpx.AsyncClient, keepalive: KeepAlive
) -> None:
    pool = make_pool(client, keepalive, server.url)
    for _ in range(3):
        got: list[str] = []
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(_turn_into, got, pool)
        assert got == [REPLY] * 8
    assert server.accepts == keepalive.opened <= 8


async def _turn_into(out: list[str], pool: LLMPool) -> None:
    out.append(await turn(pool))


@pytest.mark.parametrize("how", ["barge_in", "client_gone", "closed_early"])
async def test_turn_cut_short_mid_stream_does_not_poison_the_next(
    mock_clock: MockClock,
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    keepalive: KeepAlive,
    how: str,
) -> None:
    pool = make_pool(client, keepalive, server.url)
    assert await turn(pool) == REPLY  # one idle connection now, which the next turn takes
    server.script = Script(token_interval_s=0.5)

    class Gone(Exception):
        pass

    async def on_delta(text: str, reset: bool) -> None:
        if how == "client_gone":
            raise Gone  # the kiosk's WebSocket went away while the reply streamed

    if how == "barge_in":
        with trio.move_on_after(0.7) as scope:  # the visitor speaks over the second token
            await pool.complete(MESSAGES, on_delta)
        assert scope.cancelled_caught
    elif how == "client_gone":
        with pytest.raises(Gone):
            await pool.complete(MESSAGES, on_delta)
    else:
        chat = stream_chat(
            client,
            Endpoint("local", server.url, "m"),
            MESSAGES,
            max_tokens=32,
            temperature=0,
            stall_s=5,
            keepalive=keepalive,
        )
        async with aclosing(chat) as tokens:
            async for _ in tokens:
                break
    await settle(server)
    assert server.served[-1].outcome == "aborted"  # the server saw the hang-up at once
    server.script = Script()
    for _ in range(2):
        assert await turn(pool) == REPLY
    # The cut connection was closed, not reused: one new connection, then reuse again.
    assert server.accepts == 2
    assert [s.outcome for s in server.served] == ["done", "aborted", "done", "done"]


@pytest.mark.parametrize(
    ("model", "kind", "accepts"),
    [
        ("script:stall:2", "stall", 2),  # cut mid-body: closed
        ("script:hang_headers", "stall", 2),  # cut before the head: closed
        ("script:garbage", "malformed", 2),  # stopped reading at the garbage: closed
        ("script:http_500", "http_5xx", 1),  # a small error body read to its end: kept
        ("script:empty", "empty", 1),  # a complete stream without content: kept
    ],
)
async def test_faults_map_the_same_and_leave_the_next_turn_clean(
    mock_clock: MockClock,
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    keepalive: KeepAlive,
    model: str,
    kind: str,
    accepts: int,
) -> None:
    with pytest.raises(LLMError) as info:
        await stream(client, keepalive, Endpoint("local", server.url, model))
    assert info.value.kind == kind
    await settle(server)
    assert await stream(client, keepalive, Endpoint("local", server.url, "m")) == REPLY
    assert server.accepts == accepts


async def test_server_closing_idle_connections(
    server: ScriptedLLM, client: httpx.AsyncClient, keepalive: KeepAlive
) -> None:
    server.reuse = "close_idle"  # seen as readable (EOF) before reuse: never sent on
    ep = Endpoint("local", server.url, "m")
    for _ in range(3):
        assert await stream(client, keepalive, ep) == REPLY
    assert server.accepts == 3 and len(server.served) == 3


async def test_request_dropped_on_a_reused_connection_is_sent_again_once(
    server: ScriptedLLM, client: httpx.AsyncClient, keepalive: KeepAlive
) -> None:
    server.reuse = "drop_next"  # the server times out just as our request arrives
    ep = Endpoint("local", server.url, "m")
    for _ in range(3):
        assert await stream(client, keepalive, ep) == REPLY
    assert server.accepts == 3
    assert [s.outcome for s in server.served] == ["done"] * 3


async def test_idle_connection_expires(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, keepalive: KeepAlive
) -> None:
    ep = Endpoint("local", server.url, "m")
    assert await stream(client, keepalive, ep) == REPLY
    await trio.sleep(keepalive.idle_s + 0.5)  # virtual time: servers drop theirs at ~5 s
    assert await stream(client, keepalive, ep) == REPLY
    assert server.accepts == 2


async def test_random_cancellations_never_stall_later_turns(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, keepalive: KeepAlive
) -> None:
    """httpcore 1.0.9's bounded pool leaked a slot per badly timed cancel until every turn
    waited for the pool timeout; here rounds of turns cancelled at random points (before the
    head, mid-body, at the end) leave nothing behind: the next round is served at once."""
    server.script = Script(first_token_s=0.05, token_interval_s=0.02)
    pool = make_pool(client, keepalive, server.url)
    rng = random.Random(7)

    async def cancelled_turn() -> None:
        with trio.move_on_after(rng.uniform(0.0, 0.2)):
            await turn(pool)

    for _ in range(5):
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(cancelled_turn)
        await settle(server)
    got: list[str] = []
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(_turn_into, got, pool)
    assert got == [REPLY] * 30
    assert trio.current_time() - t0 < 0.5  # 0.05 s + 4 x 0.02 s of scripted time, no waiting
    assert sum(1 for s in server.served if s.outcome == "aborted") > 0
