"""Kept-alive HTTP/1.1 connections to LLM servers on this machine: h11 over trio sockets.

Why not httpx's pool for these: with httpcore 1.0.9, a queued request cancelled just as the pool
hands it a new connection leaves that connection CONNECTING for ever (encode/httpcore#1093);
once the pool is full of them every request waits for the pool timeout, which is how reuse
through a bounded pool stalled under load (a stall budget's cancel scope is such a cancel).
Here nothing queues (a connection is opened whenever none is idle) and the one rule is simple:
a connection goes back to the idle set only after a complete exchange (request sent, response
read to its end, neither side asking to close); a cancelled, failed or half-read one is closed.
Every close is synchronous, so cancellation can never skip it. Loopback only: no TLS, proxies
or DNS games; remote endpoints stay on httpx.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

__all__ = ["Exchange", "KeepAlive", "TransportError", "on_loopback"]

_READ_SIZE = 65536


def on_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")


class TransportError(Exception):
    """kind: "refused" (no connection), "timeout" (connect/write took too long), "malformed"
    (the peer broke HTTP framing or dropped the connection mid-exchange)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(kind, detail)


class _Reset(Exception):
    """A reused connection failed before any response byte: the server had closed it."""


@dataclass
class _Conn:
    stream: trio.SocketStream
    h11: h11.Connection
    idle_since: float = 0.0

    def close(self) -> None:
        self.stream.socket.close()

    def quiet(self) -> bool:
        """Nothing to read while idle; readable means EOF (the server closed it) or junk."""
        p = select.poll()
        p.register(self.stream.socket.fileno(), select.POLLIN)
        return not p.poll(0)


class Exchange:
    """One request's response: status and headers read; body by `receive`; `release` after."""

    def __init__(self, owner: KeepAlive, origin: tuple[str, int], conn: _Conn, head: h11.Response):
        self._owner = owner
        self._origin = origin
        self._conn: _Conn | None = conn
        self.status = head.status_code
        self.headers = head.headers
        self._ended = False

    async def receive(self) -> bytes | None:
        """All of the body that has come in, waiting for a first piece if none has; None at
        its end. Every chunk one network read brought comes out at once (a paced reader,
        client.ReadPace, relies on it: one call per read, not per HTTP chunk). Raises
        TransportError."""
        conn = self._conn
        if conn is None or self._ended:
            return None
        h = conn.h11
        parts: list[bytes] = []
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    if parts:
                        return b"".join(parts)
                    h.receive_data(await conn.stream.receive_some(_READ_SIZE))
                    continue
                if isinstance(event, h11.Data):
                    parts.append(bytes(event.data))
                    continue
                if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    self._ended = True
                    return b"".join(parts) if parts else None
        except h11.RemoteProtocolError as e:
            raise TransportError("malformed", f"RemoteProtocolError: {e}") from e
        except (trio.BrokenResourceError, OSError) as e:
            raise TransportError("malformed", f"ReadError: {e}") from e

    async def finish(self, grace_s: float) -> None:
        """Read the rest of the body for at most grace_s (a server sends the end of a stream
        right after [DONE]), so the connection can be reused; a body that does not end in
        time is left unread and `release` closes the connection."""
        with trio.move_on_after(grace_s):
            try:
                while await self.receive() is not None:
                    pass
            except TransportError:
                pass

    def release(self) -> None:
        """Back to the idle set after a complete exchange, else closed. Synchronous: safe in
        a `finally` under cancellation. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._owner._release(self._origin, conn)


class KeepAlive:
    """Idle HTTP/1.1 connections per origin (host, port), reused most recent first.

    max_idle: idle connections kept per origin (the rest are closed). idle_s: an idle
    connection older than this is closed, not reused (servers drop theirs at about 5 s:
    uvicorn, llama.cpp). Concurrency is not limited here: the callers' own limits are.
    """

    def __init__(
        self,
        *,
        max_idle: int = 64,
        idle_s: float = 4.0,
        connect_s: float = 3.0,
        write_s: float = 10.0,
    ) -> None:
        self.max_idle = max_idle
        self.idle_s = idle_s
        self.connect_s = connect_s
        self.write_s = write_s
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self.opened = 0  # connections opened (reuse shows as requests outnumbering these)
        self._closed = False

    def handles(self, url: str) -> bool:
        return urlsplit(url).scheme == "http" and on_loopback(url)

    async def request(
        self, method: str, url: str, body: bytes, headers: Sequence[tuple[str, str]]
    ) -> Exchange:
        """Send a request and read the response head. The caller times the wait (a cancel
        scope); on cancellation or error the connection is closed. Raises TransportError."""
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        origin = (host, parts.port or 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        head = [("Host", parts.netloc), ("Content-Length", str(len(body))), *headers]
        conn = self._take_idle(origin)
        if conn is not None:
            try:
                return await self._exchange(origin, conn, method, target, head, body, True)
            except _Reset:
                pass  # the server closed it while idle: once more on a new connection
        conn = await self._connect(origin)
        return await self._exchange(origin, conn, method, target, head, body, False)

    def close(self) -> None:
        """Close every idle connection; later releases close theirs."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _take_idle(self, origin: tuple[str, int]) -> _Conn | None:
        conns = self._idle.get(origin)
        now = trio.current_time()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since < self.idle_s and conn.quiet():
                return conn
            conn.close()
        return None

    def _release(self, origin: tuple[str, int], conn: _Conn) -> None:
        h = conn.h11
        if self._closed or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            conn.close()
            return
        h.start_next_cycle()
        conns = self._idle.setdefault(origin, [])
        if len(conns) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = trio.current_time()
        conns.append(conn)

    async def _connect(self, origin: tuple[str, int]) -> _Conn:
        with trio.move_on_after(self.connect_s):
            try:
                stream = await trio.open_tcp_stream(*origin)
            except OSError as e:
                raise TransportError("refused", f"ConnectError: {e}") from e
            self.opened += 1
            return _Conn(stream, h11.Connection(h11.CLIENT))
        raise TransportError("timeout", f"ConnectTimeout: no connection in {self.connect_s:g} s")

    async def _exchange(
        self,
        origin: tuple[str, int],
        conn: _Conn,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        reused: bool,
    ) -> Exchange:
        h = conn.h11
        received = False
        try:
            data = b"".join(
                h.send(event) or b""
                for event in (
                    h11.Request(method=method, target=target, headers=headers),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                )
            )
            with trio.move_on_after(self.write_s) as scope:
                await conn.stream.send_all(data)
            if scope.cancelled_caught:
                raise TransportError("timeout", f"WriteTimeout: not sent in {self.write_s:g} s")
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    chunk = await conn.stream.receive_some(_READ_SIZE)
                    received = received or bool(chunk)
                    h.receive_data(chunk)
                    continue
                if isinstance(event, h11.Response):
                    return Exchange(self, origin, conn, event)
                if isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("connection closed before a response")
                # h11.InformationalResponse (100 Continue): keep reading
        except BaseException as e:
            conn.close()
            if reused and not received and isinstance(e, _StaleErrors):
                raise _Reset() from e
            if isinstance(e, h11.ProtocolError):
                raise TransportError("malformed", f"{type(e).__name__}: {e}") from e
            if isinstance(e, trio.BrokenResourceError | OSError):
                raise TransportError("malformed", f"ReadError: {e}") from e
            raise


# A kept-alive connection the server closed shows as one of these on first use.
_StaleErrors = (h11.RemoteProtocolError, trio.BrokenResourceError, OSError)
