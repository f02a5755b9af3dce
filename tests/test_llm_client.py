"""stream_chat/probe against the real scripted server over loopback: every fault kind."""

from __future__ import annotations

from contextlib import aclosing

import httpx
import pytest
import trio
from trio.testing import MockClock

from appliance.fakes.scripted_llm import Script, ScriptedLLM
from appliance.llm.client import (
    Endpoint,
    LLMError,
    ReadPace,
    SSEParser,
    parse_chunk,
    probe,
    stream_chat,
)
from appliance.llm.conn import KeepAlive

MESSAGES = [{"role": "user", "content": "When do you open?"}]
WORDS = ["Hello ", "from ", "the ", "scripted ", "model. "]


async def collect(
    client: httpx.AsyncClient, ep: Endpoint, stall_s: float = 5.0, via: KeepAlive | None = None
) -> tuple[list[str], LLMError | None]:
    got: list[str] = []
    try:
        stream = stream_chat(
            client, ep, MESSAGES, max_tokens=32, temperature=0.0, stall_s=stall_s, keepalive=via
        )
        async with aclosing(stream) as tokens:
            async for text in tokens:
                got.append(text)
    except LLMError as e:
        return got, e
    return got, None


async def whole_reply(
    client: httpx.AsyncClient,
    server: ScriptedLLM,
    via: KeepAlive | None,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    pace: ReadPace | None = None,
) -> str:
    stream = stream_chat(
        client,
        Endpoint("ep", server.url, "m"),
        messages,
        max_tokens=max_tokens,
        temperature=0,
        stall_s=5,
        keepalive=via,
        pace=pace,
    )
    async with aclosing(stream) as tokens:
        return "".join([t async for t in tokens])


async def test_streams_words_and_sends_the_request(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    got, err = await collect(client, Endpoint("local", server.url, "smollm2"), via=via)
    assert err is None
    assert got == WORDS
    body = server.requests[-1]
    assert body["stream"] is True
    assert body["model"] == "smollm2"
    assert body["max_tokens"] == 32
    assert body["messages"] == MESSAGES
    assert server.served[-1].authorization is None  # no key, no header


async def test_bearer_key_sent_only_when_set(
    client: httpx.AsyncClient, via: KeepAlive | None, nursery: trio.Nursery
) -> None:
    locked = ScriptedLLM(api_key="s3cret")
    await nursery.start(locked.serve)
    got, err = await collect(client, Endpoint("cloud", locked.url, "m", api_key="s3cret"), via=via)
    assert err is None and got == WORDS
    assert locked.served[-1].authorization == "Bearer s3cret"
    _, err = await collect(client, Endpoint("cloud", locked.url, "m"), via=via)
    assert err is not None and err.kind == "http_4xx" and "401" in err.detail
    assert "s3cret" not in repr(Endpoint("cloud", locked.url, "m", api_key="s3cret"))


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("script:http_429", "http_429"),
        ("script:http_500", "http_5xx"),
        ("script:http_400", "http_4xx"),
        ("script:garbage", "malformed"),
        ("script:not_sse", "malformed"),
        ("script:empty", "empty"),
    ],
)
async def test_fault_kinds(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, model: str, kind: str
) -> None:
    got, err = await collect(client, Endpoint("ep", server.url, model), via=via)
    assert got == []
    assert err is not None
    assert (err.endpoint, err.kind) == ("ep", kind)


async def test_refused(client: httpx.AsyncClient, via: KeepAlive | None, dead_url: str) -> None:
    got, err = await collect(client, Endpoint("gone", dead_url, "m"), via=via)
    assert got == [] and err is not None and err.kind == "refused"


async def test_stall_before_headers(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, mock_clock: MockClock
) -> None:
    t0 = trio.current_time()
    got, err = await collect(
        client, Endpoint("ep", server.url, "script:hang_headers"), 2.0, via=via
    )
    elapsed = trio.current_time() - t0
    assert got == [] and err is not None and err.kind == "stall"
    assert 2.0 <= elapsed < 2.1
    with trio.fail_after(1):
        await server.wait_idle()  # the server saw the hang-up
    assert server.served[-1].outcome == "aborted"


async def test_stall_after_some_tokens(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, mock_clock: MockClock
) -> None:
    server.script = Script(first_token_s=0.5, token_interval_s=0.25)
    t0 = trio.current_time()
    got, err = await collect(client, Endpoint("ep", server.url, "script:stall:2"), 3.0, via=via)
    elapsed = trio.current_time() - t0
    assert got == WORDS[:2]
    assert err is not None and err.kind == "stall"
    assert 0.75 + 3.0 <= elapsed < 0.75 + 3.1  # measured from the last token, not the start


async def test_slow_tokens_below_stall_limit_are_fine(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, mock_clock: MockClock
) -> None:
    server.script = Script(first_token_s=1.5, token_interval_s=1.5)
    got, err = await collect(client, Endpoint("ep", server.url, "m"), 2.0, via=via)
    assert err is None and got == WORDS


async def test_echo_reply(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None
) -> None:
    messages = [
        {"role": "system", "content": "FAQ"},
        {"role": "user", "content": "ECHO the tower opens at 9:30"},
    ]
    text = await whole_reply(client, server, via, messages, max_tokens=8)
    assert text.strip() == "ECHO the tower opens at 9:30"


class CountingPace(ReadPace):
    def __init__(self, every_s: float) -> None:
        super().__init__(every_s, self._burst)
        self.reads = 0
        self.bursts = 0

    def _burst(self) -> None:
        self.bursts += 1

    def after_read(self) -> None:
        self.reads += 1
        super().after_read()


@pytest.mark.parametrize("paced", [False, True])
async def test_a_paced_stream_reads_its_tokens_in_bursts(
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    mock_clock: MockClock,
    paced: bool,
) -> None:
    """13 tokens 15 ms apart over a kept-alive connection: one network read (one wake-up)
    each, or, paced at 40 ms, about one read per 40 ms with all that came in between; the
    text is the same and ends at most one interval later."""
    reply = "one two three four five six seven eight nine ten eleven twelve thirteen."
    server.script = Script(reply=reply, token_interval_s=0.015)
    pace = CountingPace(0.04)
    pace.on = paced
    t0 = trio.current_time()
    text = await whole_reply(client, server, via, MESSAGES, max_tokens=32, pace=pace)
    assert text == reply + " "
    if via is None:  # httpx hands over a chunk at a time: spacing those would only delay
        assert pace.reads == 0
    elif paced:
        assert 4 <= pace.reads <= 8 and pace.bursts == pace.reads
        assert trio.current_time() - t0 <= 13 * 0.015 + 0.04 + 0.02
    else:
        assert pace.reads >= 13 and pace.bursts == 0


async def test_closing_early_closes_the_http_stream(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, mock_clock: MockClock
) -> None:
    server.script = Script(token_interval_s=5.0)
    stream = stream_chat(
        client,
        Endpoint("ep", server.url, "m"),
        MESSAGES,
        max_tokens=8,
        temperature=0,
        stall_s=30,
        keepalive=via,
    )
    async with aclosing(stream) as tokens:
        async for first in tokens:
            assert first == "Hello "
            break
    t0 = trio.current_time()
    with trio.fail_after(1):
        await server.wait_idle()
    assert trio.current_time() - t0 < 0.1  # seen at once, not at the server's next write
    assert server.served[-1].outcome == "aborted"


async def test_cancelled_consumer_returns_on_time(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, mock_clock: MockClock
) -> None:
    server.script = Script(first_token_s=100.0)
    t0 = trio.current_time()
    with trio.move_on_after(1.0) as scope:
        await collect(client, Endpoint("ep", server.url, "m"), 30.0, via=via)
    assert scope.cancelled_caught
    assert trio.current_time() - t0 < 1.1
    with trio.fail_after(1):
        await server.wait_idle()
    assert server.served[-1].outcome == "aborted"


async def test_probe_measures_round_trip(
    server: ScriptedLLM, client: httpx.AsyncClient, via: KeepAlive | None, mock_clock: MockClock
) -> None:
    seconds = await probe(
        client, Endpoint("ep", server.url, "script:slow_first:0.4"), 2.0, keepalive=via
    )
    assert 0.4 <= seconds < 0.5
    body = server.requests[-1]
    assert body["max_tokens"] == 1 and body["stream"] is False


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("script:hang_headers", "timeout"),
        ("script:http_500", "http_5xx"),
        ("script:http_429", "http_429"),
        ("script:garbage", "malformed"),
    ],
)
async def test_probe_faults(
    server: ScriptedLLM,
    client: httpx.AsyncClient,
    via: KeepAlive | None,
    mock_clock: MockClock,
    model: str,
    kind: str,
) -> None:
    t0 = trio.current_time()
    with pytest.raises(LLMError) as info:
        await probe(client, Endpoint("ep", server.url, model), 1.0, keepalive=via)
    assert info.value.kind == kind
    assert trio.current_time() - t0 < 1.1


async def test_probe_refused(
    client: httpx.AsyncClient, via: KeepAlive | None, dead_url: str
) -> None:
    with pytest.raises(LLMError) as info:
        await probe(client, Endpoint("gone", dead_url, "m"), 1.0, keepalive=via)
    assert info.value.kind == "refused"
    assert str(info.value).startswith("gone: refused")


# --- pure parsing ---------------------------------------------------------------------------


def test_sse_parser_handles_split_lines_crlf_comments_and_multiline_data() -> None:
    p = SSEParser()
    out = list(p.feed(b': keep-alive\r\ndata: {"a"\r'))
    out += list(p.feed(b"\n\r\ndata: one\ndata: two\n\nevent: x\nid: 3\ndata: [DONE]"))
    out += list(p.close())
    assert out == ['{"a"', "one\ntwo", "[DONE]"]


def test_sse_parser_rejects_non_sse_bodies() -> None:
    with pytest.raises(ValueError):
        list(SSEParser().feed(b'{"choices": []}\n'))
    with pytest.raises(ValueError):
        list(SSEParser().feed(b"<html>\n"))


def test_parse_chunk() -> None:
    assert parse_chunk('{"choices":[{"delta":{"content":"Hi"}}]}') == "Hi"
    assert parse_chunk('{"choices":[{"delta":{"role":"assistant"}}]}') == ""
    assert parse_chunk('{"choices":[{"delta":{"content":null}}]}') == ""
    assert parse_chunk('{"choices":[],"usage":{"total_tokens":3}}') == ""
    for bad in ["nope", "[]", '{"id":1}', '{"choices":[{}]}', '{"error":{"message":"x"}}']:
        with pytest.raises(ValueError):
            parse_chunk(bad)
