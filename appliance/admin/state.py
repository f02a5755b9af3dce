"""The admin page's in-memory state for one running service (sessions, lockouts, pending edits).

Shared by the kiosk listener and the LAN admin listener, so a login on one is a login on both.
"""

from __future__ import annotations

from ..config import Config
from .auth import AdminAuth, LoginThrottle, SessionStore

__all__ = ["AdminState"]


class AdminState:
    def __init__(self, cfg: Config) -> None:
        a = cfg.admin
        self.auth = AdminAuth(
            sessions=SessionStore(a.session_s),
            throttle=LoginThrottle(a.max_failures, a.lockout_s),
        )
        # What the config file holds (may differ from the running config by restart-only keys).
        self.saved: Config = cfg
        self.restart_pending: list[str] = []
        self.setup_checked = False
