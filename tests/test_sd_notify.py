"""sd_notify against real AF_UNIX datagram sockets (path and abstract), no systemd needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from appliance.systemd import Notifier, watchdog_interval, watchdog_pinger

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def recv_all(sock: socket.socket) -> list[bytes]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(5)


def test_exact_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("ready; local ok")
    n.status("warming up\nASR")
    n.watchdog()
    n.stopping()
    n.notify(STATUS="x", ERRNO="5")
    assert recv_all(sock) == [
        b"READY=1\nSTATUS=ready; local ok",
        b"STATUS=warming up ASR",  # a newline would start a bogus assignment
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"STATUS=x\nERRNO=5",
    ]


def test_abstract_namespace() -> None:
    name = f"appliance-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        n.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_disabled_without_socket_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not Notifier.from_env({}).enabled
    Notifier.from_env({}).ready("nothing happens")
    assert not Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    # systemd went away: the socket path is dead; a warning, no exception.
    gone = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert gone.enabled
    gone.watchdog()
    gone.watchdog()
    failures = [r for r in caplog.records if "sd_notify to" in r.getMessage()]
    assert len(failures) == 1  # logged once, not once per watchdog tick


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, None, None),
        ({"WATCHDOG_USEC": "20000000"}, None, 10.0),
        ({"WATCHDOG_USEC": "abc"}, None, None),
        ({"WATCHDOG_USEC": "0"}, None, None),
        ({"WATCHDOG_USEC": "-5"}, None, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "4242"}, 4242, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "4242"}, 4243, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "x"}, 4242, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int | None, expected: float | None) -> None:
    assert watchdog_interval(env, pid=pid) == expected


def test_watchdog_interval_defaults_to_own_pid() -> None:
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 0.5


async def test_pinger_cadence_and_unhealthy_pause(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    rx = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "wd.sock")
    await rx.bind(path)
    notifier = Notifier(path)
    t0 = trio.current_time()
    # Unhealthy (a wedged stage, a lagging loop) from t=12 until t=27.
    healthy = lambda: not (12 <= trio.current_time() - t0 < 27)  # noqa: E731
    pings: list[float] = []

    async def collect() -> None:
        while True:
            assert await rx.recv(64) == b"WATCHDOG=1"
            pings.append(trio.current_time() - t0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        nursery.start_soon(lambda: watchdog_pinger(notifier, 5.0, healthy, recheck=1.0))
        await trio.sleep(39.5)
        nursery.cancel_scope.cancel()
    rx.close()
    # Every 5 s while healthy; nothing in [12, 27); the first re-check after recovery pings.
    assert pings == [0.0, 5.0, 10.0, 27.0, 32.0, 37.0]


async def test_pinger_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await watchdog_pinger(Notifier(None), 0.0, lambda: True)


def test_child_process_reports_ready(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    code = (
        "from appliance.systemd import Notifier, watchdog_interval\n"
        "n = Notifier.from_env()\n"
        "assert watchdog_interval() == 1.0, watchdog_interval()\n"
        "n.ready('child up')\n"
        "n.stopping()\n"
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "2000000",
        "PYTHONPATH": str(REPO),
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert sock.recv(4096) == b"READY=1\nSTATUS=child up"
    assert sock.recv(4096) == b"STOPPING=1"
