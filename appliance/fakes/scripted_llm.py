"""A real OpenAI-compatible HTTP server whose behaviour is scripted, for tests and benchmarks.

Plain trio sockets + h11 (HTTP/1.1) rather than an ASGI stack: the fake must notice a client
hanging up at once (tests assert that hedged losers' streams were closed), must be able to stay
silent forever (stall, hang_headers) without framework timeouts interfering, and has no timers
of its own, so it behaves the same under trio's MockClock.

Per-request override through the request's `model` field: `script:<mode>[:<arg>]`, where arg is
first_token_s for ok/slow_first, stall_after_tokens for stall (e.g. "script:slow_first:2.0",
"script:stall:3"). One server can thus play several endpoints in one test.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import h11
import trio

__all__ = ["MODES", "Script", "ScriptedLLM", "Served", "main"]

# Every way the scripted server can answer, in the order the fault bench runs them.
MODES = (
    "ok",
    "slow_first",
    "stall",
    "http_429",
    "http_500",
    "http_400",
    "garbage",
    "not_sse",
    "empty",
    "hang_headers",
)

_SLOW_FIRST_DEFAULT_S = 10.0
_MAX_BODY = 16 * 1024 * 1024  # images arrive as data URLs


@dataclass
class Script:
    """What the next request(s) do.

    Modes: ok | slow_first (ok, first token after first_token_s, 10 s if 0) | stall (send
    stall_after_tokens tokens, then silence until the client hangs up) | http_429 | http_500 |
    http_400 | garbage (200 SSE whose data is not JSON) | not_sse (200 text/html page) |
    empty (SSE without content) | hang_headers (never answer).
    """

    mode: str = "ok"
    reply: str = "Hello from the scripted model."  # streamed word by word, "word " per delta
    first_token_s: float = 0.0
    token_interval_s: float = 0.0
    stall_after_tokens: int = 0


@dataclass
class Served:
    """One handled chat request: outcome is done | aborted (client hung up) | status:<code>."""

    model: str
    mode: str
    stream: bool
    authorization: str | None = None  # the Authorization header as received, if any
    outcome: str = "running"


def script_for(base: Script, model: str) -> Script:
    """Apply a `script:<mode>[:<arg>]` model override to base (pure)."""
    if not model.startswith("script:"):
        return base
    parts = model.split(":")
    mode = parts[1]
    if mode not in MODES:
        raise ValueError(f"unknown script mode {mode!r}")
    s = replace(base, mode=mode)
    if len(parts) > 2 and parts[2]:
        if mode == "stall":
            s = replace(s, stall_after_tokens=int(parts[2]))
        else:
            s = replace(s, first_token_s=float(parts[2]))
    return s


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # vision-style parts
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def reply_for(script: Script, messages: Any) -> str:
    """The reply text: the last user message when it contains ECHO, else the scripted reply."""
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                text = _text_of(m.get("content"))
                if "ECHO" in text:
                    return text
                break
    return script.reply


def _chunk(n: int, model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    obj = {
        "id": f"chatcmpl-scripted-{n}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class ScriptedLLM:
    """Serve `/v1/models` and `/v1/chat/completions` (stream true or false) on loopback."""

    def __init__(self, script: Script | None = None, *, api_key: str | None = None) -> None:
        self.script = script if script is not None else Script()
        self.api_key = api_key  # when set, requests without this Bearer token get 401
        self.requests: list[dict[str, Any]] = []
        self.served: list[Served] = []
        self.url = ""
        self.active = 0  # chat responses in progress
        self.accepts = 0  # TCP connections accepted (fewer than requests: kept alive)
        # How a kept-alive connection ends, as real servers do: "keep" (until the client
        # closes), "close_idle" (closed right after each response, like a keep-alive timeout),
        # "drop_next" (the next request on it is read, then the connection closed unanswered:
        # the race of a server timing out just as a request arrives).
        self.reuse = "keep"
        self._counter = 0
        self._changed = trio.Event()

    @property
    def aborted(self) -> int:
        """Chat responses cut short because the client hung up (hedged losers, cancels)."""
        return sum(1 for s in self.served if s.outcome == "aborted")

    async def wait_idle(self) -> None:
        """Return once no chat response is in progress (use under a timeout)."""
        while self.active:
            await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}/v1"
        task_status.started(self.url)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.accepts += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_BODY)
        try:
            exchanges = 0
            while True:
                request, body = await self._read_request(stream, conn)
                if request is None or (exchanges and self.reuse == "drop_next"):
                    return
                await self._dispatch(stream, conn, request, body)
                exchanges += 1
                if self.reuse == "close_idle":
                    return
                # Anything but a cleanly finished exchange (a hang-up, Connection: close) ends it.
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await stream.aclose()

    async def _read_request(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)  # b"" marks EOF
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise h11.LocalProtocolError("body too large")
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, stream: trio.SocketStream, conn: h11.Connection, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _respond(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            *(extra or []),
        ]
        await self._send(stream, conn, h11.Response(status_code=status, headers=headers))
        await self._send(stream, conn, h11.Data(data=body))
        await self._send(stream, conn, h11.EndOfMessage())

    async def _dispatch(
        self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> None:
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0].rstrip("/")

        def err(msg: str, typ: str) -> bytes:
            return json.dumps({"error": {"message": msg, "type": typ}}).encode()

        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
            await self._respond(stream, conn, 200, json.dumps(models).encode())
            return
        if path != "/v1/chat/completions":
            await self._respond(stream, conn, 404, err("not found", "not_found"))
            return
        if method != "POST":
            await self._respond(stream, conn, 405, err("use POST", "invalid_request_error"))
            return
        raw_auth = dict(request.headers).get(b"authorization")
        auth = raw_auth.decode("latin-1") if raw_auth is not None else None
        if self.api_key is not None:
            if auth != f"Bearer {self.api_key}":
                await self._respond(stream, conn, 401, err("bad api key", "auth_error"))
                return
        try:
            req = json.loads(body)
            if not isinstance(req, dict):
                raise ValueError("body is not an object")
            model = str(req.get("model", ""))
            script = script_for(self.script, model)
        except ValueError as e:
            await self._respond(stream, conn, 400, err(str(e), "invalid_request_error"))
            return
        self.requests.append(req)
        served = Served(
            model=model, mode=script.mode, stream=bool(req.get("stream")), authorization=auth
        )
        self.served.append(served)
        self.active += 1
        self._touch()
        try:
            async with trio.open_nursery() as nursery:
                # Watch for the client hanging up while we sleep or stream, so a cancelled
                # stream is seen at once, not at our next write.
                nursery.start_soon(self._watch_hangup, stream, conn, nursery.cancel_scope, served)
                try:
                    await self._chat(stream, conn, script, req, served)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    if served.outcome == "running":
                        served.outcome = "aborted"
                nursery.cancel_scope.cancel()
        finally:
            self.active -= 1
            self._touch()

    async def _watch_hangup(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        scope: trio.CancelScope,
        served: Served,
    ) -> None:
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                if served.outcome == "running":
                    served.outcome = "aborted"
                scope.cancel()
                return
            conn.receive_data(data)  # a pipelined request: h11 buffers it for the next cycle

    async def _chat(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        script: Script,
        req: dict[str, Any],
        served: Served,
    ) -> None:
        """Answer one chat request; set served.outcome once the reply is complete."""
        mode = script.mode
        if mode in ("http_429", "http_500", "http_400"):
            code = int(mode[5:])
            extra = [("retry-after", "1")] if code == 429 else []
            msg = {429: "rate limited", 500: "scripted failure", 400: "bad request"}[code]
            body = json.dumps({"error": {"message": msg, "type": mode}}).encode()
            served.outcome = f"status:{code}"
            await self._respond(stream, conn, code, body, extra=extra)
            return
        if mode == "hang_headers":
            await trio.sleep_forever()
        if mode == "not_sse":
            served.outcome = "done"
            await self._respond(
                stream, conn, 200, b"<html><body>Gateway</body></html>", "text/html"
            )
            return
        model = str(req.get("model", "scripted"))
        words = [w + " " for w in reply_for(script, req.get("messages")).split()]
        first_s = script.first_token_s
        if mode == "slow_first" and first_s <= 0:
            first_s = _SLOW_FIRST_DEFAULT_S
        self._counter += 1
        n = self._counter
        if not served.stream:
            await self._chat_whole(stream, conn, script, model, words, first_s, n, served)
            return

        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        await self._send(stream, conn, h11.Response(status_code=200, headers=headers))
        await self._send(stream, conn, h11.Data(data=_chunk(n, model, {"role": "assistant"})))
        if mode == "garbage":
            await self._send(stream, conn, h11.Data(data=b"data: {this is not json\n\n"))
        elif mode == "empty":
            pass
        else:
            if mode == "stall":
                words = words[: script.stall_after_tokens]
            await trio.sleep(first_s)
            for i, word in enumerate(words):
                if i:
                    await trio.sleep(script.token_interval_s)
                await self._send(stream, conn, h11.Data(data=_chunk(n, model, {"content": word})))
            if mode == "stall":
                await trio.sleep_forever()
        await self._send(stream, conn, h11.Data(data=_chunk(n, model, {}, "stop")))
        served.outcome = "done"  # the client may hang up as soon as it reads [DONE]
        await self._send(stream, conn, h11.Data(data=b"data: [DONE]\n\n"))
        await self._send(stream, conn, h11.EndOfMessage())

    async def _chat_whole(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        script: Script,
        model: str,
        words: list[str],
        first_s: float,
        n: int,
        served: Served,
    ) -> None:
        """stream=false: one chat.completion object after the scripted delays."""
        if script.mode == "stall":
            await trio.sleep_forever()
        if script.mode == "garbage":
            served.outcome = "done"
            await self._respond(stream, conn, 200, b"{this is not json")
            return
        await trio.sleep(first_s + script.token_interval_s * max(0, len(words) - 1))
        text = "" if script.mode == "empty" else "".join(words)
        obj = {
            "id": f"chatcmpl-scripted-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(words), "total_tokens": 0},
        }
        served.outcome = "done"
        await self._respond(stream, conn, 200, json.dumps(obj).encode())


def main(argv: list[str] | None = None) -> int:
    """`python -m appliance.fakes.scripted_llm`: serve until interrupted; print the URL."""
    ap = argparse.ArgumentParser(prog="python -m appliance.fakes.scripted_llm", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--mode", default="ok", choices=sorted(MODES))
    ap.add_argument("--first-token-ms", type=float, default=0.0)
    ap.add_argument("--token-ms", type=float, default=0.0)
    ap.add_argument("--reply", default=Script.reply)
    ap.add_argument("--api-key", default=None, help="require this Bearer token")
    args = ap.parse_args(argv)
    server = ScriptedLLM(
        Script(
            mode=args.mode,
            reply=args.reply,
            first_token_s=args.first_token_ms / 1000,
            token_interval_s=args.token_ms / 1000,
        ),
        api_key=args.api_key,
    )

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(server.serve, host=args.host, port=args.port))
            print(url, flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
