"""LoginGuard: reserve-before-verify lockouts under concurrent logins, per-client counting with
loopback exempt from LAN failures, and argon2 on a limiter of its own. Real argon2 throughout;
virtual time (MockClock without autojump) so lockout expiry is exact and nothing sleeps."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from appliance.admin.auth import (
    LOOPBACK,
    AdminAuth,
    LoginGuard,
    LoginLocked,
    LoginThrottle,
    SessionStore,
    client_key,
    hash_password,
)

PASSWORD = "correct horse battery"
LAN = "192.0.2.7"


@pytest.fixture
def clock() -> MockClock:
    return MockClock()  # time moves only when a test jumps it


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


async def login(guard: LoginGuard, addr: str, stored: str, password: str) -> str:
    """One login as the admin route does it: 'ok', 'wrong', 'locked' (this failure started a
    lockout) or 'refused' (locked out before any check)."""
    try:
        async with guard.attempt(addr) as attempt:
            ok = await attempt.verify(stored, password)
    except LoginLocked:
        return "refused"
    if ok:
        return "ok"
    return "locked" if attempt.locked_s > 0 else "wrong"


async def flood(guard: LoginGuard, addrs: list[str], stored: str) -> list[str]:
    results: list[str] = []

    async def one(addr: str) -> None:
        results.append(await login(guard, addr, stored, "wrong guess 12345"))

    async with trio.open_nursery() as nursery:
        for addr in addrs:
            nursery.start_soon(one, addr)
    return results


def test_client_key_groups_what_one_host_controls() -> None:
    assert {client_key(a) for a in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1")} == {
        LOOPBACK
    }
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    # A host picks any address in its /64 (SLAAC privacy addresses): one client.
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::5") != client_key("2001:db8:1:3::5")
    assert client_key(None) == client_key("") == "?"
    assert client_key("fe80::1%eth0") == client_key("fe80::2")


async def test_parallel_wrong_logins_get_at_most_max_failures_checks(
    clock: MockClock, stored: str
) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=5, lockout_s=300.0))
    results = await flood(guard, [LAN] * 1000, stored)
    assert guard.checks == 5  # argon2 ran for 5 guesses, not 1000
    assert results.count("refused") == 995 and guard.refused == 995
    assert sorted(set(results)) == ["locked", "refused", "wrong"]
    # Locked out now: even the right password is not checked.
    assert await login(guard, LAN, stored, PASSWORD) == "refused"
    assert guard.checks == 5
    clock.jump(299.0)
    assert await login(guard, LAN, stored, PASSWORD) == "refused"
    clock.jump(1.5)
    assert await login(guard, LAN, stored, PASSWORD) == "ok"
    assert guard.checks == 6


async def test_argon2_runs_on_its_own_limiter(clock: MockClock, stored: str) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=6, lockout_s=300.0), argon2_threads=2)
    default = trio.to_thread.current_default_thread_limiter()
    seen: list[tuple[int, int]] = []

    async def watch() -> None:
        await wait_all_tasks_blocked()  # every attempt is hashing or queued for the limiter
        seen.append((guard.limiter.borrowed_tokens, default.borrowed_tokens))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        nursery.start_soon(flood, guard, [LAN] * 6, stored)
    assert seen == [(2, 0)]  # two argon2 threads, none of trio's shared pool
    assert guard.checks == 6 and guard.peak_hashing == 2
    assert await guard.hash(PASSWORD) != await guard.hash(PASSWORD)  # salted, same limiter
    assert guard.hashes == 2


async def test_many_lan_addresses_never_lock_out_loopback(clock: MockClock, stored: str) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=2, lockout_s=300.0, global_factor=3))
    results = await flood(guard, [f"10.0.{i // 250}.{i % 250}" for i in range(300)], stored)
    assert guard.checks == 6  # the global cap: max_failures * global_factor guesses in all
    assert results.count("refused") == 294
    # Every LAN address is locked now, the LAN setup page included ...
    assert await login(guard, "10.9.9.9", stored, PASSWORD) == "refused"
    # ... but not staff at the kiosk (loopback): right password works, first try.
    assert await login(guard, "127.0.0.1", stored, PASSWORD) == "ok"
    assert await login(guard, "::1", stored, PASSWORD) == "ok"


async def test_loopback_has_its_own_lockout(clock: MockClock, stored: str) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=2, lockout_s=60.0))
    assert await flood(guard, ["127.0.0.1", "127.0.0.2", "::1"], stored) != []
    assert guard.checks == 2  # all loopback addresses are one client
    assert await login(guard, "127.0.0.1", stored, PASSWORD) == "refused"
    assert await login(guard, LAN, stored, PASSWORD) == "ok"  # loopback failures stay local


async def test_success_refunds_the_reservation(clock: MockClock, stored: str) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=3, lockout_s=60.0, global_factor=2))
    # Staff logging in all day never accumulate failures, locally or in the global count.
    for _ in range(4):  # 8 successes: past both the client's (3) and the global (6) limit
        assert await login(guard, LAN, stored, PASSWORD) == "ok"
        assert await login(guard, "192.0.2.8", stored, PASSWORD) == "ok"
    # Two typos and then the right password: forgiven, three more tries before a lockout.
    assert await login(guard, LAN, stored, "typo typo 1") == "wrong"
    assert await login(guard, LAN, stored, "typo typo 2") == "wrong"
    assert await login(guard, LAN, stored, PASSWORD) == "ok"
    assert [await login(guard, LAN, stored, "typo typo 3") for _ in range(3)] == [
        "wrong",
        "wrong",
        "locked",
    ]


async def test_an_unfinished_attempt_stays_a_failure(clock: MockClock, stored: str) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=2, lockout_s=60.0))
    with trio.CancelScope() as scope:
        async with guard.attempt(LAN):
            scope.cancel()  # the client hung up mid-check
            await trio.sleep_forever()
    with pytest.raises(RuntimeError):
        async with guard.attempt(LAN):
            raise RuntimeError("store unreadable")
    with pytest.raises(LoginLocked) as locked:
        async with guard.attempt(LAN):
            pass
    assert locked.value.retry_after == 61 and "Try again in 61 seconds" in str(locked.value)


async def test_setup_code_attempts_use_the_same_guard(clock: MockClock) -> None:
    auth = AdminAuth(sessions=SessionStore(3600.0), throttle=LoginThrottle(2, 60.0))
    auth.setup_code = "ABCD-EF01-2345"
    assert auth.guard.throttle is auth.throttle
    for code in ("nope", "still nope"):
        async with auth.guard.attempt(LAN) as attempt:
            if auth.setup_code_ok(code):
                attempt.succeeded()
    with pytest.raises(LoginLocked):
        async with auth.guard.attempt(LAN):
            pass
    async with auth.guard.attempt("127.0.0.1") as attempt:  # first-run at the kiosk: open
        attempt.succeeded()
    assert auth.throttle.locked_for("127.0.0.1", trio.current_time()) == 0.0


async def test_only_the_first_refusal_per_lockout_is_reported(clock: MockClock) -> None:
    guard = LoginGuard(LoginThrottle(max_failures=1, lockout_s=10.0))
    async with guard.attempt(LAN):
        pass  # one failure locks (max_failures=1)
    firsts = []
    for _ in range(50):
        try:
            async with guard.attempt(LAN):
                pass
        except LoginLocked as exc:
            firsts.append(exc.first)
    assert firsts == [True] + [False] * 49  # one audit row, not fifty
    clock.jump(11.0)
    async with guard.attempt(LAN):
        pass  # locks again
    with pytest.raises(LoginLocked) as again:
        async with guard.attempt(LAN):
            pass
    assert again.value.first  # a new lockout is reported again
