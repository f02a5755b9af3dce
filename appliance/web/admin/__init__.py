"""The admin page (/admin) and its API (/admin/api/*), one route module per concern:
session (setup, login), status, settings, faq, conversations. The security model is described
in `common`. Served on the kiosk listener and, when `admin.host` is set, on its own listener.
"""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config as HyperConfig
from quart import Response, request, send_from_directory
from quart_trio import QuartTrio

from ...service import ServiceContext
from ..bodies import BadJson, close_if_unread
from ..static import ui_dir
from . import conversations, faq, session, settings, status
from .common import AdminHttp, err

__all__ = ["create_admin_app", "register_admin", "serve_admin"]


def register_admin(app: QuartTrio, ctx: ServiceContext) -> None:
    """Add the admin page and API to `app` (the kiosk app, or the LAN-only admin app)."""
    h = AdminHttp(ctx)
    static = ui_dir()

    @app.after_request
    async def admin_no_store(resp: Response) -> Response:
        if request.path.startswith("/admin"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(BadJson)
    async def admin_bad_json(exc: BadJson) -> tuple[dict[str, Any], int]:
        # From json_body(), on any admin route: a client error, said clearly, never a 500.
        return err("bad_json", exc.message, 400)

    @app.get("/admin")
    async def admin_page() -> Response:
        return await send_from_directory(static, "admin.html")

    for routes in (session, status, settings, faq, conversations):
        routes.register(app, h)


def create_admin_app(ctx: ServiceContext) -> QuartTrio:
    """An app with only the admin page (and its static files), for the LAN listener."""
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    static = ui_dir()

    @app.after_request
    async def admin_headers(resp: Response) -> Response:
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'",
        )
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.scheme == "https":
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return close_if_unread(resp)

    @app.get("/")
    async def admin_root() -> Response:
        return Response("", status=302, headers={"Location": "/admin"})

    @app.get("/ui/<path:name>")
    async def admin_ui_file(name: str) -> Response:
        return await send_from_directory(static, name)

    register_admin(app, ctx)
    return app


async def serve_admin(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """The admin-only listener on `admin.host:admin.port` (HTTPS when a cert is configured)."""
    a = ctx.cfg.admin
    hc = HyperConfig()
    host = f"[{a.host}]" if ":" in a.host else a.host
    hc.bind = [f"{host}:{a.port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("appliance.http")
    hc.graceful_timeout = 3.0
    if a.tls_cert and a.tls_key:
        hc.certfile, hc.keyfile = a.tls_cert, a.tls_key
    await hypercorn.trio.serve(
        create_admin_app(ctx), hc, shutdown_trigger=ctx.stopping.wait, task_status=task_status
    )
