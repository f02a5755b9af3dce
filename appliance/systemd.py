"""sd_notify without libsystemd: READY/STATUS/WATCHDOG/STOPPING datagrams to NOTIFY_SOCKET.

The protocol is a newline-separated `KEY=VALUE` list in one AF_UNIX datagram; an address starting
with '@' is in the abstract namespace. Sending is non-blocking and tiny, so it is fine on the
event loop. Outside systemd (NOTIFY_SOCKET unset) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

import trio

__all__ = ["Notifier", "watchdog_interval", "watchdog_pinger"]

log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | bytes | None:
    """NOTIFY_SOCKET as a sockaddr for AF_UNIX, or None for a form we don't speak."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None  # e.g. "vsock:..." (newer systemd, VMs): not needed on a kiosk box


def _one_line(value: str) -> str:
    # A newline inside a value would start a new (bogus) assignment.
    return " ".join(value.splitlines())


class Notifier:
    """Sends sd_notify datagrams over NOTIFY_SOCKET (plain AF_UNIX SOCK_DGRAM; '@' prefix =
    abstract namespace). A no-op when NOTIFY_SOCKET is unset."""

    def __init__(self, notify_socket: str | None) -> None:
        self._address = _socket_address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            log.warning(
                "NOTIFY_SOCKET=%r is not an AF_UNIX address; sd_notify disabled", notify_socket
            )
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str | None = None) -> None:
        """READY=1: systemd considers start-up done (Type=notify) and starts ordered units."""
        self._send_pairs([("READY", "1"), *self._status_pair(status)])

    def status(self, text: str) -> None:
        """Free-form one-line status shown by `systemctl status`."""
        self._send_pairs([("STATUS", text)])

    def watchdog(self) -> None:
        self._send_pairs([("WATCHDOG", "1")])

    def stopping(self, status: str | None = None) -> None:
        self._send_pairs([("STOPPING", "1"), *self._status_pair(status)])

    def notify(self, **fields: str) -> None:
        """Send any fields, in the order given. Never raises (logs once on socket errors)."""
        self._send_pairs(list(fields.items()))

    @staticmethod
    def _status_pair(status: str | None) -> list[tuple[str, str]]:
        return [] if status is None else [("STATUS", status)]

    def _send_pairs(self, pairs: list[tuple[str, str]]) -> None:
        if self._address is None or not pairs:
            return
        payload = "\n".join(f"{key}={_one_line(value)}" for key, value in pairs).encode()
        try:
            # A socket per message: a few microseconds every few seconds, and no descriptor for
            # a long-lived object to leak.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            # systemd gone, socket buffer full, wrong permissions: the service keeps running;
            # one log line, not one per watchdog tick.
            if not self._warned:
                self._warned = True
                log.warning(
                    "sd_notify to %r failed: %s (further failures not logged)", self._address, exc
                )


def watchdog_interval(
    environ: Mapping[str, str] = os.environ, pid: int | None = None
) -> float | None:
    """How often to send WATCHDOG=1: half of WATCHDOG_USEC, in seconds.

    None when the watchdog is off, the value is malformed, or WATCHDOG_PID names another
    process (a child that inherited our environment must not pet our watchdog).
    """
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", raw)
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            owner_pid = int(owner)
        except ValueError:
            log.warning("ignoring watchdog: malformed WATCHDOG_PID=%r", owner)
            return None
        if owner_pid != (os.getpid() if pid is None else pid):
            return None
    return usec / 2 / 1e6


async def watchdog_pinger(
    notifier: Notifier,
    interval: float,
    healthy: Callable[[], bool],
    *,
    recheck: float | None = None,
) -> None:
    """Send WATCHDOG=1 every `interval` while `healthy()` is true; never while it is false.

    When unhealthy, health is re-checked every `recheck` (default interval/10) and a ping goes out
    as soon as it recovers, so one unlucky sample doesn't cost a restart; a service unhealthy for
    about WatchdogSec gets no ping and systemd restarts it. An exception from `healthy` is a bug
    and propagates.
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval}")
    retry = interval / 10 if recheck is None else recheck
    while True:
        if healthy():
            notifier.watchdog()
            await trio.sleep(interval)
        else:
            await trio.sleep(retry)
