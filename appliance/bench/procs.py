"""The processes a bench runs: the appliance under test, the scripted LLM, /proc sampling.

Each peer is its own OS process so that the client/load generator never shares the appliance's
event loop, and the appliance is started exactly as systemd starts it (`python -m appliance run
--config FILE` with a real NOTIFY_SOCKET), so READY=1 means what it means in production.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w
import trio

__all__ = [
    "Appliance",
    "ApplianceStartError",
    "NotifyEvent",
    "ProcSample",
    "ScriptedLLMProc",
    "children_of",
    "free_port",
    "log_records",
    "proc_sample",
    "run_appliance",
    "run_scripted_llm",
    "scrape_metrics",
    "terminate",
]

_STOP_GRACE_S = 10.0
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ApplianceStartError(RuntimeError):
    """The appliance exited or never said READY=1; carries the tail of its log."""


def free_port() -> int:
    """A port free on loopback right now (tiny race with other binders; fine on a bench box)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    """One look at a process: wall time, CPU seconds used so far, RSS and open descriptors."""

    wall: float
    cpu_s: float
    rss_mb: float
    fds: int


def proc_sample(pid: int) -> ProcSample:
    """Read /proc/<pid> (a few small reads; fine on the event loop)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may contain spaces; everything after the closing paren is space-separated.
    rest = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(rest[11]), int(rest[12])
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
            break
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcSample(
        wall=time.monotonic(),
        cpu_s=(utime + stime) / _CLK_TCK,
        rss_mb=round(rss_kb / 1024, 2),
        fds=fds,
    )


def cpu_percent(a: ProcSample, b: ProcSample) -> float:
    """CPU use between two samples, in % of one core (200 = two cores busy)."""
    wall = b.wall - a.wall
    return round(100.0 * (b.cpu_s - a.cpu_s) / wall, 1) if wall > 0 else 0.0


def children_of(pid: int) -> list[int]:
    """Direct children of pid (scans /proc; used to find the local LLM server)."""
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return out


# -- processes -------------------------------------------------------------------------------------


async def terminate(proc: trio.Process, grace_s: float = _STOP_GRACE_S) -> int | None:
    """SIGTERM (the graceful path), then SIGKILL after grace_s. Returns the exit code."""
    if proc.returncode is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        with trio.move_on_after(grace_s):
            await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    return proc.returncode


@dataclass
class ScriptedLLMProc:
    url: str
    pid: int
    first_token_ms: float
    token_ms: float
    reply: str
    mode: str


@asynccontextmanager
async def run_scripted_llm(
    *,
    first_token_ms: float,
    token_ms: float,
    reply: str,
    mode: str = "ok",
) -> AsyncIterator[ScriptedLLMProc]:
    """`python -m appliance.fakes.scripted_llm --port 0` as a child; yields once it printed its
    URL, stops it on exit. Its stderr is ours, so a crash there is visible."""
    cmd = [
        sys.executable,
        "-m",
        "appliance.fakes.scripted_llm",
        "--port",
        "0",
        "--mode",
        mode,
        "--first-token-ms",
        str(first_token_ms),
        "--token-ms",
        str(token_ms),
        "--reply",
        reply,
    ]
    proc = await trio.lowlevel.open_process(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None
    )
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(30):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError("the scripted LLM exited before printing its URL")
                buf += chunk
        url = buf.split(b"\n", 1)[0].decode().strip()
        yield ScriptedLLMProc(
            url=url,
            pid=proc.pid,
            first_token_ms=first_token_ms,
            token_ms=token_ms,
            reply=reply,
            mode=mode,
        )
    finally:
        with trio.CancelScope(shield=True):
            await terminate(proc, grace_s=3.0)
            if proc.stdout is not None:
                await proc.stdout.aclose()


@dataclass(frozen=True)
class NotifyEvent:
    """An sd_notify datagram as received: seconds since spawn and its KEY=VALUE pairs."""

    t_s: float
    fields: dict[str, str]


@dataclass
class Appliance:
    proc: trio.Process
    base_url: str
    config_path: Path
    log_path: Path
    spawned_wall: float  # time.time() just before spawning (to align with log timestamps)
    ready_s: float  # spawn -> READY=1
    notify: list[NotifyEvent] = field(default_factory=list)
    exit_code: int | None = None
    stop_s: float | None = None  # SIGTERM -> exit

    @property
    def stopping_seen(self) -> bool:
        """STOPPING=1 arrived (the graceful stop path ran)."""
        return any(ev.fields.get("STOPPING") == "1" for ev in self.notify)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _prepare(
    workdir: Path, config: dict[str, Any], *, write: bool = True
) -> tuple[Path, Path, Path]:
    """Write the config (a few hundred bytes) and choose the log and notify socket paths."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.toml"
    if write:
        config_path.write_text(tomli_w.dumps(config))
    sock_path = workdir / "notify.sock"
    sock_path.unlink(missing_ok=True)
    return config_path, workdir / "appliance.log", sock_path


def _parse_notify(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


@asynccontextmanager
async def run_appliance(
    config: dict[str, Any],
    workdir: Path,
    *,
    ready_timeout_s: float = 120.0,
    log_level: str = "INFO",
    keep_config: bool = False,
    pythonpath: str | None = None,
) -> AsyncIterator[Appliance]:
    """Start `python -m appliance run` with `config` (written as TOML in workdir) and a real
    NOTIFY_SOCKET; yield once READY=1 arrived; SIGTERM it (graceful stop) on exit.

    The config must set `web.host`/`web.port` to a concrete loopback port (see free_port), so
    the bench knows where to connect without parsing logs. `log_level` DEBUG adds what visitors
    said and were told (the voice bench reads them; production keeps them out of the journal).
    `keep_config`: start from the config file already in workdir (as left by an earlier run),
    `config` only says where it listens. `pythonpath`: run the appliance from another source
    tree (e.g. an older commit, to measure a fix against what it fixed).
    """
    config_path, log_path, sock_path = _prepare(workdir, config, write=not keep_config)
    notify_sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify_sock.bind(str(sock_path))
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "PYTHONUNBUFFERED": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    base_url = f"http://{config['web']['host']}:{config['web']['port']}"
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        spawned_wall = time.time()
        t0 = time.perf_counter()
        proc = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "appliance",
                "run",
                "--config",
                str(config_path),
                "--log-level",
                log_level,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(workdir),
        )
    finally:
        os.close(log_fd)  # the child has its own copy
    app = Appliance(
        proc=proc,
        base_url=base_url,
        config_path=config_path,
        log_path=log_path,
        spawned_wall=spawned_wall,
        ready_s=0.0,
    )

    async def receive_one(timeout_s: float) -> bool:
        with trio.move_on_after(timeout_s):
            fields = _parse_notify(await notify_sock.recv(65536))
            app.notify.append(NotifyEvent(time.perf_counter() - t0, fields))
            if fields.get("READY") == "1" and not app.ready_s:
                app.ready_s = app.notify[-1].t_s
            return True
        return False

    # The socket stays open for the appliance's whole life: its STATUS/STOPPING datagrams after
    # READY queue up in the kernel (a handful; the watchdog is off) and are read after it exits.
    with notify_sock:
        try:
            with trio.move_on_after(ready_timeout_s) as waited:
                while not app.ready_s:
                    if not await receive_one(0.2) and proc.poll() is not None:
                        raise ApplianceStartError(
                            f"the appliance exited with code {proc.returncode} before "
                            "READY=1:\n" + app.log_tail()
                        )
            if waited.cancelled_caught:
                raise ApplianceStartError(
                    f"no READY=1 within {ready_timeout_s:.0f} s:\n" + app.log_tail()
                )
            yield app
        finally:
            with trio.CancelScope(shield=True):
                began = time.perf_counter()
                app.exit_code = await terminate(proc)
                app.stop_s = round(time.perf_counter() - began, 3)
                while await receive_one(0.01):  # already queued: drain what it sent
                    pass


def log_records(path: Path) -> list[dict[str, Any]]:
    """The appliance's JSON log lines (non-JSON lines, e.g. a native library's chatter, skipped)."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


async def scrape_metrics(base_url: str) -> str:
    """GET /metrics over a fresh connection that is closed again (no descriptor left behind in
    the appliance to skew the fd count)."""
    async with httpx.AsyncClient(
        timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)
    ) as c:
        r = await c.get(f"{base_url}/metrics")
        r.raise_for_status()
        return r.text
