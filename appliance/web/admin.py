"""Admin routes (/admin, /admin/api/*): first-run setup, login, status, settings, FAQ, log.

Security model: one admin account (argon2id hash in the store); no default password; first-run
setup only from the box itself or with a one-time code written to the journal. Sessions are
opaque random tokens in an HttpOnly, SameSite=Strict cookie scoped to /admin; every state change
needs the session's CSRF token in `X-CSRF-Token` and a JSON body (so a cross-site form cannot
even reach the handler). Failed logins lock the address out. Every action is audited.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hypercorn.trio
import trio
from hypercorn.config import Config as HyperConfig
from quart import Response, request, send_from_directory
from quart_trio import QuartTrio

from ..admin import sysinfo
from ..admin.auth import (
    AdminSession,
    check_password_policy,
    hash_password,
    is_loopback,
    new_setup_code,
    verify_password,
)
from ..admin.conversations import to_csv, to_json, turn_dict
from ..admin.settings import RESTART_PREFIXES, plan_edit
from ..admin.state import AdminState
from ..config import ConfigError, config_to_dict, save_config, write_atomic
from ..knowledge import KnowledgeBase, parse_faq
from ..service import ServiceContext, admin_state, apply_live
from ..store import Store

__all__ = ["create_admin_app", "register_admin", "serve_admin"]

log = logging.getLogger("appliance.admin")

COOKIE = "appliance_admin"
USER = "admin"
_MAX_FAQ_BYTES = 512 * 1024

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def _store(ctx: ServiceContext) -> Store:
    if ctx.store is None:
        raise RuntimeError("admin routes need the conversation store")
    return ctx.store


def _err(code: str, message: str, status: int, **extra: Any) -> tuple[dict[str, Any], int]:
    return {"error": code, "message": message, **extra}, status


def _remote() -> str:
    return request.remote_addr or "?"


async def _audit(ctx: ServiceContext, actor: str, action: str, detail: str = "") -> None:
    remote = _remote()
    log.info("admin audit: %s %s %s", actor, action, detail, extra={"remote": remote})
    try:
        await trio.to_thread.run_sync(_store(ctx).add_audit, actor, remote, action, detail)
    except Exception:  # the audit row is lost, the log line above is not
        log.exception("audit log write failed")


async def _ensure_setup_code(ctx: ServiceContext, st: AdminState) -> None:
    """On first use with no account: make a one-time code and print it to the journal."""
    if st.setup_checked:
        return
    st.setup_checked = True
    if await trio.to_thread.run_sync(_store(ctx).admin_hash, USER) is None:
        st.auth.setup_code = new_setup_code()
        log.warning(
            "admin: no password set yet. Open /admin on the kiosk itself, or from another "
            "machine with the one-time setup code %s",
            st.auth.setup_code,
        )


async def _json_body() -> dict[str, Any] | None:
    if request.mimetype != "application/json":
        return None
    try:
        body = json.loads(await request.get_data(as_text=True))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _cross_origin() -> bool:
    """A browser always sends Origin on a cross-site POST; it must name this host."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.host


def register_admin(app: QuartTrio, ctx: ServiceContext) -> None:
    """Add the admin page and API to `app` (the kiosk app, or the LAN-only admin app)."""
    from .app import ui_dir

    static = ui_dir()
    st = admin_state(ctx)

    def now() -> float:
        return trio.current_time()

    def session() -> AdminSession | None:
        return st.auth.sessions.get(request.cookies.get(COOKIE), now())

    def guarded(*, csrf: bool) -> Callable[[H], H]:
        """Require a session (and for state changes, the CSRF token and a same-origin call)."""

        def deco(fn: H) -> H:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                s = session()
                if s is None:
                    return _err("login_required", "Please log in.", 401)
                if csrf:
                    if _cross_origin() or not st.auth.sessions.csrf_ok(
                        s, request.headers.get("X-CSRF-Token")
                    ):
                        await _audit(ctx, s.user, "csrf_rejected", request.path)
                        return _err("csrf", "Missing or wrong CSRF token; reload the page.", 403)
                return await fn(s, *args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return deco

    @app.after_request
    async def admin_no_store(resp: Response) -> Response:
        if request.path.startswith("/admin"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/admin")
    async def admin_page() -> Response:
        return await send_from_directory(static, "admin.html")

    # -- session ----------------------------------------------------------------------------

    @app.get("/admin/api/session")
    async def admin_session() -> dict[str, Any]:
        await _ensure_setup_code(ctx, st)
        s = session()
        has_account = await trio.to_thread.run_sync(_store(ctx).admin_hash, USER) is not None
        return {
            "setup_needed": not has_account,
            "local": is_loopback(request.remote_addr),
            "logged_in": s is not None,
            "user": s.user if s else None,
            "csrf": s.csrf if s else None,
        }

    def login_response(s: AdminSession) -> Response:
        resp = Response(
            json.dumps({"ok": True, "csrf": s.csrf, "user": s.user}),
            content_type="application/json",
        )
        resp.set_cookie(
            COOKIE,
            s.token,
            max_age=int(st.auth.sessions.lifetime_s),
            path="/admin",
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https",
        )
        return resp

    async def pre_auth_checks() -> tuple[dict[str, Any], tuple[dict[str, Any], int] | None]:
        if _cross_origin():
            return {}, _err("cross_origin", "Cross-site request refused.", 403)
        body = await _json_body()
        if body is None:
            return {}, _err("bad_request", "Send a JSON object.", 415)
        wait = st.auth.throttle.locked_for(_remote(), now())
        if wait > 0:
            return {}, _err(
                "locked_out",
                f"Too many failed attempts. Try again in {int(wait) + 1} seconds.",
                429,
                retry_after=int(wait) + 1,
            )
        return body, None

    @app.post("/admin/api/setup")
    async def admin_setup() -> Any:
        await _ensure_setup_code(ctx, st)
        body, problem = await pre_auth_checks()
        if problem is not None:
            return problem
        store = _store(ctx)
        if await trio.to_thread.run_sync(store.admin_hash, USER) is not None:
            return _err("already_set_up", "The admin password is already set; log in.", 409)
        local = is_loopback(request.remote_addr)
        if not local and not st.auth.setup_code_ok(body.get("setup_code")):
            st.auth.throttle.failure(_remote(), now())
            await _audit(ctx, "-", "setup_refused", "no or wrong setup code")
            return _err(
                "setup_code",
                "From another machine, enter the one-time setup code from the system journal "
                "(journalctl -u appliance).",
                403,
            )
        password = body.get("password")
        if not isinstance(password, str):
            return _err("bad_request", "'password' must be a string.", 400)
        reason = check_password_policy(password)
        if reason is not None:
            return _err("weak_password", reason, 400)
        pw_hash = await trio.to_thread.run_sync(hash_password, password)
        if not await trio.to_thread.run_sync(
            functools.partial(store.set_admin_hash, pw_hash, USER, create=True)
        ):
            return _err("already_set_up", "The admin password is already set; log in.", 409)
        st.auth.setup_code = None
        await _audit(ctx, USER, "setup", "local" if local else "with setup code")
        return login_response(st.auth.sessions.create(USER, _remote(), now()))

    @app.post("/admin/api/login")
    async def admin_login() -> Any:
        body, problem = await pre_auth_checks()
        if problem is not None:
            await _audit(ctx, "-", "login_refused", problem[0]["error"])
            return problem
        password = body.get("password")
        stored = await trio.to_thread.run_sync(_store(ctx).admin_hash, USER)
        if stored is None:
            return _err("setup_needed", "No admin password yet; create one first.", 409)
        ok = False
        if isinstance(password, str) and len(password) <= 1024:
            ok = await trio.to_thread.run_sync(verify_password, stored, password)
        if not ok:
            locked = st.auth.throttle.failure(_remote(), now())
            await _audit(ctx, "-", "login_failed", f"lockout {locked:.0f} s" if locked else "")
            if locked:
                return _err(
                    "locked_out",
                    f"Too many failed attempts. Try again in {int(locked)} seconds.",
                    429,
                    retry_after=int(locked),
                )
            return _err("bad_password", "Wrong password.", 401)
        st.auth.throttle.success(_remote())
        await _audit(ctx, USER, "login")
        return login_response(st.auth.sessions.create(USER, _remote(), now()))

    @app.post("/admin/api/logout")
    @guarded(csrf=True)
    async def admin_logout(s: AdminSession) -> Response:
        st.auth.sessions.drop(s.token)
        await _audit(ctx, s.user, "logout")
        resp = Response(json.dumps({"ok": True}), content_type="application/json")
        resp.delete_cookie(COOKIE, path="/admin")
        return resp

    @app.post("/admin/api/password")
    @guarded(csrf=True)
    async def admin_password(s: AdminSession) -> Any:
        body = await _json_body() or {}
        current, new = body.get("current"), body.get("new")
        stored = await trio.to_thread.run_sync(_store(ctx).admin_hash, USER)
        if not (isinstance(current, str) and isinstance(new, str) and stored):
            return _err("bad_request", "Send 'current' and 'new'.", 400)
        if not await trio.to_thread.run_sync(verify_password, stored, current):
            await _audit(ctx, s.user, "password_change_failed")
            return _err("bad_password", "The current password is wrong.", 401)
        reason = check_password_policy(new)
        if reason is not None:
            return _err("weak_password", reason, 400)
        pw_hash = await trio.to_thread.run_sync(hash_password, new)
        await trio.to_thread.run_sync(
            functools.partial(_store(ctx).set_admin_hash, pw_hash, USER, create=False)
        )
        st.auth.sessions.drop_all()  # every other browser has to log in again
        await _audit(ctx, s.user, "password_changed")
        return login_response(st.auth.sessions.create(s.user, _remote(), now()))

    # -- status -----------------------------------------------------------------------------

    @app.get("/admin/api/status")
    @guarded(csrf=False)
    async def admin_status(s: AdminSession) -> dict[str, Any]:
        cfg = ctx.cfg
        store = _store(ctx)
        recent = await trio.to_thread.run_sync(store.recent_turns, 10)
        count = await trio.to_thread.run_sync(store.count_turns)
        models = await trio.to_thread.run_sync(sysinfo.models)
        audio = await trio.to_thread.run_sync(sysinfo.audio_devices)
        machine = await trio.to_thread.run_sync(sysinfo.machine)
        keys = {
            ep.name: (bool(os.environ.get(ep.api_key_env)) if ep.api_key_env else None)
            for ep in cfg.llm.endpoints
        }
        return {
            "uptime_s": round(trio.current_time() - ctx.readiness.started_at, 1),
            "readiness": ctx.readiness.snapshot(ctx.pool),
            "api_key_set": keys,
            "models": models,
            "providers": sysinfo.providers(cfg.inference.providers),
            "audio": {**audio, "enabled": cfg.audio.enabled},
            "machine": machine,
            "loop_lag_s": round(ctx.lag.last, 4),
            "ws_open": ctx.ws_open,
            "sessions": len(ctx.sessions),
            "knowledge": {"faq": cfg.knowledge.faq, "entries": len(ctx.runner.knowledge)},
            "turns_logged": count,
            "recent_turns": [turn_dict(r) for r in recent],
            "restart_pending": st.restart_pending,
        }

    @app.get("/admin/api/audit")
    @guarded(csrf=False)
    async def admin_audit(s: AdminSession) -> dict[str, Any]:
        return {"entries": await trio.to_thread.run_sync(_store(ctx).recent_audit, 200)}

    # -- settings ---------------------------------------------------------------------------

    @app.get("/admin/api/config")
    @guarded(csrf=False)
    async def admin_config(s: AdminSession) -> dict[str, Any]:
        return {
            "config": config_to_dict(st.saved),
            "running": config_to_dict(ctx.cfg),
            "path": str(ctx.config_path) if ctx.config_path else None,
            "restart_prefixes": list(RESTART_PREFIXES),
            "restart_pending": st.restart_pending,
        }

    @app.post("/admin/api/config")
    @guarded(csrf=True)
    async def admin_config_save(s: AdminSession) -> Any:
        body = await _json_body()
        changes = body.get("changes") if body else None
        if not isinstance(changes, dict) or not changes:
            return _err("bad_request", "Send {'changes': {'section.key': value, ...}}.", 400)
        if ctx.config_path is None:
            return _err(
                "no_config_file",
                "The service runs on built-in defaults; start it with --config FILE to edit.",
                409,
            )
        try:
            edit = await trio.to_thread.run_sync(plan_edit, ctx.cfg, st.saved, changes)
        except ConfigError as exc:
            fields = sorted({p.split(":", 1)[0] for p in exc.problems})
            await _audit(ctx, s.user, "config_rejected", ", ".join(fields))
            return _err(
                "invalid_config",
                "Not saved: " + "; ".join(exc.problems),
                400,
                problems=exc.problems,
                fields=fields,
            )
        if not edit.changed:
            return {"ok": True, "changed": [], "restart": [], "applied": []}
        try:
            await trio.to_thread.run_sync(save_config, edit.saved, ctx.config_path)
        except OSError as exc:
            await _audit(ctx, s.user, "config_save_failed", str(exc))
            return _err("save_failed", f"Could not write the config file: {exc}", 500)
        await apply_live(ctx, edit.live)
        st.saved = edit.saved
        st.restart_pending = sorted(set(st.restart_pending) | set(edit.restart))
        applied = [k for k in edit.changed if k not in edit.restart]
        await _audit(ctx, s.user, "config_saved", ", ".join(edit.changed))
        log.info("settings saved", extra={"changed": edit.changed, "restart": edit.restart})
        return {"ok": True, "changed": edit.changed, "applied": applied, "restart": edit.restart}

    # -- knowledge --------------------------------------------------------------------------

    @app.get("/admin/api/faq")
    @guarded(csrf=False)
    async def admin_faq(s: AdminSession) -> Any:
        path = Path(ctx.cfg.knowledge.faq)
        try:
            text = await trio.to_thread.run_sync(path.read_text, "utf-8")
        except OSError as exc:
            return _err("faq_unreadable", f"{path}: {exc}", 500)
        kb = ctx.runner.knowledge
        return {
            "path": str(path),
            "text": text,
            "entries": [{"question": e.question, "answer": e.answer} for e in kb.entries],
            "warnings": list(kb.warnings),
        }

    @app.post("/admin/api/faq")
    @guarded(csrf=True)
    async def admin_faq_save(s: AdminSession) -> Any:
        body = await _json_body()
        text = body.get("text") if body else None
        if not isinstance(text, str):
            return _err("bad_request", "Send {'text': markdown}.", 400)
        if len(text.encode()) > _MAX_FAQ_BYTES:
            return _err("too_large", "The FAQ is larger than 512 KB.", 400)
        entries, warnings = parse_faq(text)
        if not entries:
            return _err(
                "no_entries", "No questions found: each question is a line starting '## '.", 400
            )
        embedder = ctx.runner.knowledge.embedder
        kb = await trio.to_thread.run_sync(
            functools.partial(KnowledgeBase, entries, warnings=warnings, embedder=embedder)
        )
        path = Path(ctx.cfg.knowledge.faq)
        try:
            await trio.to_thread.run_sync(write_atomic, path, text.encode())
        except OSError as exc:
            return _err("save_failed", f"Could not write {path}: {exc}", 500)
        ctx.runner.knowledge = kb  # running turns keep the index they read
        await _audit(ctx, s.user, "faq_saved", f"{len(entries)} entries")
        return {
            "ok": True,
            "entries": [{"question": e.question, "answer": e.answer} for e in entries],
            "warnings": warnings,
        }

    # -- conversations ----------------------------------------------------------------------

    def _query_args() -> tuple[str, float | None, int]:
        q = request.args.get("q", "")[:200]
        days = request.args.get("days", type=float)
        since = time.time() - days * 86400 if days and days > 0 else None
        limit = max(1, min(request.args.get("limit", 200, type=int) or 200, 100_000))
        return q, since, limit

    @app.get("/admin/api/turns")
    @guarded(csrf=False)
    async def admin_turns(s: AdminSession) -> dict[str, Any]:
        q, since, limit = _query_args()
        recs = await trio.to_thread.run_sync(_store(ctx).turns_between, q, since, limit)
        return {
            "turns": [turn_dict(r) for r in recs],
            "retention_days": ctx.cfg.store.retention_days,
        }

    @app.get("/admin/api/export")
    @guarded(csrf=False)
    async def admin_export(s: AdminSession) -> Any:
        fmt = request.args.get("format", "json")
        if fmt not in ("csv", "json"):
            return _err("bad_request", "format is csv or json", 400)
        q, since, _ = _query_args()
        recs = await trio.to_thread.run_sync(_store(ctx).turns_between, q, since, 100_000)
        body = await trio.to_thread.run_sync(to_csv if fmt == "csv" else to_json, recs)
        await _audit(ctx, s.user, "export", f"{fmt}, {len(recs)} turns, q={q!r}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        mime = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        return Response(
            body,
            content_type=mime,
            headers={"Content-Disposition": f'attachment; filename="conversations-{stamp}.{fmt}"'},
        )

    @app.post("/admin/api/turns/delete")
    @guarded(csrf=True)
    async def admin_turns_delete(s: AdminSession) -> Any:
        body = await _json_body() or {}
        sess = body.get("session")
        if body.get("all") is True:
            n = await trio.to_thread.run_sync(_store(ctx).delete_turns, None)
            detail = f"all ({n} turns)"
        elif isinstance(sess, str) and sess:
            n = await trio.to_thread.run_sync(_store(ctx).delete_turns, sess)
            detail = f"session {sess} ({n} turns)"
        else:
            return _err("bad_request", "Send {'session': id} or {'all': true}.", 400)
        await _audit(ctx, s.user, "turns_deleted", detail)
        return {"ok": True, "deleted": n}

    @app.post("/admin/api/turns/purge")
    @guarded(csrf=True)
    async def admin_turns_purge(s: AdminSession) -> Any:
        days = ctx.cfg.store.retention_days
        n = await trio.to_thread.run_sync(_store(ctx).purge_older_than, days)
        await _audit(ctx, s.user, "retention_purge", f"{n} turns older than {days} days")
        return {"ok": True, "deleted": n}


def create_admin_app(ctx: ServiceContext) -> QuartTrio:
    """An app with only the admin page (and its static files), for the LAN listener."""
    from .app import ui_dir

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
        return resp

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
