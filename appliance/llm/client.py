"""One OpenAI-compatible streaming chat call, with every fault mapped to an LLMError.

An endpoint on this machine is reached over a kept-alive connection (conn.py, given a
`KeepAlive`), any other over httpx; both look the same from here (`_Body`) and fail with the
same kinds. The pool (pool.py) decides what to do about a fault; this module only has to name
it reliably. Stall detection is ours (a trio cancel scope around each network read), so the
request is sent with httpx's read timeout switched off: httpx's own timeouts would otherwise
fire first and blur "stall" into "timeout".
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx
import trio

from appliance.llm.conn import Exchange, KeepAlive, TransportError

__all__ = [
    "LLM_ERROR_KINDS",
    "Endpoint",
    "LLMError",
    "ReadPace",
    "SSEParser",
    "StallWatch",
    "parse_chunk",
    "probe",
    "stream_chat",
]

LLM_ERROR_KINDS = frozenset(
    {
        "refused",
        "timeout",
        "http_429",
        "http_4xx",
        "http_5xx",
        "malformed",
        "stall",
        "empty",
        "cancelled",
    }
)

# Error bodies can be large HTML pages; keep only what helps an admin.
_DETAIL_MAX = 200
# After [DONE], how long the end of the body may take: a server sends it at once, and a
# connection is only reused after it (else closed).
_DONE_GRACE_S = 0.1


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str  # OpenAI-compatible base ending in /v1, e.g. http://127.0.0.1:8081/v1
    model: str
    # Already resolved from the environment by the caller. Never logged: repr=False keeps it out
    # of reprs in tracebacks and log lines.
    api_key: str | None = field(default=None, repr=False)
    vision: bool = False


class LLMError(Exception):
    """An endpoint failed. kind is one of LLM_ERROR_KINDS (the pool adds "no_vision")."""

    def __init__(self, endpoint: str, kind: str, detail: str = "") -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.detail = detail
        super().__init__(endpoint, kind, detail)

    def __str__(self) -> str:
        tail = f" ({self.detail})" if self.detail else ""
        return f"{self.endpoint}: {self.kind}{tail}"


class StallWatch:
    """Stall timing for `stream_chat` from outside the generator (a generator must not yield
    inside a cancel scope): one cancel scope per stream, its deadline moved on at each network
    read, instead of a scope entered and left per read (trio's scopes cost more than parsing a
    token). The caller enters `scope`, then raises `error()` if the scope fired."""

    def __init__(self, stall_s: float, first_s: float | None = None) -> None:
        self.stall_s = stall_s
        # Until the first token: the first-token budget (see stream_chat's `first_s`).
        self.first_s = stall_s if first_s is None else first_s
        self.scope = trio.CancelScope(deadline=trio.current_time() + self.first_s)
        self.headers = False
        self.tokens = 0

    @property
    def wait_s(self) -> float:
        return self.stall_s if self.tokens else self.first_s

    def bump(self) -> None:
        self.scope.deadline = trio.current_time() + self.wait_s

    def error(self, endpoint: str) -> LLMError:
        if not self.headers:
            return LLMError(endpoint, "stall", f"no response headers within {self.first_s:g} s")
        return LLMError(
            endpoint, "stall", f"no bytes for {self.wait_s:g} s after {self.tokens} tokens"
        )


class ReadPace:
    """Spaces a stream's network reads `every_s` apart once switched `on`, so that the tokens
    arriving in between come in one read: one wake-up of the reading task per interval instead
    of one per token, the main CPU cost of a streamed reply under load (docs/bench/load-stop5).
    Before each paced read `on_burst` is called: what the last read brought is complete and
    may go out together. The pool switches it on after the first clause, whose end is what a
    spoken reply waits for; later text is read at most `every_s` late."""

    def __init__(self, every_s: float, on_burst: Callable[[], None]) -> None:
        self.every_s = every_s
        self.on_burst = on_burst
        self.on = False
        self._read_at = -math.inf

    async def before_read(self) -> None:
        if self.on:
            self.on_burst()
            await trio.sleep_until(self._read_at + self.every_s)

    def after_read(self) -> None:
        self._read_at = trio.current_time()


class SSEParser:
    """Incremental Server-Sent Events parser yielding each event's data (pure, no I/O).

    Raises ValueError on a line that is not SSE at all (an HTML page, a plain JSON body), so a
    server that ignores `stream: true` is reported as malformed instead of as an empty reply.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[str]:
        self._buf += chunk
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return
            raw, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            yield from self._line(raw.rstrip(b"\r"))

    def close(self) -> Iterator[str]:
        """Flush at the end of the body (a last event without its blank line still counts)."""
        if self._buf:
            raw, self._buf = self._buf, b""
            yield from self._line(raw.rstrip(b"\r"))
        yield from self._line(b"")

    def _line(self, raw: bytes) -> Iterator[str]:
        if not raw:
            if self._data:
                data, self._data = "\n".join(self._data), []
                yield data
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError("SSE line is not UTF-8") from e
        if line.startswith(":"):
            return  # comment / keep-alive
        name, sep, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        elif name in ("event", "id", "retry") and sep:
            return
        else:
            raise ValueError(f"not an SSE line: {line[:60]!r}")


def parse_chunk(data: str) -> str:
    """Return the content of one chat.completion.chunk ("" when it carries none).

    Raises ValueError for non-JSON, a missing choices/delta, or an in-stream error object.
    """
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        raise ValueError(f"data line is not JSON: {data[:60]!r}") from e
    if not isinstance(obj, dict):
        raise ValueError("chunk is not a JSON object")
    if "error" in obj:
        raise ValueError(f"error in stream: {str(obj['error'])[:_DETAIL_MAX]}")
    choices = obj.get("choices")
    if not isinstance(choices, list):
        raise ValueError("chunk has no choices list")
    if not choices:
        return ""  # e.g. a trailing usage-only chunk
    first = choices[0]
    delta = first.get("delta") if isinstance(first, dict) else None
    if not isinstance(delta, dict):
        raise ValueError("chunk has no choices[0].delta")
    content = delta.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise ValueError("delta content is not a string")
    return content


def _headers(ep: Endpoint, accept: str) -> dict[str, str]:
    headers = {"Accept": accept}
    if ep.api_key:
        headers["Authorization"] = f"Bearer {ep.api_key}"
    return headers


def _status_kind(status: int) -> str:
    if status == 429:
        return "http_429"
    return "http_5xx" if status >= 500 else "http_4xx"


def _transport_error(ep: Endpoint, exc: Exception) -> LLMError:
    """Map an httpx exception; the message never includes headers, so no key can leak."""
    if isinstance(exc, httpx.ConnectError):
        kind = "refused"
    elif isinstance(exc, httpx.TimeoutException):
        kind = "timeout"
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        kind = "refused"
    else:  # the peer broke HTTP framing or dropped the connection mid-body
        kind = "malformed"
    return LLMError(ep.name, kind, f"{type(exc).__name__}: {exc}"[:_DETAIL_MAX])


class _Body(Protocol):
    """A response being read, over httpx or a kept-alive connection (conn.py): its status, then
    its body piece by piece (None at the end). Transport faults come out as LLMError."""

    status: int
    # Whether `receive` hands over everything that has come in (one call per network read),
    # so that a ReadPace may space the calls.
    drains: bool

    async def receive(self) -> bytes | None: ...

    async def finish(self, grace_s: float) -> None: ...

    async def aclose(self) -> None: ...


class _HttpxBody:
    def __init__(self, ep: Endpoint, response: httpx.Response) -> None:
        self._ep = ep
        self._response = response
        self.status = response.status_code
        self.drains = False  # httpx hands over a chunk at a time
        # httpx's iterator is an async generator; closed by aclose rather than left to GC.
        self._chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())

    async def receive(self) -> bytes | None:
        try:
            return await anext(self._chunks, None)
        except httpx.HTTPError as e:
            raise _transport_error(self._ep, e) from e

    async def finish(self, grace_s: float) -> None:
        pass  # remote endpoints: the connection is closed after a stream, as before

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()
        finally:
            await self._response.aclose()


class _KeptBody:
    def __init__(self, ep: Endpoint, exchange: Exchange) -> None:
        self._ep = ep
        self._exchange = exchange
        self.status = exchange.status
        self.drains = True

    async def receive(self) -> bytes | None:
        try:
            return await self._exchange.receive()
        except TransportError as e:
            raise LLMError(self._ep.name, e.kind, e.detail[:_DETAIL_MAX]) from e

    async def finish(self, grace_s: float) -> None:
        await self._exchange.finish(grace_s)

    async def aclose(self) -> None:
        self._exchange.release()


async def _open(
    client: httpx.AsyncClient,
    keepalive: KeepAlive | None,
    ep: Endpoint,
    body: dict[str, Any],
    accept: str,
    read_timeout: float | None,
) -> _Body:
    """POST body to the endpoint's chat completions and return once the response head is in:
    over a kept-alive connection for a loopback endpoint when `keepalive` is given, else httpx."""
    url = ep.url.rstrip("/") + "/chat/completions"
    if keepalive is not None and keepalive.handles(url):
        headers = [("Content-Type", "application/json"), *_headers(ep, accept).items()]
        try:
            exchange = await keepalive.request("POST", url, json.dumps(body).encode(), headers)
        except TransportError as e:
            raise LLMError(ep.name, e.kind, e.detail[:_DETAIL_MAX]) from e
        return _KeptBody(ep, exchange)
    request = _request(client, ep, body, accept, read_timeout)
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as e:
        raise _transport_error(ep, e) from e
    return _HttpxBody(ep, response)


async def _read_all(body: _Body) -> bytes:
    parts: list[bytes] = []
    while (chunk := await body.receive()) is not None:
        parts.append(chunk)
    return b"".join(parts)


async def _error_detail(body: _Body, stall_s: float) -> str:
    """The start of an error body, read with a deadline and a size cap (never the whole page)."""
    data = b""
    with trio.move_on_after(stall_s):
        try:
            while (chunk := await body.receive()) is not None:
                data += chunk
                if len(data) >= 4 * _DETAIL_MAX:
                    break
        except LLMError:
            pass
    return data.decode("utf-8", "replace").strip()[:_DETAIL_MAX]


def _decode(ep: Endpoint, parser: SSEParser, chunk: bytes | None) -> tuple[list[str], bool]:
    """Turn one network chunk (None = end of body) into content deltas and a [DONE] flag."""
    texts: list[str] = []
    try:
        for data in parser.feed(chunk) if chunk is not None else parser.close():
            if data.strip() == "[DONE]":
                return texts, True
            text = parse_chunk(data)
            if text:
                texts.append(text)
    except ValueError as e:
        raise LLMError(ep.name, "malformed", str(e)[:_DETAIL_MAX]) from e
    return texts, False


def _request(
    client: httpx.AsyncClient,
    ep: Endpoint,
    body: dict[str, Any],
    accept: str,
    read_timeout: float | None,
) -> httpx.Request:
    t = client.timeout
    timeout = httpx.Timeout(connect=t.connect, read=read_timeout, write=t.write, pool=t.pool)
    return client.build_request(
        "POST",
        ep.url.rstrip("/") + "/chat/completions",
        json=body,
        headers=_headers(ep, accept),
        timeout=timeout,
    )


async def stream_chat(
    client: httpx.AsyncClient,
    ep: Endpoint,
    messages: list[dict[str, Any]],
    *,
    max_tokens: int,
    temperature: float,
    stall_s: float,
    stop: Sequence[str] = (),
    first_s: float | None = None,
    watch: StallWatch | None = None,
    keepalive: KeepAlive | None = None,
    pace: ReadPace | None = None,
) -> AsyncGenerator[str, None]:
    """Yield each non-empty content delta of one streamed completion.

    Raises LLMError; no bytes for stall_s (headers included) is a "stall". Until the first
    content delta the wait is `first_s` instead (default stall_s): a server evaluates the whole
    prompt before its first token and may hold its headers until then (llama-cpp-python's
    does), so that wait is the first-token budget's. With `watch`, the caller times the stream
    instead (see StallWatch, which has its own first_s) and raises its error. With `keepalive`,
    a loopback endpoint is reached over a kept-alive connection (conn.py), reused only after a
    stream read to its end. With `pace`, reads over a kept-alive connection are spaced (see
    ReadPace; httpx hands over a chunk at a time, which spacing would delay). Use it with
    `contextlib.aclosing`: closing the generator closes the HTTP stream (and its connection)
    immediately.
    """
    first_s = stall_s if first_s is None else first_s
    body = {
        "model": ep.model,
        "messages": messages,
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    if stop:
        body["stop"] = list(stop)
    response: _Body | None = None
    try:
        with trio.move_on_after(math.inf if watch is not None else first_s):
            response = await _open(client, keepalive, ep, body, "text/event-stream", None)
        if watch is not None:
            watch.headers = True
            watch.bump()
        if response is None:
            raise LLMError(ep.name, "stall", f"no response headers within {first_s:g} s")
        if response.status != 200:
            detail = await _error_detail(response, stall_s)
            raise LLMError(
                ep.name,
                _status_kind(response.status),
                f"HTTP {response.status}: {detail}".rstrip(": "),
            )
        parser = SSEParser()
        tokens = 0
        paced = pace if response.drains else None  # httpx: a chunk at a time, never spaced
        while True:
            chunk: bytes | None = None
            if paced is not None:
                await paced.before_read()
            if watch is not None:
                chunk = await response.receive()
                watch.bump()
            else:
                wait_s = stall_s if tokens else first_s
                with trio.move_on_after(wait_s) as scope:
                    chunk = await response.receive()
                if scope.cancelled_caught:
                    raise LLMError(
                        ep.name, "stall", f"no bytes for {wait_s:g} s after {tokens} tokens"
                    )
            if paced is not None:
                paced.after_read()
            texts, done = _decode(ep, parser, chunk)
            for text in texts:
                tokens += 1
                if watch is not None:
                    watch.tokens = tokens
                yield text
            if done:
                await response.finish(_DONE_GRACE_S)
                break
            if chunk is None:
                break
        if tokens == 0:
            raise LLMError(ep.name, "empty", "stream ended without content")
    finally:
        if response is not None:
            await response.aclose()


async def probe(
    client: httpx.AsyncClient,
    ep: Endpoint,
    timeout_s: float,
    messages: list[dict[str, Any]] | None = None,
    keepalive: KeepAlive | None = None,
) -> float:
    """Warm an endpoint up with a one-token, non-streamed request; return the seconds taken.
    With `messages`, a server that keeps its last prompt's KV cache (llama.cpp) has that
    prompt evaluated afterwards, so the same prompt streamed next starts at once.

    Raises LLMError (kind "timeout" when the whole exchange exceeds timeout_s).
    """
    body = {
        "model": ep.model,
        "messages": messages or [{"role": "user", "content": "Hello"}],
        "stream": False,
        "max_tokens": 1,
        "temperature": 0.0,
    }
    start = trio.current_time()
    with trio.move_on_after(timeout_s):
        response = await _open(client, keepalive, ep, body, "application/json", timeout_s)
        try:
            data = await _read_all(response)
        finally:
            await response.aclose()
        if response.status != 200:
            detail = data.decode("utf-8", "replace").strip()[:_DETAIL_MAX]
            raise LLMError(
                ep.name,
                _status_kind(response.status),
                f"HTTP {response.status}: {detail}".rstrip(": "),
            )
        try:
            obj = json.loads(data)
            choices = obj["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError("no choices")
        except (ValueError, KeyError, TypeError) as e:
            raise LLMError(ep.name, "malformed", f"probe reply: {e}"[:_DETAIL_MAX]) from e
        return trio.current_time() - start
    raise LLMError(ep.name, "timeout", f"probe took over {timeout_s:g} s")
