"""Admin authentication: argon2id hashes, server-side sessions with CSRF tokens, login lockout.

Sessions live in memory on purpose: a restart logs staff out, which is cheap, and no session
token ever touches the disk. Times are passed in (`now`), so the lockout logic is testable
without a clock.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "AdminAuth",
    "AdminSession",
    "LoginThrottle",
    "SessionStore",
    "check_password_policy",
    "hash_password",
    "is_loopback",
    "new_setup_code",
    "verify_password",
]

MIN_PASSWORD = 10
MAX_PASSWORD = 256

# argon2id with the library's RFC 9106 "low memory" profile (64 MiB, t=3): ~0.1 s on a small
# box, and it runs in a worker thread so the kiosk never waits for it.
_HASHER = PasswordHasher(type=Type.ID)


def hash_password(password: str) -> str:
    """Blocking (~0.1 s): call through trio.to_thread.run_sync."""
    return _HASHER.hash(password)


def verify_password(encoded: str, password: str) -> bool:
    """Blocking like hash_password. A malformed stored hash counts as a mismatch."""
    try:
        return _HASHER.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str) -> str | None:
    """The reason a new password is refused, or None. Length is what matters (NIST 800-63B)."""
    if len(password) < MIN_PASSWORD:
        return f"The password must have at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"The password must have at most {MAX_PASSWORD} characters."
    if not password.strip():
        return "The password must not be only spaces."
    return None


def is_loopback(addr: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped); unknown or unparsable is not."""
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def new_setup_code() -> str:
    """A one-time code for first-run setup from another machine (printed to the journal)."""
    raw = secrets.token_hex(6).upper()
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class AdminSession:
    token: str
    csrf: str
    user: str
    remote: str
    expires: float


class SessionStore:
    """Opaque random tokens -> sessions with an absolute expiry."""

    def __init__(self, lifetime_s: float, max_sessions: int = 64) -> None:
        self.lifetime_s = lifetime_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, AdminSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str, remote: str, now: float) -> AdminSession:
        self._sessions = {t: s for t, s in self._sessions.items() if s.expires > now}
        if len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.token]
        s = AdminSession(
            token=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            user=user,
            remote=remote,
            expires=now + self.lifetime_s,
        )
        self._sessions[s.token] = s
        return s

    def get(self, token: str | None, now: float) -> AdminSession | None:
        if not token:
            return None
        s = self._sessions.get(token)
        if s is None:
            return None
        if s.expires <= now:
            del self._sessions[token]
            return None
        return s

    def drop(self, token: str) -> None:
        self._sessions.pop(token, None)

    def drop_all(self) -> None:
        self._sessions.clear()

    @staticmethod
    def csrf_ok(session: AdminSession, supplied: str | None) -> bool:
        return supplied is not None and _same(session.csrf, supplied)


@dataclass
class _Failures:
    count: int = 0
    first_at: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed logins per address: `max_failures` within `window_s` locks that address out for
    `lockout_s`. A global counter (spread-out guessing from many addresses) locks every address
    at `max_failures * global_factor` failures."""

    GLOBAL = "*"

    def __init__(
        self,
        max_failures: int,
        lockout_s: float,
        *,
        window_s: float = 900.0,
        global_factor: int = 4,
        max_tracked: int = 4096,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.window_s = window_s
        self.global_factor = global_factor
        self.max_tracked = max_tracked
        self._by_addr: dict[str, _Failures] = {}

    def locked_for(self, addr: str, now: float) -> float:
        """Seconds until `addr` may try again (0.0 = it may try now)."""
        waits = [
            f.locked_until - now
            for key in (addr, self.GLOBAL)
            if (f := self._by_addr.get(key)) is not None
        ]
        return max([0.0, *waits])

    def failure(self, addr: str, now: float) -> float:
        """Record a failed attempt; returns the lockout it caused (0.0 = none yet)."""
        if len(self._by_addr) >= self.max_tracked:
            self._by_addr = {
                k: f
                for k, f in self._by_addr.items()
                if f.locked_until > now or now - f.first_at < self.window_s
            }
        locked = 0.0
        for key, limit in (
            (addr, self.max_failures),
            (self.GLOBAL, self.max_failures * self.global_factor),
        ):
            f = self._by_addr.setdefault(key, _Failures(first_at=now))
            if now - f.first_at >= self.window_s:
                f.count, f.first_at = 0, now
            f.count += 1
            if f.count >= limit:
                f.locked_until = now + self.lockout_s
                f.count, f.first_at = 0, now
                locked = max(locked, self.lockout_s)
        return locked

    def success(self, addr: str) -> None:
        self._by_addr.pop(addr, None)


@dataclass
class AdminAuth:
    """Everything the admin routes keep in memory, shared by the kiosk and LAN listeners."""

    sessions: SessionStore
    throttle: LoginThrottle
    # Set while no admin account exists; cleared by the first successful setup.
    setup_code: str | None = None
    notes: list[str] = field(default_factory=list)

    def setup_code_ok(self, supplied: str | None) -> bool:
        if self.setup_code is None or not supplied:
            return False
        norm = supplied.strip().upper()
        return _same(self.setup_code, norm)
