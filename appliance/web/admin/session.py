"""Admin routes: first-run setup, login, logout, password change.

Failed logins lock the address out (admin.auth.LoginThrottle); setup from another machine needs
the one-time code written to the journal; every outcome is audited.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from ...admin.auth import AdminSession, LoginLocked, check_password_policy, is_loopback
from .common import COOKIE, USER, AdminHttp, cross_origin, err, json_body, remote

__all__ = ["register"]


def register(app: QuartTrio, h: AdminHttp) -> None:
    st = h.st

    @app.get("/admin/api/session")
    async def admin_session() -> dict[str, Any]:
        await h.ensure_setup_code()
        s = h.session()
        has_account = await trio.to_thread.run_sync(h.store().admin_hash, USER) is not None
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

    def locked_out(exc: LoginLocked) -> tuple[dict[str, Any], int]:
        return err("locked_out", str(exc), 429, retry_after=exc.retry_after)

    async def pre_auth_checks() -> tuple[dict[str, Any], tuple[dict[str, Any], int] | None]:
        if cross_origin():
            return {}, err("cross_origin", "Cross-site request refused.", 403)
        body = await json_body()
        if body is None:
            return {}, err("bad_request", "Send a JSON object.", 415)
        return body, None

    @app.post("/admin/api/setup")
    async def admin_setup() -> Any:
        await h.ensure_setup_code()
        body, problem = await pre_auth_checks()
        if problem is not None:
            return problem
        store = h.store()
        if await trio.to_thread.run_sync(store.admin_hash, USER) is not None:
            return err("already_set_up", "The admin password is already set; log in.", 409)
        local = is_loopback(request.remote_addr)
        if not local:
            # The setup code is a secret like a password: reserved before it is checked.
            try:
                async with st.auth.guard.attempt(remote()) as attempt:
                    if st.auth.setup_code_ok(body.get("setup_code")):
                        attempt.succeeded()
            except LoginLocked as exc:
                if exc.first:
                    await h.audit("-", "setup_refused", "locked_out")
                return locked_out(exc)
            if not attempt.ok:
                await h.audit("-", "setup_refused", "no or wrong setup code")
                return err(
                    "setup_code",
                    "From another machine, enter the one-time setup code from the system "
                    "journal (journalctl -u appliance).",
                    403,
                )
        password = body.get("password")
        if not isinstance(password, str):
            return err("bad_request", "'password' must be a string.", 400)
        reason = check_password_policy(password)
        if reason is not None:
            return err("weak_password", reason, 400)
        pw_hash = await st.auth.guard.hash(password)
        if not await trio.to_thread.run_sync(
            functools.partial(store.set_admin_hash, pw_hash, USER, create=True)
        ):
            return err("already_set_up", "The admin password is already set; log in.", 409)
        st.auth.setup_code = None
        await h.audit(USER, "setup", "local" if local else "with setup code")
        return login_response(st.auth.sessions.create(USER, remote(), h.now()))

    @app.post("/admin/api/login")
    async def admin_login() -> Any:
        body, problem = await pre_auth_checks()
        if problem is not None:
            await h.audit("-", "login_refused", problem[0]["error"])
            return problem
        password = body.get("password")
        stored = await trio.to_thread.run_sync(h.store().admin_hash, USER)
        if stored is None:
            return err("setup_needed", "No admin password yet; create one first.", 409)
        try:
            # Reserved (counted as a failure) before the ~0.1 s check: N parallel guesses
            # from one address get at most max_failures checks, not N.
            async with st.auth.guard.attempt(remote()) as attempt:
                if isinstance(password, str) and len(password) <= 1024:
                    await attempt.verify(stored, password)
        except LoginLocked as exc:
            if exc.first:
                await h.audit("-", "login_refused", "locked_out")
            return locked_out(exc)
        if not attempt.ok:
            locked = attempt.locked_s
            await h.audit("-", "login_failed", f"lockout {locked:.0f} s" if locked else "")
            if locked:
                return err(
                    "locked_out",
                    f"Too many failed attempts. Try again in {int(locked)} seconds.",
                    429,
                    retry_after=int(locked),
                )
            return err("bad_password", "Wrong password.", 401)
        await h.audit(USER, "login")
        return login_response(st.auth.sessions.create(USER, remote(), h.now()))

    @app.post("/admin/api/logout")
    @h.guarded(csrf=True)
    async def admin_logout(s: AdminSession) -> Response:
        st.auth.sessions.drop(s.token)
        await h.audit(s.user, "logout")
        resp = Response(json.dumps({"ok": True}), content_type="application/json")
        resp.delete_cookie(COOKIE, path="/admin")
        return resp

    @app.post("/admin/api/password")
    @h.guarded(csrf=True)
    async def admin_password(s: AdminSession) -> Any:
        body = await json_body() or {}
        current, new = body.get("current"), body.get("new")
        stored = await trio.to_thread.run_sync(h.store().admin_hash, USER)
        if not (isinstance(current, str) and isinstance(new, str) and stored):
            return err("bad_request", "Send 'current' and 'new'.", 400)
        if not await st.auth.guard.verify(stored, current):
            await h.audit(s.user, "password_change_failed")
            return err("bad_password", "The current password is wrong.", 401)
        reason = check_password_policy(new)
        if reason is not None:
            return err("weak_password", reason, 400)
        pw_hash = await st.auth.guard.hash(new)
        await trio.to_thread.run_sync(
            functools.partial(h.store().set_admin_hash, pw_hash, USER, create=False)
        )
        st.auth.sessions.drop_all()  # every other browser has to log in again
        await h.audit(s.user, "password_changed")
        return login_response(st.auth.sessions.create(s.user, remote(), h.now()))
