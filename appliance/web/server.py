"""Serve the app with hypercorn inside the caller's nursery; stopping is graceful by design."""

from __future__ import annotations

import logging

import hypercorn.trio
import trio
from hypercorn.config import Config as HyperConfig

from ..service import ServiceContext
from .app import create_app

__all__ = ["serve_web"]


async def serve_web(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run until `ctx.stopping` is set; started() reports the bound URLs (port 0 is resolved)."""
    hc = HyperConfig()
    hc.bind = [f"{ctx.cfg.web.host}:{ctx.cfg.web.port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("appliance.http")
    # Frames a bit over our own limit still reach the app, which answers them with an `error`
    # and keeps the connection; far larger ones are cut off by hypercorn itself (close 1009).
    hc.websocket_max_message_size = ctx.cfg.web.max_frame_bytes * 4
    hc.graceful_timeout = 3.0
    hc.keep_alive_timeout = 30.0
    app = create_app(ctx)
    await hypercorn.trio.serve(app, hc, shutdown_trigger=ctx.stopping.wait, task_status=task_status)
