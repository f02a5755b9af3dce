"""Several /ws messages in one socket write (`web/frames.py`): the same messages, in the same
order, through the real hypercorn and a real client; one write for all of them; and the
one-by-one path where the server is not the taught hypercorn (quart's test client)."""

from __future__ import annotations

from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.events import RawData
from hypercorn.trio import tcp_server
from quart import websocket
from quart_trio import QuartTrio
from trio_websocket import open_websocket_url

from appliance.web.frames import frame_writer

FRAMES: list[str | bytes] = ['{"type":"state","state":"speaking"}', b"\x00\x01\x02", "é" * 300]


def _app(seen: dict[str, Any]) -> QuartTrio:
    app = QuartTrio(__name__)

    @app.websocket("/ws")
    async def ws() -> None:
        write = frame_writer(websocket._get_current_object())  # type: ignore[attr-defined]
        seen["writer"] = write.__name__
        await websocket.receive()  # the client is ready
        seen["writes_before"] = seen["writes"]
        await write(FRAMES)
        seen["writes_after"] = seen["writes"]
        await websocket.receive()  # until the client leaves

    return app


async def test_messages_written_together_arrive_whole_and_in_order(monkeypatch: Any) -> None:
    seen: dict[str, Any] = {"writes": 0}
    protocol_send = tcp_server.TCPServer.protocol_send

    async def counting(self: Any, event: Any) -> None:
        if isinstance(event, RawData):
            seen["writes"] += 1
        await protocol_send(self, event)

    monkeypatch.setattr(tcp_server.TCPServer, "protocol_send", counting)
    cfg = HyperConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(hypercorn.trio.serve, _app(seen), cfg)
        url = urls[0].replace("http://", "ws://") + "/ws"
        with trio.fail_after(10):
            async with open_websocket_url(url) as client:
                await client.send_message("go")
                got = [await client.get_message() for _ in FRAMES]
                assert got == FRAMES
                await client.send_message("bye")
        nursery.cancel_scope.cancel()
    assert seen["writer"] == "together"
    assert seen["writes_after"] - seen["writes_before"] == 1  # three messages, one write


async def test_without_the_taught_hypercorn_messages_go_one_by_one() -> None:
    seen: dict[str, Any] = {"writes": 0}
    client = _app(seen).test_client()
    async with client.websocket("/ws") as ws:
        await ws.send("go")
        got = [await ws.receive() for _ in FRAMES]
        await ws.send("bye")
    assert got == FRAMES
    assert seen["writer"] == "one_by_one"
