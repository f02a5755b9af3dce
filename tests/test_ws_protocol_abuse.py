"""WebSocket frames that the HTTP server's own protocol code chokes on must cost one connection,
never the service. Found by `appliance bench faults` (ws_fuzz): in hypercorn 0.18 a text message
over the size limit followed by a binary frame raised TypeError in its protocol layer, which no
handler caught, and the whole appliance exited.

The real service on loopback; a raw WebSocket client (wsproto on a plain socket), because a
well-behaved client library never sends this sequence.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from hypercorn.trio import tcp_server
from support import StartService, base_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Request,
    TextMessage,
)

from appliance.fakes.scripted_llm import ScriptedLLM


async def raw_ws(svc: Any) -> tuple[trio.SocketStream, WSConnection]:
    host, port = base_url(svc).removeprefix("http://").rsplit(":", 1)
    conn = WSConnection(ConnectionType.CLIENT)
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(conn.send(Request(host=f"{host}:{port}", target="/ws")))
    with trio.fail_after(5):
        while True:
            conn.receive_data(await stream.receive_some(65536))
            if any(isinstance(ev, AcceptConnection) for ev in conn.events()):
                return stream, conn


async def test_oversized_text_then_binary_costs_one_connection_not_the_service(
    start_service: StartService, connect: Any, llm: ScriptedLLM
) -> None:
    svc = await start_service(web={"max_frame_bytes": 1024})  # the server cuts off at 4 KiB
    for first, then in (
        (TextMessage(data="x" * 20_000), BytesMessage(data=b"\x00" * 100)),
        (BytesMessage(data=b"\x00" * 20_000), TextMessage(data='{"type": "ping"}')),
    ):
        stream, conn = await raw_ws(svc)
        try:
            await stream.send_all(conn.send(first))
            await stream.send_all(conn.send(then))
            await stream.send_all(conn.send(then))
            # The server closes this connection (1009: message too big) ...
            codes: list[int] = []
            with trio.fail_after(5):
                while not codes:
                    data = await stream.receive_some(65536)
                    assert data, "the connection ended without a close frame"
                    conn.receive_data(data)
                    codes += [ev.code for ev in conn.events() if isinstance(ev, CloseConnection)]
            assert codes == [1009]
        finally:
            await stream.aclose()
    # ... and everyone else carries on.
    async with httpx.AsyncClient() as c:
        assert (await c.get(base_url(svc) + "/healthz")).status_code == 200
    async with connect(svc) as client:
        await client.hello()
        done = await client.ask("Still there?")
        assert done["outcome"] == "ok"
    assert json.dumps(done)  # a real reply.done came back


async def test_a_connection_cut_off_for_a_huge_message_is_dropped_at_once(
    start_service: StartService,
) -> None:
    """hypercorn 0.18 answers a message over its limit with close 1009 but drops the rest of
    that read, which can hold the client's own close reply: the connection then stayed open
    until the 30 s keep-alive timeout (seen as `bench faults` ws_fuzz clients waiting ~30 s).
    A client that breaks the size limit gets its connection closed now."""
    svc = await start_service(web={"max_frame_bytes": 1024})  # the server cuts off at 4 KiB
    stream, conn = await raw_ws(svc)
    try:
        # The oversized message and the client's close in one write: one read on the server.
        await stream.send_all(
            conn.send(TextMessage(data="x" * 20_000)) + conn.send(CloseConnection(code=1000))
        )
        with trio.fail_after(5):  # far under the keep-alive timeout
            while data := await stream.receive_some(65536):
                conn.receive_data(data)
                for _ in conn.events():
                    pass
    finally:
        await stream.aclose()


async def test_an_error_inside_the_http_server_costs_one_connection_not_the_service(
    start_service: StartService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any exception escaping hypercorn's per-connection task would end its serve loop, and the
    service with it (how the TypeError of the first test here took the box down): the guard on
    `TCPServer.run` logs it and closes that connection only."""
    svc = await start_service()
    parse = tcp_server.parse_socket_addr
    calls = 0

    def failing_once(family: Any, address: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the server's connection code")
        return parse(family, address)

    monkeypatch.setattr(tcp_server, "parse_socket_addr", failing_once)
    async with httpx.AsyncClient(base_url=base_url(svc), timeout=5) as client:
        with pytest.raises(httpx.TransportError):  # this connection is closed, unanswered
            await client.get("/healthz")
    async with httpx.AsyncClient(base_url=base_url(svc), timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200  # the service still serves
    assert calls >= 2
    assert "a connection failed inside the HTTP server" in caplog.text
