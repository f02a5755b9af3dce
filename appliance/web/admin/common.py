"""What every admin route module shares: the session and CSRF guard, audit, error bodies.

Security model: one admin account (argon2id hash in the store); no default password; first-run
setup only from the box itself or with a one-time code written to the journal. Sessions are
opaque random tokens in an HttpOnly, SameSite=Strict cookie scoped to /admin; every state change
needs the session's CSRF token in `X-CSRF-Token` and a JSON body (so a cross-site form cannot
even reach the handler). Failed logins lock the address out. Every action is audited.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio
from quart import request

from ...admin.auth import AdminSession, new_setup_code
from ...admin.state import AdminState
from ...service import ServiceContext, admin_state
from ...store import Store
from ..bodies import loads

__all__ = [
    "COOKIE",
    "USER",
    "AdminHttp",
    "cross_origin",
    "err",
    "json_body",
    "log",
    "remote",
]

log = logging.getLogger("appliance.admin")

COOKIE = "appliance_admin"
USER = "admin"

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def err(code: str, message: str, status: int, **extra: Any) -> tuple[dict[str, Any], int]:
    return {"error": code, "message": message, **extra}, status


def remote() -> str:
    return request.remote_addr or "?"


async def json_body() -> dict[str, Any] | None:
    """The JSON object in the body; None when it is not `application/json` or not an object.
    Invalid JSON (deeply nested included) raises BadJson: a 400 (see `register_admin`)."""
    if request.mimetype != "application/json":
        return None
    body = loads(await request.get_data())
    return body if isinstance(body, dict) else None


def cross_origin() -> bool:
    """A browser always sends Origin on a cross-site POST; it must name this host."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.host


class AdminHttp:
    """The service and admin state as the route modules see them, with the request helpers."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.st: AdminState = admin_state(ctx)

    def now(self) -> float:
        return trio.current_time()

    def store(self) -> Store:
        if self.ctx.store is None:
            raise RuntimeError("admin routes need the conversation store")
        return self.ctx.store

    def session(self) -> AdminSession | None:
        return self.st.auth.sessions.get(request.cookies.get(COOKIE), self.now())

    async def audit(self, actor: str, action: str, detail: str = "") -> None:
        addr = remote()
        log.info("admin audit: %s %s %s", actor, action, detail, extra={"remote": addr})
        try:
            await trio.to_thread.run_sync(self.store().add_audit, actor, addr, action, detail)
        except Exception:  # the audit row is lost, the log line above is not
            log.exception("audit log write failed")

    async def ensure_setup_code(self) -> None:
        """On first use with no account: make a one-time code and print it to the journal."""
        st = self.st
        if st.setup_checked:
            return
        st.setup_checked = True
        if await trio.to_thread.run_sync(self.store().admin_hash, USER) is None:
            st.auth.setup_code = new_setup_code()
            log.warning(
                "admin: no password set yet. Open /admin on the kiosk itself, or from another "
                "machine with the one-time setup code %s",
                st.auth.setup_code,
            )

    def guarded(self, *, csrf: bool) -> Callable[[H], H]:
        """Require a session (and for state changes, the CSRF token and a same-origin call)."""

        def deco(fn: H) -> H:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                s = self.session()
                if s is None:
                    return err("login_required", "Please log in.", 401)
                if csrf:
                    if cross_origin() or not self.st.auth.sessions.csrf_ok(
                        s, request.headers.get("X-CSRF-Token")
                    ):
                        await self.audit(s.user, "csrf_rejected", request.path)
                        return err("csrf", "Missing or wrong CSRF token; reload the page.", 403)
                return await fn(s, *args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return deco
