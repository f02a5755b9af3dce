"""LLMPool against real scripted servers on loopback (virtual time), and the pure HedgePlan."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio.testing import MockClock

from appliance.fakes.scripted_llm import Script, ScriptedLLM
from appliance.llm.client import Endpoint
from appliance.llm.conn import KeepAlive
from appliance.llm.pool import AllEndpointsFailed, Completion, HedgePlan, LLMPool

MESSAGES = [{"role": "user", "content": "Can I bring my dog?"}]
REPLY = "Hello from the scripted model. "


class Recorder:
    def __init__(self) -> None:
        self.deltas: list[tuple[str, bool]] = []
        self.errors: list[tuple[str, str]] = []

    async def on_delta(self, text: str, reset: bool) -> None:
        self.deltas.append((text, reset))

    def on_error(self, endpoint: str, kind: str) -> None:
        self.errors.append((endpoint, kind))


def make_pool(
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    rec: Recorder,
    *models: tuple[str, str, str],
    first_token_s: float = 1.0,
    stall_s: float = 3.0,
) -> LLMPool:
    eps = [Endpoint(name, url, model) for name, url, model in models]
    return LLMPool(
        eps,
        client,
        first_token_s=first_token_s,
        stall_s=stall_s,
        on_error=rec.on_error,
        keepalive=via,
    )


def outcomes(server: ScriptedLLM) -> dict[str, str]:
    return {s.model: s.outcome for s in server.served}


async def settle(server: ScriptedLLM) -> None:
    with trio.fail_after(1):
        await server.wait_idle()


async def test_first_endpoint_answers_alone(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(client, via, rec, ("a", server.url, "script:ok:0.5"), ("b", server.url, "b"))
    result = await pool.complete(MESSAGES, rec.on_delta)
    assert result == Completion(
        text=REPLY, endpoint="a", first_token_s=result.first_token_s, errors=[]
    )
    assert 0.5 <= result.first_token_s < 0.6
    assert "".join(t for t, _ in rec.deltas) == REPLY and len(rec.deltas) == 5
    assert not any(reset for _, reset in rec.deltas)
    assert [s.model for s in server.served] == ["script:ok:0.5"]  # no hedge was needed
    a, b = pool.health
    assert a.ok is True and a.last_latency_s is not None and 0.5 <= a.last_latency_s < 0.6
    assert b.ok is None


async def test_hedge_second_endpoint_wins_and_first_is_closed(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    server.script = Script(token_interval_s=0.5)
    pool = make_pool(
        client, via, rec, ("slow", server.url, "script:slow_first:10"), ("fast", server.url, "fast")
    )
    loser_seen: list[str] = []

    async def on_delta(text: str, reset: bool) -> None:
        await rec.on_delta(text, reset)
        loser_seen.append(outcomes(server)["script:slow_first:10"])

    result = await pool.complete(MESSAGES, on_delta)
    assert (result.endpoint, result.text, result.errors) == ("fast", REPLY, [])
    assert 1.0 <= result.first_token_s < 1.1  # hedged after first_token_s, not after 10 s
    # The loser's stream was closed when the winner's first token came, not at the end.
    assert loser_seen[1:] == ["aborted"] * 4
    await settle(server)
    assert outcomes(server) == {"script:slow_first:10": "aborted", "fast": "done"}
    assert rec.errors == []  # a cancelled loser is not a failure
    assert pool.health[0].ok is None and pool.health[0].consecutive_failures == 0


async def test_hedge_first_endpoint_can_still_win(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(
        client,
        via,
        rec,
        ("a", server.url, "script:slow_first:1.5"),
        ("b", server.url, "script:slow_first:5"),
    )
    result = await pool.complete(MESSAGES, rec.on_delta)
    assert result.endpoint == "a" and 1.5 <= result.first_token_s < 1.6
    await settle(server)
    assert outcomes(server) == {"script:slow_first:1.5": "done", "script:slow_first:5": "aborted"}


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("script:http_429", "http_429"),
        ("script:http_500", "http_5xx"),
        ("script:garbage", "malformed"),
        ("script:empty", "empty"),
        (None, "refused"),
    ],
)
async def test_failover_before_first_token(
    mock_clock: MockClock,
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    dead_url: str,
    model: str | None,
    kind: str,
) -> None:
    rec = Recorder()
    first = ("a", server.url, model) if model else ("a", dead_url, "m")
    pool = make_pool(client, via, rec, first, ("b", server.url, "b"))
    result = await pool.complete(MESSAGES, rec.on_delta)
    assert result.endpoint == "b" and result.text == REPLY
    assert result.first_token_s < 0.1  # the next one started at once, no hedge wait
    assert [(e.endpoint, e.kind) for e in result.errors] == [("a", kind)]
    assert rec.errors == [("a", kind)]
    assert not any(reset for _, reset in rec.deltas)  # nothing was shown before b
    a, b = pool.health
    assert (a.ok, a.consecutive_failures, b.ok) == (False, 1, True)
    assert a.last_error is not None and a.last_error.startswith(kind)


async def test_stall_mid_stream_fails_over_with_reset(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(
        client, via, rec, ("a", server.url, "script:stall:2"), ("b", server.url, "b"), stall_s=2.0
    )
    t0 = trio.current_time()
    result = await pool.complete(MESSAGES, rec.on_delta)
    assert 2.0 <= trio.current_time() - t0 < 2.1
    assert rec.deltas[:3] == [("Hello ", False), ("from ", False), ("Hello ", True)]
    assert "".join(t for t, _ in rec.deltas[2:]) == REPLY
    assert (result.endpoint, result.text) == ("b", REPLY)
    assert [e.kind for e in result.errors] == ["stall"]
    assert result.first_token_s < 0.1  # the visitor saw a's first token at once
    await settle(server)
    assert outcomes(server) == {"script:stall:2": "aborted", "b": "done"}


async def test_all_fail(
    mock_clock: MockClock,
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    dead_url: str,
) -> None:
    rec = Recorder()
    pool = make_pool(
        client,
        via,
        rec,
        ("a", server.url, "script:http_429"),
        ("b", server.url, "script:http_500"),
        ("c", dead_url, "m"),
    )
    with pytest.raises(AllEndpointsFailed) as info:
        await pool.complete(MESSAGES, rec.on_delta)
    assert [(e.endpoint, e.kind) for e in info.value.errors] == [
        ("a", "http_429"),
        ("b", "http_5xx"),
        ("c", "refused"),
    ]
    assert rec.errors == [("a", "http_429"), ("b", "http_5xx"), ("c", "refused")]
    assert rec.deltas == []
    assert [h.ok for h in pool.health] == [False, False, False]


async def test_failover_mid_stream_with_nothing_left_raises(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(client, via, rec, ("a", server.url, "script:stall:1"), stall_s=1.0)
    with pytest.raises(AllEndpointsFailed) as info:
        await pool.complete(MESSAGES, rec.on_delta)
    assert [e.kind for e in info.value.errors] == ["stall"]
    assert rec.deltas == [("Hello ", False)]


async def test_a_first_token_within_first_token_s_is_waited_for_past_stall_s(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    """A restarted local server evaluates the whole prompt before its first token (4 s here):
    with first_token_s = 6 s that is on time, not a stall at stall_s (3 s), whether the server
    sends its headers first (this one) or only with the first token (llama-cpp-python)."""
    rec = Recorder()
    pool = make_pool(
        client, via, rec, ("local", server.url, "script:slow_first:4.0"), first_token_s=6.0
    )
    result = await pool.complete(MESSAGES, rec.on_delta)
    assert result.text == REPLY and 4.0 <= result.first_token_s < 4.1
    assert rec.errors == []
    slow = make_pool(
        client, via, rec, ("local", server.url, "script:slow_first:7.0"), first_token_s=6.0
    )
    with pytest.raises(AllEndpointsFailed) as info:  # beyond first_token_s: still given up
        await slow.complete(MESSAGES, rec.on_delta)
    assert [e.kind for e in info.value.errors] == ["stall"]


async def test_hung_headers_are_given_up_after_the_first_token_budget(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(
        client, via, rec, ("local", server.url, "script:hang_headers"), first_token_s=6.0
    )
    t0 = trio.current_time()
    with pytest.raises(AllEndpointsFailed) as info:
        await pool.complete(MESSAGES, rec.on_delta)
    assert [e.kind for e in info.value.errors] == ["stall"]
    assert 6.0 <= trio.current_time() - t0 < 6.1
    await settle(server)


async def test_vision_filtering(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient
) -> None:
    rec = Recorder()
    eps = [
        Endpoint("text", server.url, "text-only"),
        Endpoint("eyes", server.url, "vl", vision=True),
    ]
    pool = LLMPool(eps, client, first_token_s=1.0, stall_s=3.0)
    result = await pool.complete(MESSAGES, rec.on_delta, need_vision=True)
    assert result.endpoint == "eyes"
    assert [s.model for s in server.served] == ["vl"]
    blind = LLMPool(eps[:1], client, first_token_s=1.0, stall_s=3.0)
    with pytest.raises(AllEndpointsFailed) as info:
        await blind.complete(MESSAGES, rec.on_delta, need_vision=True)
    assert [e.kind for e in info.value.errors] == ["no_vision"]
    assert len(server.served) == 1


async def test_cancelling_complete_closes_every_stream(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(
        client,
        via,
        rec,
        ("a", server.url, "script:slow_first:50"),
        ("b", server.url, "script:slow_first:60"),
        stall_s=100.0,
    )
    t0 = trio.current_time()
    with trio.move_on_after(3.0) as scope:
        await pool.complete(MESSAGES, rec.on_delta)
    assert scope.cancelled_caught
    assert trio.current_time() - t0 < 3.1
    await settle(server)
    assert outcomes(server) == {
        "script:slow_first:50": "aborted",
        "script:slow_first:60": "aborted",
    }
    assert rec.errors == [] and rec.deltas == []


async def test_cancel_mid_stream(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    server.script = Script(token_interval_s=1.0)
    pool = make_pool(client, via, rec, ("a", server.url, "a"))
    with trio.move_on_after(2.5):
        await pool.complete(MESSAGES, rec.on_delta)
    assert [t for t, _ in rec.deltas] == ["Hello ", "from ", "the "]
    await settle(server)
    assert outcomes(server) == {"a": "aborted"}


async def test_repeatedly_failing_endpoint_moves_to_the_back_for_a_while(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    pool = make_pool(client, via, rec, ("a", server.url, "script:http_500"), ("b", server.url, "b"))
    for _ in range(3):
        assert (await pool.complete(MESSAGES, rec.on_delta)).endpoint == "b"
    assert pool.health[0].consecutive_failures == 3
    assert [ep.name for ep in pool.candidates()] == ["b", "a"]
    served = len(server.served)
    assert (await pool.complete(MESSAGES, rec.on_delta)).endpoint == "b"
    assert [s.model for s in server.served[served:]] == ["b"]  # a not even tried
    await trio.sleep(31)
    assert [ep.name for ep in pool.candidates()] == ["a", "b"]


async def test_probe_all_records_health_and_never_raises(
    mock_clock: MockClock,
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    dead_url: str,
) -> None:
    rec = Recorder()
    pool = make_pool(
        client,
        via,
        rec,
        ("ok", server.url, "script:ok:0.2"),
        ("broken", server.url, "script:http_500"),
        ("gone", dead_url, "m"),
        ("hung", server.url, "script:hang_headers"),
    )
    t0 = trio.current_time()
    health = await pool.probe_all(timeout_s=2.0)
    assert trio.current_time() - t0 < 2.1  # concurrently, not one after another
    assert [h.ok for h in health] == [True, False, False, False]
    assert health[0].last_latency_s is not None and 0.2 <= health[0].last_latency_s < 0.3
    kinds = [h.last_error.split(":")[0] if h.last_error else None for h in health]
    assert kinds == [None, "http_5xx", "refused", "timeout"]
    assert sorted(rec.errors) == [("broken", "http_5xx"), ("gone", "refused"), ("hung", "timeout")]
    assert health[3].last_error_at is not None


async def test_prime_evaluates_the_prompt_on_a_loopback_endpoint_only(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    rec = Recorder()
    local = make_pool(client, via, rec, ("local", server.url, "m"))
    assert await local.prime(MESSAGES, timeout_s=2.0)
    assert server.requests[-1]["messages"] == MESSAGES and server.requests[-1]["max_tokens"] == 1
    # A remote first endpoint is never sent a second, paid request: no connection is made.
    sent = len(server.requests)
    remote = make_pool(client, via, rec, ("cloud", "https://api.example.com/v1", "m"))
    assert not await remote.prime(MESSAGES, timeout_s=2.0)
    assert len(server.requests) == sent and rec.errors == []
    # A failing local endpoint: False, and the turn that follows finds out for itself.
    broken = make_pool(client, via, rec, ("local", server.url, "script:http_500"))
    assert not await broken.prime(MESSAGES, timeout_s=2.0)


async def test_warm_sends_the_prefix_to_every_loopback_endpoint_and_reports_each(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, dead_url: str
) -> None:
    rec = Recorder()
    pool = make_pool(
        client,
        via,
        rec,
        ("cloud", "https://api.example.com/v1", "m"),  # remote: never sent a warm-up
        ("local", server.url, "m"),
        ("broken", server.url, "script:http_500"),
        ("gone", dead_url, "m"),
    )
    out = await pool.warm(MESSAGES, timeout_s=2.0)
    assert set(out) == {"local", "broken", "gone"}
    assert out["local"] is None
    assert out["broken"] and out["broken"].startswith("http_5xx")
    assert out["gone"] and out["gone"].startswith("refused")
    warmed = [r for r in server.requests if r["model"] == "m"]
    assert len(warmed) == 1 and warmed[0]["messages"] == MESSAGES
    assert warmed[0]["max_tokens"] == 1 and not warmed[0]["stream"]


# --- the pure policy --------------------------------------------------------------------------


def test_plan_hedges_on_timer_and_picks_first_token() -> None:
    plan = HedgePlan(n=3, first_token_s=1.0)
    assert plan.start(0.0) == [0]
    assert plan.hedge_deadline() == 1.0
    assert plan.on_hedge_timer(0.5) == []  # early wake-up does nothing
    assert plan.on_hedge_timer(1.0) == [1]
    assert plan.hedge_deadline() == 2.0
    assert plan.on_token(1) == (True, False, [0])
    assert plan.hedge_deadline() is None
    assert plan.on_token(0) == (False, False, [])  # a cancelled loser's late token is dropped
    assert plan.on_failure(0, 1.5) == []


def test_plan_failover_resets_only_after_something_was_shown() -> None:
    plan = HedgePlan(n=3, first_token_s=1.0)
    plan.start(0.0)
    assert plan.on_failure(0, 0.1) == [1]  # failed before a token: next at once
    assert plan.on_token(1) == (True, False, [])
    assert plan.on_failure(1, 2.0) == [2]  # failed mid-stream
    assert plan.on_token(2) == (True, True, [])
    assert plan.on_token(2) == (True, False, [])
    assert plan.on_failure(2, 3.0) == []
    assert plan.exhausted


def test_plan_failure_while_hedging_starts_the_next() -> None:
    plan = HedgePlan(n=3, first_token_s=1.0)
    plan.start(0.0)
    assert plan.on_hedge_timer(1.0) == [1]
    assert plan.on_failure(1, 1.2) == [2]  # 0 still running, 2 joins
    assert plan.live == [0, 2]
    assert plan.hedge_deadline() is None  # nothing untried left
    assert plan.on_failure(0, 1.3) == []
    assert not plan.exhausted
    assert plan.on_failure(2, 1.4) == []
    assert plan.exhausted


async def test_on_delta_error_propagates_unwrapped_and_closes_streams(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    server.script = Script(token_interval_s=1.0)
    pool = make_pool(client, via, Recorder(), ("a", server.url, "a"))

    async def refuse(text: str, reset: bool) -> None:
        raise KeyError(text)

    with pytest.raises(KeyError):
        await pool.complete(MESSAGES, refuse)
    await settle(server)
    assert outcomes(server) == {"a": "aborted"}


class TimedRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    async def on_delta(self, text: str, reset: bool) -> None:
        self.at.append(trio.current_time())
        await super().on_delta(text, reset)


COALESCED_REPLY = "one two three four five six seven eight, nine ten eleven twelve thirteen."


async def coalesced_reply(
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    *,
    bursts_from_start: bool = False,
) -> tuple[TimedRecorder, float]:
    """COALESCED_REPLY, 13 tokens 15 ms apart, through a pool coalescing per 40 ms (100 ms for
    a reply only shown): the deltas with their times, and the time the call started. The text
    arrives whole."""
    server.script = Script(reply=COALESCED_REPLY, token_interval_s=0.015)
    rec = TimedRecorder()
    pool = LLMPool(
        [Endpoint("a", server.url, "a")],
        client,
        first_token_s=1.0,
        stall_s=3.0,
        coalesce_s=0.04,
        shown_coalesce_s=0.1,
        keepalive=via,
    )
    t0 = trio.current_time()
    result = await pool.complete(MESSAGES, rec.on_delta, bursts_from_start=bursts_from_start)
    assert "".join(t for t, _ in rec.deltas) == result.text == COALESCED_REPLY + " "
    return rec, t0


async def test_coalesced_deltas_first_token_and_clause_ends_at_once(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    """Over a kept-alive connection the stream is also read in 40 ms bursts after the first
    clause (ReadPace): the deltas look the same, the last comes at most one interval later."""
    rec, t0 = await coalesced_reply(server, client, via)
    texts = [t for t, _ in rec.deltas]
    assert texts[0] == "one " and rec.at[0] - t0 < 0.01  # the first token is not held
    assert 4 <= len(texts) <= 7  # 13 tokens, 15 ms apart: about one delta per 40 ms
    eight = next(i for i, t in enumerate(texts) if t.endswith("eight, "))
    assert rec.at[eight] - t0 < 8 * 0.015 + 0.005  # a clause end goes out when it arrives
    gaps = [b - a for a, b in zip(rec.at, rec.at[1:], strict=False)]
    timed = [g for g, t in zip(gaps, texts[1:], strict=False) if not {",", "."} & set(t)]
    assert timed and all(g >= 0.039 for g in timed)
    assert rec.at[-1] - t0 <= 13 * 0.015 + 0.04 + 0.005
    assert not any(reset for _, reset in rec.deltas)


async def test_a_reply_only_shown_is_read_in_bursts_from_its_first_token(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    """`bursts_from_start` (a typed question: nothing is spoken): after the first token, reads
    of a kept-alive stream come once per `shown_coalesce_s` (100 ms), the first clause's
    included; its end may wait for the next read, at most one interval. (The spoken reply of
    the test above, through the same pool, kept its 40 ms.)"""
    rec, t0 = await coalesced_reply(server, client, via, bursts_from_start=True)
    texts = [t for t, _ in rec.deltas]
    assert texts[0] == "one " and rec.at[0] - t0 < 0.01  # the first token is not held
    # A read may bring the clause end with the tokens after it: "eight, nine ".
    eight = next(i for i, t in enumerate(texts) if "eight," in t)
    assert rec.at[eight] - t0 <= 8 * 0.015 + 0.1 + 0.005
    assert rec.at[-1] - t0 <= 13 * 0.015 + 0.1 + 0.005
    if via is not None:
        # Paced from the start: no delta before the clause end comes on its own token.
        assert eight <= 2
        gaps = [b - a for a, b in zip(rec.at[1:], rec.at[2:], strict=False)]
        assert all(g >= 0.099 for g in gaps)
        assert len(texts) <= 4  # 13 tokens: the first, then a read per 100 ms


async def test_coalesced_failover_still_resets(
    mock_clock: MockClock, server: ScriptedLLM, client: httpx.AsyncClient
) -> None:
    rec = Recorder()
    eps = [Endpoint("a", server.url, "script:stall:2"), Endpoint("b", server.url, "b")]
    pool = LLMPool(eps, client, first_token_s=1.0, stall_s=2.0, coalesce_s=0.04)
    result = await pool.complete(MESSAGES, rec.on_delta)
    assert rec.deltas == [
        ("Hello ", False),
        ("from ", False),  # held, then sent at the flush time
        ("Hello ", True),  # the new winner's first token, with the reset, at once
        ("from the scripted model. ", False),
    ]
    assert (result.endpoint, result.text) == ("b", REPLY)


@pytest.mark.parametrize("others", [True, False])
async def test_a_restarted_local_server_is_probed_without_the_others(
    mock_clock: MockClock,
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    dead_url: str,
    others: bool,
) -> None:
    """`warm_up_endpoints(others=False)`, after our own server restarted: it is probed until it
    answers; a remote endpoint (here a dead one) is left to the health loop, not probed again."""
    from dataclasses import replace

    from appliance.config import Config, LLMEndpointConfig
    from appliance.service import endpoints_from_config, warm_up_endpoints

    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    cfg = Config()
    eps = (
        LLMEndpointConfig("local", server.url, "script:ok"),
        LLMEndpointConfig("cloud", dead_url, "m"),
    )
    cfg = replace(cfg, llm=replace(cfg.llm, endpoints=eps, local_port=port, spawn_local=True))
    pool = LLMPool(
        endpoints_from_config(cfg), client, first_token_s=1.0, stall_s=3.0, keepalive=via
    )
    await warm_up_endpoints(cfg, pool, trio.Event(), others=others)
    local, cloud = pool.health
    assert local.ok and local.last_latency_s is not None
    assert (cloud.last_error is not None) == others, cloud
