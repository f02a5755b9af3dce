"""The admin page (/admin) and its API (/admin/api/*), one route module per concern:
session (setup, login), status, settings, faq, conversations. The security model is described
in `common`. Served on the kiosk listener and, when `admin.host` is set, on its own listener.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypercorn.trio
import trio
from quart import Response, request, send_from_directory
from quart_trio import QuartTrio

from ...service import ServiceContext
from ..bodies import BadJson, close_if_unread
from ..listen import hyper_config
from ..static import ui_dir
from . import conversations, faq, session, settings, status
from .common import AdminHttp, err, log
from .tls import AdminTls, TlsError, fingerprint, self_signed

__all__ = ["create_admin_app", "register_admin", "serve_admin", "state_dir"]


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


def state_dir(ctx: ServiceContext) -> Path:
    """Where the service keeps its files: the running config file's directory (/var/lib/appliance
    under ops/install.sh), else the conversation store's."""
    if ctx.config_path is not None:
        return ctx.config_path.parent
    return Path(ctx.cfg.store.path).resolve().parent


async def _admin_tls(ctx: ServiceContext) -> AdminTls | str | None:
    """The listener's certificate; None = plain HTTP allowed; a str = why it must not start."""
    a = ctx.cfg.admin
    if a.tls_cert and a.tls_key:
        try:
            fp = await trio.to_thread.run_sync(fingerprint, Path(a.tls_cert))
        except (OSError, ValueError, TlsError) as exc:
            return f"admin.tls_cert {a.tls_cert} cannot be read: {exc}"
        log.info("admin TLS: certificate %s, SHA-256 fingerprint %s", a.tls_cert, fp)
        return AdminTls(a.tls_cert, a.tls_key, fp, self_signed=False)
    if a.tls_self_signed:
        try:
            return await self_signed(state_dir(ctx), a.host)
        except TlsError as exc:
            if not a.allow_http:
                return str(exc)
            log.error("admin TLS: %s", exc)
    if a.allow_http:
        return None
    return "no certificate (admin.tls_cert/tls_key) and admin.tls_self_signed = false"


async def serve_admin(
    ctx: ServiceContext, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """The admin-only listener on `admin.host:admin.port`, over HTTPS: the configured
    certificate, else a self-signed one made on first run. Without either it refuses to start
    (logged, and noted on /readyz) unless `admin.allow_http` is set; the kiosk runs on."""
    a = ctx.cfg.admin
    tls = await _admin_tls(ctx)
    if isinstance(tls, str):
        log.error(
            "admin listener on %s:%d NOT started: %s. Set admin.tls_cert and admin.tls_key, "
            "or admin.tls_self_signed = true, or (clear text) admin.allow_http = true.",
            a.host,
            a.port,
            tls,
        )
        ctx.readiness.notes.append(f"admin listener not started: {tls}")
        task_status.started([])
        return
    if tls is None:
        log.warning(
            "admin listener on %s:%d serves plain HTTP (admin.allow_http = true): the admin "
            "password and session cookie cross the network in clear text",
            a.host,
            a.port,
        )
    host = f"[{a.host}]" if ":" in a.host else a.host
    hc = hyper_config(f"{host}:{a.port}")
    if tls is not None:
        hc.certfile, hc.keyfile = tls.cert, tls.key

    running: AdminTls | None = tls

    class _Status:  # hypercorn reports the bound URLs (port 0 resolved): keep them for status
        def started(self, urls: list[str] | None = None) -> None:
            urls = list(urls or [])
            if running is not None:
                ctx.admin_tls = {
                    "url": urls[0] if urls else None,
                    "fingerprint": running.fingerprint,
                    "self_signed": running.self_signed,
                }
            task_status.started(urls)

    await hypercorn.trio.serve(
        create_admin_app(ctx),
        hc,
        shutdown_trigger=ctx.stopping.wait,
        task_status=_Status(),
    )
