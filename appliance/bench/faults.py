"""`appliance bench faults`: a fault matrix against the running appliance.

Each fault is done to the real service process (`python -m appliance run`, as systemd runs it)
while a probe visitor keeps asking questions over /ws; for each: did the service survive (still
running, /healthz answers, the probe got every reply), turns lost (probe questions without a
`reply.done`, and probe turns missing from the conversation log), recovery time (fault over ->
a turn answered `ok` again) and the RSS peak (sampled every 50 ms, the llama.cpp child apart).

Faults: every mode of the scripted LLM (appliance/fakes/scripted_llm.py, served from this
process so its mode can change under a running service); the local llama.cpp child SIGKILLed and
SIGSTOPped mid-turn (when llama_cpp is installed); kill -9 during a settings save (N trials: the
file is always the old or the new one, never torn, and the next start boots from it); WebSocket
fuzzing (malformed, huge, binary-before-start, nested, bursts, from many clients); clients that
never read (WS and SSE); parallel wrong logins; parallel image bombs; an audio flood; SQLite
busy; disk full under the store (a small tmpfs; root only); the microphone unplugged and back
(PulseAudio module unload/load; PulseAudio tools only). A fault that cannot run here is
reported as skipped, with the reason.

One module (~900 lines): every fault is a short scenario over the same handful of helpers (the
probe visitor, the RSS sampler, the recovery clock, the appliance config); split up they would
only import each other.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from ..config import AdminConfig
from ..fakes.scripted_llm import MODES as LLM_MODES
from .core import DEFAULT_REPLY, Bench, Target, bench_dir
from .loadgen import burst, logins_phase
from .procs import Appliance, children_of, free_port, proc_sample, run_appliance, scrape_metrics
from .startup import local_llm_available, local_llm_section

__all__ = ["FAULTS", "FAULT_NAMES", "FaultResult", "faults_markdown", "fill_disk", "run_faults"]

PASSWORD = "bench faults password"
_TURN_TIMEOUT_S = 30.0
_FUZZ_CLIENT_LIMIT_S = 60.0  # one fuzzing client's whole attack
_FUZZ_CLOSE_LIMIT_S = 3.0  # ... and its wait for the server to drop a closed connection
_RSS_PERIOD_S = 0.05
_RECOVERY_LIMIT_S = 60.0
# Faults done to the shared appliance, then those that need one of their own.
SHARED = (
    *(f"llm_{m}" for m in LLM_MODES),
    "ws_fuzz",
    "ws_never_read",
    "sse_never_read",
    "parallel_logins",
    "image_bombs",
    "audio_flood",
    "sqlite_busy",
)
OWN = ("local_llm_sigkill", "local_llm_sigstop", "config_save_kill9", "disk_full", "audio_unplug")
FAULT_NAMES = (*SHARED, *OWN)


@dataclass
class FaultResult:
    name: str
    survived: bool = True
    turns_asked: int = 0  # by the probe visitor, during the fault and until recovery
    turns_lost: int = 0  # ... that got no reply.done
    turns_lost_log: int | None = None  # ... answered but missing from the conversation log
    recovery_s: float | None = None  # fault over -> a turn answered `ok` again
    rss_peak_mb: float = 0.0  # the appliance process
    child_rss_peak_mb: float | None = None  # the llama.cpp child, where there is one
    outcomes: dict[str, int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None


# -- the appliance under test ----------------------------------------------------------------------


def appliance_config(
    work: Path, llm_url: str, *, voice: str, port: int | None = None
) -> dict[str, Any]:
    """The box as shipped, as far as a bench allows: the default abuse limits (they are under
    test), voice models loaded ("auto"), the scripted LLM as a vision endpoint, every turn on the
    LLM path, state (config, FAQ, store) in `work`. Budgets are the defaults."""
    shutil.copy(Path(__file__).parents[1] / "data" / "sample_faq.md", work / "faq.md")
    return {
        "web": {"host": "127.0.0.1", "port": port or free_port()},
        "llm": {
            "spawn_local": False,
            "endpoints": [{"name": "scripted", "url": llm_url, "model": "bench", "vision": True}],
        },
        "audio": {"enabled": False},
        "voice": {"enabled": "auto" if voice == "auto" else False},
        # Every question reaches the LLM (its faults are what this bench is about).
        "knowledge": {
            "semantic": False,
            "answer_mode": "open",
            "fact_guard": False,
            "faq": str(work / "faq.md"),
        },
        "store": {"path": str(work / "appliance.db")},
        "admin": {"lockout_s": 30.0},
    }


class RssPeak:
    """Peak RSS of some processes, sampled every 50 ms while the context is open."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}

    @asynccontextmanager
    async def watch(self, *pids: int) -> AsyncIterator[RssPeak]:
        async with trio.open_nursery() as n:
            n.start_soon(self._sample, pids)
            try:
                yield self
            finally:
                n.cancel_scope.cancel()

    async def _sample(self, pids: tuple[int, ...]) -> None:
        while True:
            for pid in pids:
                try:
                    rss = proc_sample(pid).rss_mb
                except (OSError, ValueError, IndexError):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), rss)
            await trio.sleep(_RSS_PERIOD_S)


@dataclass
class Turn:
    outcome: str | None = None  # reply.done's outcome; None: no reply.done
    first_delta_s: float | None = None
    errors: list[str] = field(default_factory=list)


async def ws_turn(
    ws: WebSocketConnection,
    text: str,
    *,
    timeout_s: float = _TURN_TIMEOUT_S,
    on_first_delta: Callable[[], Awaitable[None]] | None = None,
) -> Turn:
    """One text turn: send, read until reply.done and the idle state after it."""
    turn = Turn()
    t0 = time.perf_counter()
    await ws.send_message(json.dumps({"type": "text", "text": text}))
    with trio.move_on_after(timeout_s):
        while True:
            msg = json.loads(await ws.get_message())
            kind = msg.get("type")
            if kind == "reply.delta" and turn.first_delta_s is None:
                turn.first_delta_s = time.perf_counter() - t0
                if on_first_delta is not None:
                    await on_first_delta()
            elif kind == "reply.done":
                turn.outcome = str(msg.get("outcome"))
            elif kind == "error":
                turn.errors.append(str(msg.get("code")))
                if msg.get("code") in ("rate_limited", "stopping"):
                    break  # the question was not taken: no reply will come
            elif kind == "state" and msg.get("state") == "idle" and turn.outcome is not None:
                break
    return turn


@asynccontextmanager
async def visitor(ws_url: str) -> AsyncIterator[tuple[WebSocketConnection, dict[str, Any]]]:
    """A /ws connection after `hello`: (connection, the server's hello)."""
    opened: list[WebSocketConnection] = []
    try:
        async with open_websocket_url(ws_url, connect_timeout=10, disconnect_timeout=2) as ws:
            opened.append(ws)
            await ws.send_message(json.dumps({"type": "hello"}))
            with trio.fail_after(10):
                while True:
                    msg = json.loads(await ws.get_message())
                    if msg.get("type") == "hello":
                        break
            yield ws, msg
    finally:
        for ws in opened:  # trio-websocket may leave the socket to the GC
            await ws._stream.aclose()


class RawWs:
    """A WebSocket client on a plain socket that reads the handshake answer and nothing after:
    a client that stopped reading (trio-websocket's own reader would keep reading, or, with a
    zero-size queue, hang its close)."""

    def __init__(self, stream: trio.SocketStream, conn: Any) -> None:
        self.stream = stream
        self.conn = conn

    @classmethod
    async def connect(cls, ws_url: str) -> RawWs:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, RejectConnection, Request

        hostport = ws_url.split("//", 1)[1].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        conn = WSConnection(ConnectionType.CLIENT)
        stream = await trio.open_tcp_stream(host, int(port))
        try:
            await stream.send_all(conn.send(Request(host=hostport, target="/ws")))
            with trio.fail_after(10):
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        raise OSError("closed during the handshake")
                    conn.receive_data(data)
                    for ev in conn.events():
                        if isinstance(ev, AcceptConnection):
                            return cls(stream, conn)
                        if isinstance(ev, RejectConnection):
                            raise OSError(f"handshake refused: {ev.status_code}")
        except BaseException:
            await stream.aclose()
            raise

    async def send(self, data: str | bytes, timeout_s: float = 5.0) -> bool:
        """False when the frame could not be written within timeout_s (or the peer is gone)."""
        from wsproto.events import BytesMessage, TextMessage

        event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        with trio.move_on_after(timeout_s):
            try:
                await self.stream.send_all(self.conn.send(event))
                return True
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return False
        return False

    async def aclose(self) -> None:
        await self.stream.aclose()


class Probe:
    """The visitor who keeps asking during a fault: every question should get a reply.done."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.asked = 0
        self.done = 0
        self.outcomes: dict[str, int] = {}
        self.sessions: set[str] = set()
        self.answered_sessions: dict[str, int] = {}

    def count(self, turn: Turn, session: str) -> None:
        self.asked += 1
        if turn.outcome is not None:
            self.done += 1
            self.outcomes[turn.outcome] = self.outcomes.get(turn.outcome, 0) + 1
            self.answered_sessions[session] = self.answered_sessions.get(session, 0) + 1

    async def ask(self, n: int, *, pause_s: float = 0.0) -> None:
        """n questions, one after another, reconnecting when the connection drops."""
        left = n
        while left > 0:
            try:
                async with visitor(self.ws_url) as (ws, hello):
                    session = str(hello["session"])
                    self.sessions.add(session)
                    while left > 0:
                        turn = await ws_turn(ws, f"Probe question {self.asked}: when do you open?")
                        left -= 1
                        self.count(turn, session)
                        if pause_s:
                            await trio.sleep(pause_s)
            except (ConnectionClosed, HandshakeError, OSError, trio.TooSlowError):
                left -= 1
                self.asked += 1  # the question in flight is lost
                await trio.sleep(0.2)

    async def until_stopped(self, stop: trio.Event, pause_s: float = 0.2) -> None:
        while not stop.is_set():
            await self.ask(1)
            await trio.sleep(pause_s)


async def recover(ws_url: str, limit_s: float = _RECOVERY_LIMIT_S) -> float | None:
    """Seconds from now until the box takes a question it then answers `ok` (the start of that
    turn, so a reply's own streaming time does not count); None if not within limit_s."""
    t0 = time.perf_counter()
    with trio.move_on_after(limit_s):
        while True:
            try:
                async with visitor(ws_url) as (ws, _):
                    while True:
                        asked = time.perf_counter()
                        turn = await ws_turn(ws, "Recovered? When do you open?", timeout_s=limit_s)
                        if turn.outcome == "ok":
                            return round(asked - t0, 3)
                        # Paced under the per-connection message limit (5/s): ~4 tries a second.
                        await trio.sleep(0.25)
            except (ConnectionClosed, HandshakeError, OSError, trio.TooSlowError):
                pass
            await trio.sleep(0.05)
    return None


async def alive(app: Appliance) -> bool:
    if app.proc.poll() is not None:
        return False
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            return (await c.get(app.base_url + "/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def logged_turns(db: Path, sessions: dict[str, int]) -> int:
    """Turns of these sessions in the conversation log (blocking)."""
    if not sessions or not db.exists():
        return 0
    with _db(db) as con:
        marks = ",".join("?" * len(sessions))
        row = con.execute(f"SELECT COUNT(*) FROM turns WHERE session IN ({marks})", list(sessions))
        return int(row.fetchone()[0])


async def missing_from_log(db: Path, probe: Probe) -> int:
    """Answered probe turns not (yet, after up to 5 s) in the log: the store writes in batches."""
    want = sum(probe.answered_sessions.values())
    have = 0
    with trio.move_on_after(5):
        while True:
            have = await trio.to_thread.run_sync(logged_turns, db, probe.answered_sessions)
            if have >= want:
                break
            await trio.sleep(0.1)
    return max(0, want - have)


def metric(text: str, name: str, **labels: str) -> float:
    """A Prometheus counter or gauge from /metrics text, summed over every series whose labels
    include `labels` (all of its series when none are given)."""
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


# -- the faults ------------------------------------------------------------------------------------


@dataclass
class Env:
    args: argparse.Namespace
    work: Path  # the bench's temp dir; each appliance gets a directory of its own in it
    llm: Any  # the in-process ScriptedLLM
    app: Appliance | None = None  # the appliance the shared faults are done to ...
    db: Path = Path()  # ... and its conversation log


FaultFn = Callable[[Env, FaultResult], Awaitable[None]]


def _script(env: Env, mode: str) -> None:
    from ..fakes.scripted_llm import Script

    env.llm.script = Script(
        mode=mode,
        reply=DEFAULT_REPLY,
        # slow_first: 0 = its own default, 10 s (far over budgets.first_token_s)
        first_token_s=0.0 if mode == "slow_first" else env.args.first_token_ms / 1000,
        token_interval_s=env.args.token_ms / 1000,
    )


def _llm_fault(mode: str) -> FaultFn:
    async def run(env: Env, res: FaultResult) -> None:
        assert env.app is not None
        probe = Probe(env.app.ws_url)
        _script(env, mode)
        try:
            await probe.ask(env.args.probe_turns)
        finally:
            _script(env, "ok")
        res.recovery_s = await recover(env.app.ws_url)
        _probe_into(res, probe)
        res.turns_lost_log = await missing_from_log(env.db, probe)

    return run


def _probe_into(res: FaultResult, probe: Probe) -> None:
    res.turns_asked += probe.asked
    res.turns_lost += probe.asked - probe.done
    for k, v in probe.outcomes.items():
        res.outcomes[k] = res.outcomes.get(k, 0) + v


async def _with_probe(env: Env, res: FaultResult, attack: Callable[[], Awaitable[None]]) -> None:
    """Run `attack` while the probe visitor keeps asking; then the recovery clock."""
    assert env.app is not None
    app = env.app
    probe = Probe(app.ws_url)
    stop = trio.Event()
    async with trio.open_nursery() as outer:
        watching = trio.CancelScope()

        async def watch() -> None:
            with watching:
                await _watch_exit(app, res, outer.cancel_scope)

        outer.start_soon(watch)
        async with trio.open_nursery() as n:
            n.start_soon(probe.until_stopped, stop)  # its question in flight is finished
            try:
                await attack()
            finally:
                stop.set()
        watching.cancel()
    _probe_into(res, probe)
    if app.proc.poll() is not None:
        return  # it died: nothing to recover (res says so)
    res.recovery_s = await recover(app.ws_url)
    res.turns_lost_log = await missing_from_log(env.db, probe)


async def _watch_exit(app: Appliance, res: FaultResult, scope: trio.CancelScope) -> None:
    """The appliance died under the fault: end the attack at once and say so."""
    await app.proc.wait()
    res.survived = False
    res.error = f"the appliance exited (code {app.proc.returncode}) during the fault"
    res.detail["log_tail"] = app.log_tail(12)
    scope.cancel()


def _fuzz_frame(rng: random.Random, max_frame: int) -> str | bytes:
    """One frame of garbage (text or binary)."""
    deep = "[" * 100_000 + "]" * 100_000
    kinds: list[Callable[[], str | bytes]] = [
        lambda: "{not json",
        lambda: json.dumps({"type": "no_such_type"}),
        lambda: json.dumps({"type": "text"}),
        lambda: json.dumps({"type": "text", "text": 5}),
        lambda: '{"type": "text", "text": "\\ud800"}',
        lambda: json.dumps({"type": "audio.start", "rate": 12345}),
        lambda: json.dumps({"type": "hello", "session": "x" * 500}),
        lambda: deep,
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096))),  # before start
        lambda: "x" * (max_frame + 10),  # just over the limit: an error, the connection stays
        lambda: json.dumps({"type": "ping", "t": rng.random()}),
        lambda: json.dumps({"type": "cancel"}),
    ]
    weights = [10, 10, 5, 5, 5, 5, 5, 2, 10, 1, 10, 5]
    return rng.choices(kinds, weights)[0]()


async def _fuzz_client(
    url: str, frames: int, seed: int, max_frame: int, stats: dict[str, int], read: bool
) -> None:
    rng = random.Random(seed)
    sent = [0]
    # Bounded: a server that keeps closing or refusing this client's connections must not
    # keep the bench (and the suite's small matrix) reconnecting for ever; counted instead.
    deadline = trio.current_time() + _FUZZ_CLIENT_LIMIT_S
    while sent[0] < frames:
        if trio.current_time() > deadline:
            stats["gave_up"] = stats.get("gave_up", 0) + 1
            break
        stats["connects"] = stats.get("connects", 0) + 1
        if not read:  # a client that never reads what the server answers
            try:
                raw = await RawWs.connect(url)
            except (OSError, trio.TooSlowError):
                stats["connect_failed"] += 1
                await trio.sleep(0.1)
                continue
            try:
                while sent[0] < frames:
                    if not await raw.send(_fuzz_frame(rng, max_frame)):
                        stats["send_stalled"] += 1
                        break
                    sent[0] += 1
            finally:
                await raw.aclose()
            continue
        opened: list[WebSocketConnection] = []
        failed = False
        # The drain outlives open_websocket's exit: trio-websocket 0.12's close waits for its
        # reader, and a reader blocked on a full message queue that nobody reads waits for ever
        # when its close frame cannot be sent (1 small fault matrix in ~10 hung so, with the
        # socket closed inside the block). The socket is closed after the exit, and the exit
        # is bounded: a server that does not drop a connection it closed (hypercorn 0.18 after
        # a 1009 kept it to its 30 s keep-alive timeout, before web/server.py's guard; an older
        # tree under --under-test still does) must not hold the attack.
        async with trio.open_nursery() as n:
            try:
                async with open_websocket_url(
                    url, connect_timeout=10, disconnect_timeout=1, max_message_size=16 * 1024 * 1024
                ) as ws:
                    opened.append(ws)
                    n.start_soon(_drain, ws)
                    await _fuzz_send(ws, rng, frames, sent, max_frame, stats)
                    n.cancel_scope.deadline = trio.current_time() + _FUZZ_CLOSE_LIMIT_S
            except ConnectionClosed as exc:  # the handshake's own close
                _closed(stats, exc)
            except (HandshakeError, OSError, trio.TooSlowError):
                failed = True
            finally:
                if trio.current_time() >= n.cancel_scope.deadline:
                    stats["close_cut"] = stats.get("close_cut", 0) + 1
                n.cancel_scope.cancel()
                for ws in opened:
                    await ws._stream.aclose()
        if failed:
            stats["connect_failed"] += 1
            await trio.sleep(0.1)
    stats["frames"] += sent[0]


def _closed(stats: dict[str, int], exc: ConnectionClosed) -> None:
    key = f"closed_{exc.reason.code if exc.reason is not None else 0}"
    stats[key] = stats.get(key, 0) + 1


async def _fuzz_send(
    ws: WebSocketConnection,
    rng: random.Random,
    frames: int,
    sent: list[int],
    max_frame: int,
    stats: dict[str, int],
) -> None:
    """Garbage until `frames` are sent or the server closes this connection."""
    try:
        while sent[0] < frames:
            if rng.random() < 0.02:  # a burst: 50 frames without a pause
                batch: list[str | bytes] = [json.dumps({"type": "ping", "t": i}) for i in range(50)]
                stats["bursts"] += 1
            elif rng.random() < 0.003:  # far too large: the server closes (1009)
                batch = ["y" * (max_frame * 5)]
                stats["huge"] += 1
            else:
                batch = [_fuzz_frame(rng, max_frame)]
            # A client that does not read may find the server gone (it closed us as a slow
            # consumer) only when its own sends stall.
            with trio.move_on_after(5) as stalled:
                for f in batch:
                    await ws.send_message(f)
                    sent[0] += 1
            if stalled.cancelled_caught:
                stats["send_stalled"] += 1
                return
    except ConnectionClosed as exc:
        _closed(stats, exc)


async def _drain(ws: WebSocketConnection) -> None:
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed:
        pass


async def fault_ws_fuzz(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    clients, frames = env.args.fuzz_clients, env.args.fuzz_frames
    stats = {"frames": 0, "bursts": 0, "huge": 0, "connect_failed": 0, "send_stalled": 0}
    before = await scrape_metrics(env.app.base_url)

    async def attack() -> None:
        async with trio.open_nursery() as n:
            for i in range(clients):
                # Every fifth client never reads what the server answers.
                n.start_soon(
                    _fuzz_client,
                    env.app.ws_url if env.app else "",
                    frames // clients,
                    i,
                    1024 * 1024,
                    stats,
                    i % 5 != 0,
                )

    t0 = time.perf_counter()
    await _with_probe(env, res, attack)
    after = await scrape_metrics(env.app.base_url)
    res.detail = {
        "clients": clients,
        **stats,
        "attack_s": round(time.perf_counter() - t0, 2),
        "bad_input_counted": int(
            metric(after, "appliance_bad_input_total") - metric(before, "appliance_bad_input_total")
        ),
    }


async def fault_ws_never_read(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    n_clients, hold = env.args.slow_clients, env.args.hold_s
    url = env.app.ws_url
    before = await scrape_metrics(env.app.base_url)
    clients: list[RawWs] = []

    async def one(i: int) -> None:
        try:
            raw = await RawWs.connect(url)
        except (OSError, trio.TooSlowError):
            return
        clients.append(raw)
        await raw.send(json.dumps({"type": "hello"}))
        for q in range(20):  # within the burst allowance; each replaces the one before
            await raw.send(json.dumps({"type": "text", "text": f"Never read {i}.{q}: tell me"}))

    async def attack() -> None:
        try:
            async with trio.open_nursery() as n:
                for i in range(n_clients):
                    n.start_soon(one, i)
            res.detail["connected"] = len(clients)
            await trio.sleep(hold)
        finally:
            for raw in clients:
                await raw.aclose()

    await _with_probe(env, res, attack)
    after = await scrape_metrics(env.app.base_url)
    res.detail.update(
        clients=n_clients,
        hold_s=hold,
        closed_slow_consumer=int(
            metric(after, "appliance_ws_closed_total", reason="slow_consumer")
            - metric(before, "appliance_ws_closed_total", reason="slow_consumer")
        ),
    )


async def fault_sse_never_read(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    n_clients, hold = env.args.slow_clients, env.args.hold_s
    host, port = env.app.base_url.removeprefix("http://").rsplit(":", 1)
    streams: list[trio.SocketStream] = []

    async def one(i: int) -> None:
        body = json.dumps({"text": f"SSE {i}: tell me about the museum"}).encode()
        head = (
            f"POST /api/chat HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            s = await trio.open_tcp_stream(host, int(port))
        except OSError:
            return
        streams.append(s)
        await s.send_all(head + body)  # ... and never read the answer

    async def attack() -> None:
        async with trio.open_nursery() as n:
            for i in range(n_clients):
                n.start_soon(one, i)
        res.detail["connected"] = len(streams)
        await trio.sleep(hold)
        for s in streams:
            await s.aclose()

    await _with_probe(env, res, attack)
    # Every stream the clients abandoned is gone again (no leak).
    open_streams = -1.0
    with trio.move_on_after(10):
        while True:
            open_streams = metric(await scrape_metrics(env.app.base_url), "appliance_sse_streams")
            if open_streams == 0:
                break
            await trio.sleep(0.1)
    res.detail.update(clients=n_clients, hold_s=hold, sse_streams_after=open_streams)
    if open_streams != 0:
        res.survived = False


async def fault_parallel_logins(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    base, n = env.app.base_url, env.args.logins
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await c.post("/admin/api/setup", json={"password": PASSWORD})
        if r.status_code not in (200, 409):
            raise RuntimeError(f"admin setup: {r.status_code} {r.text[:200]}")
    before = await trio.to_thread.run_sync(_audit_counts, env.db)
    codes: dict[str, int] = {}

    async def attack() -> None:
        codes.update(await logins_phase(base, logins=n))

    await _with_probe(env, res, attack)
    after = await trio.to_thread.run_sync(_audit_counts, env.db)
    checked = after.get("login_failed", 0) - before.get("login_failed", 0)
    res.detail = {
        "logins": n,
        "status_codes": codes,
        "password_checks": checked,
        "max_failures": AdminConfig().max_failures,
        "audit_rows_refused": after.get("login_refused", 0) - before.get("login_refused", 0),
    }
    if checked > AdminConfig().max_failures:
        res.survived = False  # the lockout did not hold


def _audit_counts(db: Path) -> dict[str, int]:
    with _db(db) as con:
        return dict(con.execute("SELECT action, COUNT(*) FROM audit GROUP BY action").fetchall())


def image_bomb() -> str:
    """A ~150 KB PNG, 6300 x 6300 RGBA (under 40 megapixels): 160 MB once decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (6300, 6300), (0, 0, 0, 0)).save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def fault_image_bombs(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    n = env.args.bombs
    bomb = await trio.to_thread.run_sync(image_bomb)
    answers: dict[str, int] = {}

    async def post(client: httpx.AsyncClient, i: int) -> str:
        r = await client.post("/api/chat", json={"text": f"What is this? {i}", "image": bomb})
        if r.status_code == 400:
            return f"400:{r.json().get('code')}"
        return str(r.status_code)

    async def attack() -> None:
        assert env.app is not None
        answers.update(await burst(env.app.base_url, n, post))

    await _with_probe(env, res, attack)
    res.detail = {"bombs": n, "bomb_bytes": len(bomb), "answers": answers}


async def fault_audio_flood(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    seconds = env.args.flood_s
    before = await scrape_metrics(env.app.base_url)
    sent = {"frames": 0, "big_frames": 0, "errors": 0}

    async def flood(frame: bytes, key: str, limit: int) -> None:
        assert env.app is not None
        async with visitor(env.app.ws_url) as (ws, _):
            await ws.send_message(json.dumps({"type": "audio.start", "rate": 8000}))
            async with trio.open_nursery() as n:
                n.start_soon(_count_errors, ws, sent)  # reads on until the close completes
                with trio.move_on_after(seconds):
                    while sent[key] < limit:
                        await ws.send_message(frame)
                        sent[key] += 1
                with trio.move_on_after(10):
                    await ws.send_message(json.dumps({"type": "audio.end"}))
                    await ws.aclose()
                n.cancel_scope.cancel()

    async def attack() -> None:
        # 1 s of 8 kHz silence per frame, as fast as the socket takes it; then the largest
        # frames allowed: 1 MiB at 8 kHz is 64 s of audio, 4 MB of floats once resampled (the
        # issue's ~512 MiB per connection with 128 of them queued).
        await flood(bytes(16000), "frames", 10**9)
        await flood(bytes(1024 * 1024), "big_frames", 200)

    t0 = time.perf_counter()
    await _with_probe(env, res, attack)
    after = await scrape_metrics(env.app.base_url)
    res.detail = {
        "flood_s": round(time.perf_counter() - t0, 1),
        "audio_s_sent": sent["frames"],
        "mib_frames_sent": sent["big_frames"],
        "errors_to_client": sent["errors"],
        "frames_dropped": int(
            metric(after, "appliance_bad_input_total", code="audio_flood")
            - metric(before, "appliance_bad_input_total", code="audio_flood")
        ),
    }


async def _count_errors(ws: WebSocketConnection, sent: dict[str, int]) -> None:
    try:
        while True:
            msg = await ws.get_message()
            if isinstance(msg, str) and '"error"' in msg:
                sent["errors"] += 1
    except ConnectionClosed:
        pass


async def fault_sqlite_busy(env: Env, res: FaultResult) -> None:
    assert env.app is not None
    hold = env.args.hold_s
    release = threading.Event()

    def lock() -> None:
        con = sqlite3.connect(env.db, timeout=30, isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            release.wait(hold + 30)
            con.execute("ROLLBACK")
        finally:
            con.close()

    async def attack() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(trio.to_thread.run_sync, lock)
            await trio.sleep(hold)
            release.set()

    await _with_probe(env, res, attack)
    res.detail = {"locked_s": hold}


# -- faults with an appliance of their own ---------------------------------------------------


async def fault_local_llm(env: Env, res: FaultResult, sig: signal.Signals) -> None:
    if not local_llm_available():
        res.skipped = "llama_cpp or the SmolLM2 weights are not installed"
        return
    work = env.work / f"local-{sig.name}"
    work.mkdir()
    cfg = appliance_config(work, "http://127.0.0.1:9/v1", voice="false")
    cfg["llm"] = local_llm_section()
    # A 135M model on a small box: its first token takes ~1.5 s with the FAQ context.
    cfg["budgets"] = {"first_token_s": 6.0, "stall_s": 3.0, "turn_s": 30.0, "probe_s": 60.0}
    async with run_appliance(
        cfg, work, ready_timeout_s=180.0, pythonpath=env.args.under_test
    ) as app:
        kids = children_of(app.pid)
        if not kids:
            raise RuntimeError("no llama.cpp child found")
        child = kids[0]
        peaks = RssPeak()
        probe = Probe(app.ws_url)
        async with peaks.watch(app.pid, child):
            if await recover(app.ws_url, 60) is None:
                raise RuntimeError("the local LLM never answered before the fault")

            async def hit() -> None:
                os.kill(child, sig)

            t_fault = time.perf_counter()
            async with visitor(app.ws_url) as (ws, hello):
                session = str(hello["session"])
                probe.sessions.add(session)
                turn = await ws_turn(ws, "Tell me about the lighthouse.", on_first_delta=hit)
                probe.count(turn, session)
                if sig == signal.SIGSTOP:
                    # Still stopped: the next question must still get an answer (a fallback).
                    turn = await ws_turn(ws, "Are you still there?")
                    probe.count(turn, session)
                    os.kill(child, signal.SIGCONT)
            t_end = time.perf_counter()
            res.recovery_s = await recover(app.ws_url)
        res.detail = {
            "signal": sig.name,
            "fault_s": round(t_end - t_fault, 2),
            "child_restarted": child not in children_of(app.pid),
        }
        _probe_into(res, probe)
        res.rss_peak_mb = peaks.peaks.get(app.pid, 0.0)
        res.child_rss_peak_mb = peaks.peaks.get(child)
        res.turns_lost_log = await missing_from_log(work / "appliance.db", probe)
        res.survived = await alive(app)


async def fault_config_save_kill9(env: Env, res: FaultResult) -> None:
    """kill -9 at a random moment during a settings save; the file must be the old or the new
    one, never torn, and the next start boots from the file left behind (each trial does)."""
    from ..config import ConfigError, load_config

    trials = env.args.save_trials
    work = env.work / "save"
    work.mkdir()
    cfg = appliance_config(work, env.llm.url, voice="false")
    config_path = work / "config.toml"
    outcome = {"old": 0, "new": 0, "torn": 0, "unbootable": 0}
    rng = random.Random(7)
    peak = 0.0
    for i in range(trials):
        value = 100.0 + i
        try:
            async with run_appliance(
                cfg, work, keep_config=i > 0, pythonpath=env.args.under_test
            ) as app:
                old = config_path.read_bytes()
                async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as c:
                    r = await c.post("/admin/api/setup", json={"password": PASSWORD})
                    if r.status_code == 409:
                        r = await c.post("/admin/api/login", json={"password": PASSWORD})
                    headers = {"X-CSRF-Token": r.json()["csrf"]}
                    body = {"changes": {"dialog.idle_reset_s": value}}
                    async with trio.open_nursery() as n:
                        n.start_soon(_post_quietly, c, "/admin/api/config", body, headers)
                        await trio.sleep(rng.uniform(0.0, 0.06))
                        peak = max(peak, proc_sample(app.pid).rss_mb)
                        app.proc.kill()
                    await app.proc.wait()
        except Exception as exc:  # no READY=1 from the file the last kill left behind
            outcome["unbootable"] += 1
            res.detail["boot_error"] = str(exc)[-300:]
            break
        try:
            saved = load_config(config_path)
        except ConfigError as exc:
            outcome["torn"] += 1
            res.detail["torn_example"] = str(exc)[:300]
            break
        if config_path.read_bytes() == old:
            outcome["old"] += 1
        elif saved.dialog.idle_reset_s == value:
            outcome["new"] += 1
        else:
            outcome["torn"] += 1
    res.detail.update(
        trials=trials, **outcome, temp_files_left=len(list(work.glob(".config.toml.*")))
    )
    res.rss_peak_mb = peak
    res.survived = outcome["torn"] == 0 and outcome["unbootable"] == 0


async def _post_quietly(
    c: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    try:
        await c.post(path, json=body, headers=headers)
    except httpx.HTTPError:
        pass  # the server was killed mid-request: expected


async def fault_disk_full(env: Env, res: FaultResult) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        res.skipped = "needs root (mount -t tmpfs) for a small filesystem under the store"
        return
    work = env.work / "diskfull"
    work.mkdir()
    mnt = work / "state"
    mnt.mkdir()
    done = await trio.run_process(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    if done.returncode != 0:
        res.skipped = f"mount -t tmpfs failed here: {done.stderr.decode().strip()}"
        return
    try:
        cfg = appliance_config(mnt, env.llm.url, voice="false")
        async with run_appliance(cfg, mnt, pythonpath=env.args.under_test) as app:
            saved_env = env.app, env.db
            env.app, env.db = app, mnt / "appliance.db"
            try:
                filler = mnt / "filler"
                config = mnt / "config.toml"
                async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as admin:
                    r = await admin.post("/admin/api/setup", json={"password": PASSWORD})
                    headers = {"X-CSRF-Token": r.json()["csrf"]}

                    async def save(value: float) -> str:
                        r = await admin.post(
                            "/admin/api/config",
                            json={"changes": {"dialog.idle_reset_s": value}},
                            headers=headers,
                        )
                        return f"{r.status_code} {r.json().get('error', 'ok')}"

                    async def attack() -> None:
                        await trio.to_thread.run_sync(fill_disk, filler)
                        before = config.read_bytes()
                        await trio.sleep(env.args.hold_s)
                        # A settings save on the full disk: refused, the old file intact.
                        res.detail["config_save_when_full"] = await save(77.0)
                        res.detail["config_intact"] = config.read_bytes() == before
                        filler.unlink()
                        res.detail["config_save_after"] = await save(78.0)

                    peaks = RssPeak()
                    async with peaks.watch(app.pid):
                        await _with_probe(env, res, attack)
                res.rss_peak_mb = peaks.peaks.get(app.pid, 0.0)
                res.detail["config_loads_after"] = _loads(config)
                res.survived = (
                    await alive(app)
                    and res.detail["config_loads_after"]
                    and res.detail.get("config_intact") is True
                )
            finally:
                env.app, env.db = saved_env
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["umount", "-l", str(mnt)], capture_stderr=True, check=False)


def fill_disk(path: Path) -> None:
    """Write zeros until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


def _loads(path: Path) -> bool:
    from ..config import ConfigError, load_config

    try:
        load_config(path)
    except ConfigError:
        return False
    return True


async def fault_audio_unplug(env: Env, res: FaultResult) -> None:
    from .pulse import missing_tools, pulse_for_children

    missing = missing_tools()
    if missing:
        res.skipped = f"PulseAudio tools not installed: {', '.join(missing)}"
        return
    if env.args.voice == "false":
        res.skipped = "--voice false: the local microphone needs the voice models"
        return
    work = env.work / "audio"
    async with pulse_for_children(work / "pulse") as pulse:  # the appliance inherits it
        cfg = appliance_config(work, env.llm.url, voice="auto")
        cfg["audio"] = {"enabled": True}
        cfg["voice"] = {"enabled": True}
        async with run_appliance(
            cfg, work, ready_timeout_s=180.0, pythonpath=env.args.under_test
        ) as app:
            peaks = RssPeak()
            async with peaks.watch(app.pid):
                if await _log_count_above(app, MIC_OPEN, 0, 30) is None:
                    raise RuntimeError("the appliance never opened the microphone")
                opened = _log_count(app, MIC_OPEN)
                saved_env = env.app, env.db
                env.app, env.db = app, work / "appliance.db"
                plugged = 0.0
                try:

                    async def attack() -> None:
                        nonlocal plugged
                        await trio.to_thread.run_sync(pulse.unplug_mic)
                        await trio.sleep(env.args.hold_s)
                        await trio.to_thread.run_sync(pulse.plug_mic)
                        plugged = time.perf_counter()

                    await _with_probe(env, res, attack)
                finally:
                    env.app, env.db = saved_env
                back = await _log_count_above(app, MIC_OPEN, opened, 60)
            # The recovery that matters here is the microphone's (the text path has its own).
            res.detail["text_recovery_s"] = res.recovery_s
            res.recovery_s = round(back - plugged, 3) if back is not None else None
            res.rss_peak_mb = peaks.peaks.get(app.pid, 0.0)
            res.survived = await alive(app) and res.recovery_s is not None


MIC_OPEN = "local voice: listening"


def _log_count(app: Appliance, prefix: str) -> int:
    from .procs import log_records

    return sum(1 for r in log_records(app.log_path) if str(r.get("msg", "")).startswith(prefix))


async def _log_count_above(app: Appliance, prefix: str, count: int, limit_s: float) -> float | None:
    """perf_counter() once the log holds more than `count` lines starting with `prefix`."""
    with trio.move_on_after(limit_s):
        while True:  # the log is another process's file: polled
            if _log_count(app, prefix) > count:
                return time.perf_counter()
            await trio.sleep(0.05)
    return None


def _handlers() -> dict[str, FaultFn]:
    out: dict[str, FaultFn] = {f"llm_{m}": _llm_fault(m) for m in LLM_MODES}
    out.update(
        ws_fuzz=fault_ws_fuzz,
        ws_never_read=fault_ws_never_read,
        sse_never_read=fault_sse_never_read,
        parallel_logins=fault_parallel_logins,
        image_bombs=fault_image_bombs,
        audio_flood=fault_audio_flood,
        sqlite_busy=fault_sqlite_busy,
        local_llm_sigkill=lambda env, res: fault_local_llm(env, res, signal.SIGKILL),
        local_llm_sigstop=lambda env, res: fault_local_llm(env, res, signal.SIGSTOP),
        config_save_kill9=fault_config_save_kill9,
        disk_full=fault_disk_full,
        audio_unplug=fault_audio_unplug,
    )
    return out


# -- the bench -------------------------------------------------------------------------------------


def add_faults_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--faults",
        default="all",
        help=f"comma list of faults (default all): {', '.join(FAULT_NAMES)}",
    )
    p.add_argument("--probe-turns", type=int, default=3, help="questions per LLM fault (3)")
    p.add_argument("--save-trials", type=int, default=30, help="kill -9 during a save (30)")
    p.add_argument("--fuzz-frames", type=int, default=10000, help="WebSocket fuzz frames (10000)")
    p.add_argument("--fuzz-clients", type=int, default=50, help="WebSocket fuzz clients (50)")
    p.add_argument("--slow-clients", type=int, default=100, help="clients that never read (100)")
    p.add_argument("--logins", type=int, default=1000, help="parallel wrong logins (1000)")
    p.add_argument("--bombs", type=int, default=20, help="parallel image bombs (20)")
    p.add_argument("--flood-s", type=float, default=10.0, help="audio flood duration (10 s)")
    p.add_argument("--hold-s", type=float, default=5.0, help="how long a held fault lasts (5 s)")
    p.add_argument(
        "--fault-timeout-s", type=float, default=600.0, help="give up on one fault after (600 s)"
    )


def _selected(spec: str) -> list[str]:
    if spec == "all":
        return list(FAULT_NAMES)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in FAULT_NAMES]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULT_NAMES)}")
    return names


async def run_faults(args: argparse.Namespace) -> dict[str, Any]:
    from ..fakes.scripted_llm import ScriptedLLM

    names = _selected(args.faults)
    handlers = _handlers()
    results: list[FaultResult] = []
    with bench_dir("faults", args) as tmp:
        work = Path(tmp)
        async with trio.open_nursery() as root:
            llm = ScriptedLLM()
            await root.start(llm.serve)
            env = Env(args=args, work=work, llm=llm)
            _script(env, "ok")
            shared = [n for n in names if n in SHARED]
            if shared:
                results += await _shared(env, shared, handlers)
            for name in (n for n in names if n in OWN):
                results.append(await _one(env, name, handlers[name]))
            root.cancel_scope.cancel()
    return _summary(args, results)


async def _shared(env: Env, names: list[str], handlers: dict[str, FaultFn]) -> list[FaultResult]:
    """The shared appliance, started again when a fault took it down."""
    out: list[FaultResult] = []
    left = list(names)
    while left:
        work = env.work / f"shared-{len(out)}"
        work.mkdir()
        cfg = appliance_config(work, env.llm.url, voice=env.args.voice)
        async with run_appliance(
            cfg, work, ready_timeout_s=180.0, pythonpath=env.args.under_test
        ) as app:
            env.app, env.db = app, work / "appliance.db"
            try:
                while left:
                    name = left.pop(0)
                    if name == "audio_flood" and not await _voice_loaded(app):
                        out.append(FaultResult(name, skipped="the voice models are not loaded"))
                        continue
                    peaks = RssPeak()
                    async with peaks.watch(app.pid):
                        res = await _one(env, name, handlers[name])
                    res.rss_peak_mb = peaks.peaks.get(app.pid, 0.0)
                    up = await alive(app)
                    if not up:
                        res.survived = False
                        res.detail.setdefault("log_tail", app.log_tail(10))
                    out.append(res)
                    if not up:
                        break  # a new one for the rest
            finally:
                env.app = None
    return out


async def _voice_loaded(app: Appliance) -> bool:
    async with visitor(app.ws_url) as (_, hello):
        return bool(hello["config"].get("voice"))


async def _one(env: Env, name: str, fn: FaultFn) -> FaultResult:
    from .progress import Progress

    res = FaultResult(name)
    progress = Progress(f"fault {name}", 1)
    t0 = time.perf_counter()
    try:
        async with trio.open_nursery() as n:
            n.start_soon(_time_limit, env.args.fault_timeout_s, res, n.cancel_scope)
            await fn(env, res)
            n.cancel_scope.cancel()
    except Exception as exc:  # a fault the bench could not carry out: reported, not raised
        while isinstance(exc, BaseExceptionGroup) and isinstance(exc.exceptions[0], Exception):
            exc = exc.exceptions[0]
        res.error = f"{type(exc).__name__}: {exc}"[-500:]
        res.survived = False
    if res.turns_lost:
        res.survived = False
    res.detail["fault_wall_s"] = round(time.perf_counter() - t0, 1)
    progress.advance(extra="skipped" if res.skipped else ("ok" if res.survived else "FAILED"))
    progress.close()
    return res


async def _time_limit(limit_s: float, res: FaultResult, scope: trio.CancelScope) -> None:
    """Cancel a fault still running after limit_s, first noting where its tasks waited."""
    from .stuck import task_stacks

    await trio.sleep(limit_s)
    res.error = f"the fault did not finish within {limit_s:g} s"
    res.survived = False
    res.detail["stuck_tasks"] = task_stacks()
    scope.cancel()


def _summary(args: argparse.Namespace, results: list[FaultResult]) -> dict[str, Any]:
    ran = [r for r in results if r.skipped is None]
    failed = [r.name for r in ran if not r.survived]
    recov = [r.recovery_s for r in ran if r.recovery_s is not None]
    return {
        "faults_run": len(ran),
        "faults_skipped": len(results) - len(ran),
        "faults_survived": len(ran) - len(failed),
        "faults_failed": failed,
        "turns_lost": sum(r.turns_lost for r in ran),
        "turns_lost_log": sum(r.turns_lost_log or 0 for r in ran),
        "recovery_s_max": max(recov) if recov else None,
        "rss_peak_mb_max": max((r.rss_peak_mb for r in ran), default=0.0),
        "errors": len(failed) + sum(r.turns_lost for r in ran),
        "faults": [asdict(r) for r in results],
        "setup": {
            "appliance": "python -m appliance run, own process; default abuse limits and budgets",
            "llm": "scripted OpenAI-compatible server in the bench process (modes switched live)",
            "voice.enabled": args.voice,
            "probe": "a visitor asking over /ws during each fault; recovery = fault over -> ok",
        },
    }


def faults_markdown(report: dict[str, Any]) -> str:
    """The fault matrix as a Markdown page (docs/bench/)."""
    m = report.get("machine", {})
    out = [
        f"# Fault matrix {report.get('date', '')} on {m.get('short_name', '?')}",
        "",
        f"- Machine: {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('memory_mb')} MB RAM",
        f"- Commit: {m.get('git_commit') or 'unknown'}",
        f"- Command: `{report.get('command', '')}`",
        f"- Faults run {report['faults_run']}, survived {report['faults_survived']}, "
        f"skipped {report['faults_skipped']}; turns lost {report['turns_lost']} "
        f"(from the log: {report['turns_lost_log']}); recovery max "
        f"{report['recovery_s_max']} s; RSS peak max {report['rss_peak_mb_max']} MB",
        "",
        "| fault | survived | turns asked | lost | lost (log) | recovery s | RSS peak MB | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["faults"]:
        if r["skipped"]:
            out.append(f"| `{r['name']}` | skipped | | | | | | {r['skipped']} |")
            continue
        notes = {k: v for k, v in r["detail"].items() if k != "fault_wall_s"}
        if r["outcomes"]:
            notes = {"outcomes": r["outcomes"], **notes}
        if r["child_rss_peak_mb"] is not None:
            notes["child_rss_peak_mb"] = r["child_rss_peak_mb"]
        if r["error"]:
            notes["error"] = r["error"]
        text = json.dumps(notes, separators=(", ", ": ")).replace("|", "/")
        out.append(
            f"| `{r['name']}` | {'yes' if r['survived'] else '**no**'} | {r['turns_asked']} | "
            f"{r['turns_lost']} | {r['turns_lost_log'] if r['turns_lost_log'] is not None else ''}"
            f" | {r['recovery_s'] if r['recovery_s'] is not None else ''} | "
            f"{r['rss_peak_mb']:.0f} | {text} |"
        )
    return "\n".join(out) + "\n"


FAULTS = Bench(
    name="faults",
    help="fault matrix: LLM faults, child kills, kill -9 during saves, floods, fuzzing",
    add_arguments=add_faults_arguments,
    run=run_faults,
    headline=(
        "faults_run",
        "faults_survived",
        "faults_skipped",
        "turns_lost",
        "turns_lost_log",
        "recovery_s_max",
        "rss_peak_mb_max",
        "errors",
    ),
    targets=(
        Target("errors", "==", 0, "every fault survived, no turn lost"),
        Target("turns_lost_log", "==", 0),
        Target("rss_peak_mb_max", "<=", 1536, "1.5 GB under any attack"),
        Target("recovery_s_max", "<=", 2.0, "ready again <= 2 s after the fault ends"),
    ),
    in_all=False,
    markdown=faults_markdown,
)
