"""Admin authentication: argon2id hashes, server-side sessions with CSRF tokens, login lockout.

Sessions live in memory on purpose: a restart logs staff out, which is cheap, and no session
token ever touches the disk. Times are passed in (`now`), so the lockout logic is testable
without a clock.

Logins go through `LoginGuard`: an attempt is reserved (counted as a failure) *before* the
~0.1 s, 64 MiB argon2 check and refunded only when the check succeeds, so N parallel requests
get at most `max_failures` guesses, not N. argon2 runs through the guard's own small
`trio.CapacityLimiter`, never trio's shared thread pool (which the FAQ lookups use). Lockouts
are per client (an IPv6 client by its /64); loopback is one client of its own that failures
from the LAN never lock, so staff at the kiosk and first-run setup stay possible under attack.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "AdminAuth",
    "AdminSession",
    "LoginAttempt",
    "LoginGuard",
    "LoginLocked",
    "LoginThrottle",
    "Reservation",
    "SessionStore",
    "check_password_policy",
    "client_key",
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
    """Blocking (~0.1 s, 64 MiB): from trio, call `LoginGuard.hash` (its own thread limiter)."""
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


LOOPBACK = "loopback"


def client_key(addr: str | None) -> str:
    """Whom a lockout counts against: every loopback address is one client ("loopback"), an
    IPv4 address itself, an IPv6 address its /64 (one host can take any address in its
    prefix); IPv4-mapped IPv6 as IPv4. Unparsable or unknown: the text itself (or "?")."""
    if not addr:
        return "?"
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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


@dataclass(frozen=True)
class Reservation:
    """One login attempt counted as a failure in advance (see LoginThrottle.reserve)."""

    client: str  # client_key() of the address
    global_window: float | None  # the global counter's window it was counted in (None: not)
    locked_s: float  # the lockout this attempt started by being counted (0.0 = none)


class LoginThrottle:
    """Failed logins per client (see client_key): `max_failures` within `window_s` locks that
    client out for `lockout_s`. A global counter (spread-out guessing from many addresses)
    locks every non-loopback client at `max_failures * global_factor` failures; loopback has
    only its own counter, so failures from the LAN never lock out staff at the kiosk."""

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

    def _counters(self, addr: str) -> list[tuple[str, int]]:
        """(key, limit) of every counter a failure from `addr` counts against."""
        client = client_key(addr)
        counters = [(client, self.max_failures)]
        if client != LOOPBACK:
            counters.append((self.GLOBAL, self.max_failures * self.global_factor))
        return counters

    def locked_for(self, addr: str, now: float) -> float:
        """Seconds until `addr` may try again (0.0 = it may try now)."""
        waits = [
            f.locked_until - now
            for key, _ in self._counters(addr)
            if (f := self._by_addr.get(key)) is not None
        ]
        return max([0.0, *waits])

    def failure(self, addr: str, now: float) -> float:
        """Record a failed attempt; returns the lockout it caused (0.0 = none yet)."""
        return self._count(addr, now).locked_s

    def reserve(self, addr: str, now: float) -> Reservation | float:
        """Check and count in one step, before any expensive check: the seconds to wait when
        `addr` is locked out (nothing counted), else a Reservation that already counts as a
        failure until `refund` takes it back."""
        wait = self.locked_for(addr, now)
        if wait > 0:
            return wait
        return self._count(addr, now)

    def refund(self, reservation: Reservation) -> None:
        """The reserved attempt succeeded: the client's failures are forgiven and the global
        counter gets its one back."""
        self._by_addr.pop(reservation.client, None)
        g = self._by_addr.get(self.GLOBAL)
        if (
            g is not None
            and reservation.global_window is not None
            and g.first_at == reservation.global_window
            and g.count > 0
        ):
            g.count -= 1

    def success(self, addr: str) -> None:
        self._by_addr.pop(client_key(addr), None)

    def _count(self, addr: str, now: float) -> Reservation:
        if len(self._by_addr) >= self.max_tracked:
            self._by_addr = {
                k: f
                for k, f in self._by_addr.items()
                if f.locked_until > now or now - f.first_at < self.window_s
            }
        locked = 0.0
        window: float | None = None
        for key, limit in self._counters(addr):
            f = self._by_addr.setdefault(key, _Failures(first_at=now))
            if now - f.first_at >= self.window_s:
                f.count, f.first_at = 0, now
            f.count += 1
            if key == self.GLOBAL:
                window = f.first_at
            if f.count >= limit:
                f.locked_until = now + self.lockout_s
                f.count, f.first_at = 0, now
                locked = max(locked, self.lockout_s)
        return Reservation(client_key(addr), window, locked)


class LoginLocked(Exception):
    """A login attempt refused by a lockout before any password check."""

    def __init__(self, wait_s: float, *, first: bool) -> None:
        self.wait_s = wait_s
        self.retry_after = int(wait_s) + 1  # whole seconds for the Retry-After hint
        # The first refusal of this client during this lockout: worth an audit row; the rest
        # of a flood is not (each row would be attacker-paid disk).
        self.first = first
        super().__init__(f"Too many failed attempts. Try again in {self.retry_after} seconds.")


class LoginAttempt:
    """One reserved attempt inside `LoginGuard.attempt`: it stays a failure unless `verify`
    returns True or `succeeded()` is called (for checks that are not a password, such as the
    first-run setup code)."""

    def __init__(self, guard: LoginGuard, reservation: Reservation) -> None:
        self._guard = guard
        self.reservation = reservation
        self.ok = False

    @property
    def locked_s(self) -> float:
        """The lockout this attempt starts if it fails (0.0 = none): answer 429 then."""
        return 0.0 if self.ok else self.reservation.locked_s

    async def verify(self, encoded: str, password: str) -> bool:
        ok = await self._guard.verify(encoded, password)
        if ok:
            self.ok = True
        return ok

    def succeeded(self) -> None:
        self.ok = True


class LoginGuard:
    """Reserve-before-verify logins and argon2 on a limiter of its own.

        try:
            async with guard.attempt(remote_addr) as attempt:
                ok = await attempt.verify(stored_hash, password)
        except LoginLocked as locked:
            ...  # 429, Retry-After: locked.retry_after; audit only if locked.first
        if not ok:
            ...  # 401, or 429 when attempt.locked_s > 0 (this failure started a lockout)

    The reservation is taken with no checkpoint before it, so of any number of concurrent
    attempts from one client at most `max_failures` reach argon2 per window.
    """

    def __init__(
        self,
        throttle: LoginThrottle,
        *,
        argon2_threads: int = 2,
        clock: Callable[[], float] = trio.current_time,
        max_reported: int = 4096,
    ) -> None:
        self.throttle = throttle
        # argon2id takes 64 MiB per hash: two at a time bound that to 128 MiB, and a login
        # flood cannot take the worker threads FAQ lookups and the store need.
        self.limiter = trio.CapacityLimiter(argon2_threads)
        self._clock = clock
        self._max_reported = max_reported
        self._reported: dict[str, float] = {}  # client -> end of the lockout already reported
        self._lock = threading.Lock()
        self._hashing = 0
        self.checks = 0  # argon2 verifications started
        self.hashes = 0  # argon2 hashes made (setup, password change)
        self.refused = 0  # attempts refused by a lockout, before any work
        self.peak_hashing = 0  # most argon2 computations at once

    @asynccontextmanager
    async def attempt(self, addr: str) -> AsyncIterator[LoginAttempt]:
        """Reserve an attempt for `addr` (raises LoginLocked when it is locked out); the
        reservation is refunded on leaving only when the attempt succeeded."""
        now = self._clock()
        reserved = self.throttle.reserve(addr, now)
        if not isinstance(reserved, Reservation):
            self.refused += 1
            raise LoginLocked(reserved, first=self._first_refusal(client_key(addr), now, reserved))
        attempt = LoginAttempt(self, reserved)
        try:
            yield attempt
        finally:
            if attempt.ok:
                self.throttle.refund(reserved)

    def _first_refusal(self, client: str, now: float, wait: float) -> bool:
        if self._reported.get(client, -1.0) > now:
            return False
        if len(self._reported) >= self._max_reported:
            self._reported = {c: t for c, t in self._reported.items() if t > now}
            if len(self._reported) >= self._max_reported:
                return False  # a flood from very many clients: no more audit rows for now
        self._reported[client] = now + wait
        return True

    async def verify(self, encoded: str, password: str) -> bool:
        """verify_password in a worker thread under the guard's limiter. Checks outside
        `attempt` (a signed-in user's current password) should still come through here."""
        return bool(await self._argon2(verify_password, encoded, password))

    async def hash(self, password: str) -> str:
        """hash_password in a worker thread under the guard's limiter."""
        return str(await self._argon2(hash_password, password))

    async def _argon2(self, fn: Callable[..., object], *args: str) -> object:
        # limiter= replaces trio's default limiter: these threads never take one of its tokens.
        return await trio.to_thread.run_sync(self._counted, fn, *args, limiter=self.limiter)

    def _counted(self, fn: Callable[..., object], *args: str) -> object:
        """Runs in the worker thread: the counters the tests and `appliance bench` read."""
        with self._lock:
            if fn is verify_password:
                self.checks += 1
            else:
                self.hashes += 1
            self._hashing += 1
            self.peak_hashing = max(self.peak_hashing, self._hashing)
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._hashing -= 1


@dataclass
class AdminAuth:
    """Everything the admin routes keep in memory, shared by the kiosk and LAN listeners."""

    sessions: SessionStore
    throttle: LoginThrottle
    # Set while no admin account exists; cleared by the first successful setup.
    setup_code: str | None = None
    notes: list[str] = field(default_factory=list)
    # Logins and argon2 work go through here (it shares `throttle`).
    guard: LoginGuard = field(init=False)

    def __post_init__(self) -> None:
        self.guard = LoginGuard(self.throttle)

    def setup_code_ok(self, supplied: str | None) -> bool:
        if self.setup_code is None or not supplied:
            return False
        norm = supplied.strip().upper()
        return _same(self.setup_code, norm)
