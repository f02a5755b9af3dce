"""The quart-trio app: kiosk page, /ws, SSE chat fallback, health, readiness and metrics."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, cast

import trio
from quart import Response, make_response, request, send_from_directory, websocket
from quart_trio import QuartTrio

from ..admin.auth import is_loopback
from ..events import HelloEvent, ServerEvent, to_wire
from ..images import ImageError
from ..metrics import CONTENT_TYPE
from ..service import ServiceContext
from . import protocol as P
from .admin import register_admin
from .bodies import BadJson, close_if_unread, loads
from .ratelimit import TokenBucket
from .static import ui_dir
from .ws import WsConnection

__all__ = ["create_app"]

log = logging.getLogger("appliance.web")

_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_MAX_CLIENT_BUCKETS = 4096


def _sse(event: ServerEvent) -> bytes:
    data = json.dumps(to_wire(event), ensure_ascii=False)
    return f"event: {event.type}\ndata: {data}\n\n".encode()


def create_app(ctx: ServiceContext) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = ctx.cfg.web.max_frame_bytes * 2
    static = ui_dir()
    buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def client_bucket(addr: str) -> TokenBucket:
        b = buckets.get(addr)
        if b is None:
            b = buckets[addr] = TokenBucket(ctx.cfg.web.rate_per_s, ctx.cfg.web.rate_burst)
            if len(buckets) > _MAX_CLIENT_BUCKETS:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(addr)
        return b

    @app.after_request
    async def security_headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", _CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return close_if_unread(resp)

    @app.get("/")
    async def index() -> Response:
        return await send_from_directory(static, "index.html")

    @app.get("/ui/<path:name>")
    async def ui_file(name: str) -> Response:
        return await send_from_directory(static, name)

    @app.get("/healthz")
    async def healthz() -> tuple[dict[str, Any], int]:
        return {"status": "alive"}, 200

    @app.get("/readyz")
    async def readyz() -> tuple[dict[str, Any], int]:
        snap = ctx.readiness.snapshot(ctx.pool, ctx.runner.knowledge)
        return snap, 200 if snap["ready"] else 503

    @app.get("/metrics")
    async def metrics() -> Response:
        ctx.metrics.ws_connections.set(ctx.ws_open)  # one count (ctx.ws_open), read at scrape
        return Response(ctx.metrics.render(), content_type=CONTENT_TYPE)

    @app.websocket("/ws")
    async def ws() -> None:
        if ctx.stopping.is_set():
            await websocket.close(1001)
            return
        await websocket.accept()
        await WsConnection(ctx, cast(Any, websocket)._get_current_object()).serve()

    def json_error(code: str, message: str, status: int) -> tuple[dict[str, Any], int]:
        ctx.metrics.bad_input.labels(code=code).inc()
        return P.error(code, message), status

    @app.post("/api/chat")
    async def chat() -> Any:
        if ctx.stopping.is_set():
            return json_error("stopping", "The kiosk is restarting; try again shortly.", 503)
        if not client_bucket(request.remote_addr or "?").allow(trio.current_time()):
            return json_error("rate_limited", "Too many messages; please wait a moment.", 429)
        try:
            body = loads(await request.get_data())
        except BadJson as exc:
            return json_error("bad_json", exc.message, 400)
        if not isinstance(body, dict):
            return json_error("bad_message", "Body must be a JSON object.", 400)
        session = body.get("session")
        try:
            msg = P.parse_client_message(
                {"type": "text", "text": body.get("text"), "image": body.get("image")},
                max_text_chars=ctx.cfg.web.max_text_chars,
            )
            if session is not None and (not isinstance(session, str) or len(session) > 64):
                raise P.ProtocolError("bad_field", "'session' must be a short string")
            if session is not None and not session.isascii():
                raise P.ProtocolError("bad_field", "'session' must be a session id")
        except P.ProtocolError as exc:
            return json_error(exc.code, exc.message, 400)
        assert isinstance(msg, P.TextQuestion)
        image = None
        if msg.image is not None:
            try:
                image = await ctx.runner.prepare_image(msg.image)
            except ImageError as exc:
                return json_error(exc.code, exc.message, 400)
        conv, resumed = ctx.sessions.resume_or_create(session, trio.current_time())
        send, recv = trio.open_memory_channel[ServerEvent](512)
        scope = trio.CancelScope()
        ctx_nursery = ctx.nursery
        assert ctx_nursery is not None

        async def turn() -> None:
            ctx.sse_scopes.add(scope)
            try:
                with scope:
                    async with send, ctx.runner.exclusive(conv.session_id):
                        await ctx.runner.run_text(conv, msg.text, send.send, image=image)
            finally:
                ctx.sse_scopes.discard(scope)

        ctx_nursery.start_soon(turn)

        async def stream() -> AsyncIterator[bytes]:
            ctx.metrics.sse_streams.inc()
            try:
                yield _sse(HelloEvent(conv.session_id, resumed))
                async with recv:
                    async for item in recv:
                        yield _sse(item)
            finally:
                scope.cancel()  # the client went away: stop the turn
                ctx.metrics.sse_streams.dec()

        response = await make_response(
            stream(),
            200,
            {
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        cast(Any, response).timeout = None  # streams may outlive the default response timeout
        return response

    if ctx.store is not None:
        register_admin(app, ctx)
        if not (_loopback_host(ctx.cfg.web.host) or ctx.cfg.admin.on_kiosk_listener):
            # The kiosk listener is exposed (to phones, the LAN): its /admin is for the box
            # itself only; staff elsewhere use the admin listener (admin.host, over TLS).
            @app.before_request
            async def admin_for_the_box_only() -> Any:
                if request.path.startswith("/admin") and not is_loopback(request.remote_addr):
                    return json_error("not_found", "Not found.", 404)
                return None

    return app


def _loopback_host(host: str) -> bool:
    return host == "localhost" or is_loopback(host)
