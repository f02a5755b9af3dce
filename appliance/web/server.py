"""Serve the app with hypercorn inside the caller's nursery; stopping is graceful by design.

Three guards on hypercorn (0.18) itself, installed on import, because a client can otherwise stop
the whole service or hold a connection (found by `appliance bench faults`,
tests/test_ws_protocol_abuse.py):

- After a WebSocket message over `websocket_max_message_size` hypercorn sends close 1009 but keeps
  the half-filled message buffer; a following frame of the other kind (binary after text, or the
  reverse) then raises TypeError inside its protocol code. Such a frame is now refused like the
  oversized message was (the connection is closing anyway).
- After that close 1009 it drops the rest of the read it came in, which may hold the client's own
  close reply; the connection then stayed open, and the app's handler running, until the 30 s
  keep-alive timeout. The connection is now ended at once (as on a close reply).
- Any other exception escaping hypercorn's per-connection task would end its serve loop, and with
  it the service. It is logged and ends that one connection instead.
"""

from __future__ import annotations

import logging
from io import StringIO
from typing import Any

import hypercorn.trio
import trio
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import StreamClosed
from hypercorn.trio import tcp_server
from wsproto.events import TextMessage

from ..service import ServiceContext
from .app import create_app
from .listen import hyper_config

__all__ = ["guard_hypercorn", "serve_web"]

log = logging.getLogger("appliance.http")


def guard_hypercorn() -> None:
    """Install the two guards described in the module doc (idempotent)."""
    buffer = ws_stream.WebsocketBuffer
    if not getattr(buffer.extend, "_appliance_guard", False):
        extend = buffer.extend

        def guarded_extend(self: Any, event: Any) -> None:
            try:
                if self.value is not None and isinstance(self.value, StringIO) != isinstance(
                    event, TextMessage
                ):
                    raise ws_stream.FrameTooLargeError()
                extend(self, event)
            except ws_stream.FrameTooLargeError:
                self.appliance_cut = True  # hypercorn answers 1009; see guarded_handle_events
                raise

        guarded_extend._appliance_guard = True  # type: ignore[attr-defined]
        buffer.extend = guarded_extend  # type: ignore[method-assign]

    stream = ws_stream.WSStream
    if not getattr(stream._handle_events, "_appliance_guard", False):
        handle_events = stream._handle_events

        async def guarded_handle_events(self: Any) -> None:
            await handle_events(self)
            if getattr(self.buffer, "appliance_cut", False) and not self.closed:
                await self.send(StreamClosed(stream_id=self.stream_id))

        guarded_handle_events._appliance_guard = True  # type: ignore[attr-defined]
        stream._handle_events = guarded_handle_events  # type: ignore[method-assign]

    server = tcp_server.TCPServer
    if not getattr(server.run, "_appliance_guard", False):
        run = server.run

        async def guarded_run(self: Any) -> None:
            try:
                await run(self)
            except Exception:  # never Cancelled: that is a BaseException
                log.exception("a connection failed inside the HTTP server; it alone is closed")

        guarded_run._appliance_guard = True  # type: ignore[attr-defined]
        server.run = guarded_run  # type: ignore[method-assign]


guard_hypercorn()


async def serve_web(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run until `ctx.stopping` is set; started() reports the bound URLs (port 0 is resolved)."""
    hc = hyper_config(f"{ctx.cfg.web.host}:{ctx.cfg.web.port}")
    # Frames a bit over our own limit still reach the app, which answers them with an `error`
    # and keeps the connection; far larger ones are cut off by hypercorn itself (close 1009).
    hc.websocket_max_message_size = ctx.cfg.web.max_frame_bytes * 4
    hc.keep_alive_timeout = 30.0
    app = create_app(ctx)
    await hypercorn.trio.serve(app, hc, shutdown_trigger=ctx.stopping.wait, task_status=task_status)
