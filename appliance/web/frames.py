"""Several /ws messages in one socket write.

Under load a connection's writer often finds more than one message queued: a `state` and the
first `reply.delta`, a `reply.done` and the `idle` after it. quart sends each through its own
ASGI call and hypercorn writes each to the socket on its own: a syscall a message, and on a
loopback or LAN socket the send also pays for TCP's work on it. ASGI has no event for "these
messages together", so hypercorn (0.18, pinned like the guards in `server.py`) is taught one on
import: a `websocket.send` that carries `appliance.frames` (a list of text or binary messages)
is framed by wsproto message by message, as it would frame them one at a time, and written with
one send. Only the TCP segmenting changes: the client reads the same messages in the same
order.

`frame_writer` hands the connection a writer for a list of messages: the one-call path when the
connection runs under that hypercorn, else one `send` per message (quart's test client, a
different server).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data
from wsproto.events import BytesMessage, TextMessage
from wsproto.utilities import LocalProtocolError

__all__ = ["FRAMES", "FrameWriter", "frame_writer", "teach_hypercorn"]

FRAMES = "appliance.frames"

FrameWriter = Callable[[Sequence[str | bytes]], Awaitable[None]]


async def _app_send_frames(self: Any, message: Any) -> None:
    """`WSStream.app_send` that also takes `appliance.frames` (installed by teach_hypercorn)."""
    frames = message.get(FRAMES) if isinstance(message, dict) else None
    if frames is None:
        await _original_app_send(self, message)
        return
    if self.closed or self.state != ws_stream.ASGIWebsocketState.CONNECTED:
        return  # as hypercorn does with a send it cannot make: dropped, the close follows
    chunks: list[bytes] = []
    for frame in frames:
        event = BytesMessage(data=frame) if isinstance(frame, bytes) else TextMessage(data=frame)
        try:
            chunks.append(self.connection.send(event))
        except LocalProtocolError:
            break  # closing: hypercorn ignores such a send too
    if chunks:
        await self.send(Data(stream_id=self.stream_id, data=b"".join(chunks)))


_original_app_send: Callable[[Any, Any], Awaitable[None]] = ws_stream.WSStream.app_send


def teach_hypercorn() -> None:
    """Install `_app_send_frames` on hypercorn's WSStream (idempotent)."""
    if ws_stream.WSStream.app_send is not _app_send_frames:
        ws_stream.WSStream.app_send = _app_send_frames  # type: ignore[method-assign]


def _hypercorn_send(ws: Any) -> Callable[[Any], Awaitable[None]] | None:
    """The ASGI send under quart's websocket object when it is the taught hypercorn's."""
    send = getattr(ws, "_send", None)  # quart: partial(ASGIWebsocketConnection.send_data, send)
    if not isinstance(send, functools.partial) or not send.args:
        return None
    raw = send.args[0]
    if getattr(raw, "__func__", None) is not _app_send_frames:
        return None
    return raw  # type: ignore[no-any-return]


def frame_writer(ws: Any) -> FrameWriter:
    """A writer of several messages for quart's websocket object `ws`."""
    raw = _hypercorn_send(ws)
    if raw is None:

        async def one_by_one(frames: Sequence[str | bytes]) -> None:
            for frame in frames:
                await ws.send(frame)

        return one_by_one

    accepted = False

    async def together(frames: Sequence[str | bytes]) -> None:
        nonlocal accepted
        if not accepted:
            await ws.accept()  # what quart's own send does first
            accepted = True
        await raw({"type": "websocket.send", "bytes": None, "text": None, FRAMES: list(frames)})

    return together


teach_hypercorn()
