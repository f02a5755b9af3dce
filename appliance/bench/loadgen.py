"""The load generator: its own process, so it never shares the appliance's event loop.

    python -m appliance.bench.loadgen ws    --url ws://HOST:PORT/ws --conversations 500 ...
    python -m appliance.bench.loadgen sse   --url http://HOST:PORT --chats 100
    python -m appliance.bench.loadgen churn --url ws://HOST:PORT/ws --cycles 2000
    python -m appliance.bench.loadgen logins --url http://HOST:PORT --logins 1000

Each phase prints one JSON object on stdout (raw samples in ms; the caller computes the
statistics) and a progress line on stderr. Every loop is bounded in count and time; it is meant
for loopback only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from .machine import raise_nofile_limit
from .progress import Progress
from .text import QUESTIONS

__all__ = ["Tally", "burst", "churn_phase", "logins_phase", "main", "sse_phase", "ws_phase"]

_CONNECT_ERRORS = (HandshakeError, OSError, trio.TooSlowError, ConnectionClosed)


@dataclass
class Tally:
    """Raw outcome of a phase; errors are counted by kind so a report can say what went wrong."""

    error_kinds: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str, n: int = 1) -> None:
        if n > 0:
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n

    def sample(self, name: str, ms: float) -> None:
        self.samples.setdefault(name, []).append(round(ms, 3))

    def bump(self, name: str, n: int = 1) -> int:
        self.counters[name] = self.counters.get(name, 0) + n
        return self.counters[name]

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        return {
            "errors": sum(self.error_kinds.values()),
            "error_kinds": self.error_kinds,
            "samples_ms": self.samples,
            **self.counters,
            **extra,
        }


async def _close(ws: Any) -> None:
    # trio-websocket may leave the TCP socket to the GC after the close handshake.
    await ws._stream.aclose()


async def _until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = json.loads(await ws.get_message())
        if msg.get("type") == kind:
            return msg


# -- ws: concurrent conversations ------------------------------------------------------------------


async def ws_phase(
    url: str,
    *,
    conversations: int,
    turns: int,
    ramp_s: float,
    think_s: float,
    turn_timeout_s: float = 30.0,
    seed: int = 1,
) -> dict[str, Any]:
    """`conversations` WebSocket conversations, opened over `ramp_s` and all held open until
    every one has finished its `turns` turns (so they really are concurrent), each turn after a
    think time drawn uniformly from [0.5, 1.5] x think_s (the first from [0, 1] x think_s, so
    conversations do not ask in lockstep)."""
    from .text import ws_turn

    tally = Tally()
    open_now = 0
    finished = 0
    all_done = trio.Event()
    progress = Progress("ws turns", conversations * turns)
    began = time.perf_counter()

    def finish() -> None:
        nonlocal finished
        finished += 1
        if finished == conversations:
            all_done.set()

    async def conversation(i: int) -> None:
        nonlocal open_now
        rng = random.Random(seed * 100003 + i)
        await trio.sleep(i * ramp_s / max(1, conversations))
        done_turns = 0
        counted = False
        opened: list[Any] = []

        def mark_finished() -> None:
            nonlocal counted
            if not counted:
                counted = True
                finish()

        t0 = time.perf_counter()
        try:
            async with open_websocket_url(url, connect_timeout=15, disconnect_timeout=5) as ws:
                opened.append(ws)
                tally.sample("connect", (time.perf_counter() - t0) * 1000)
                open_now += 1
                tally.counters["peak_open"] = max(tally.counters.get("peak_open", 0), open_now)
                try:
                    await ws.send_message(json.dumps({"type": "hello"}))
                    with trio.fail_after(15):
                        await _until(ws, "hello")
                    for k in range(turns):
                        lo, hi = (0.0, 1.0) if k == 0 else (0.5, 1.5)
                        await trio.sleep(think_s * rng.uniform(lo, hi))
                        t = await ws_turn(ws, QUESTIONS[(i + k) % len(QUESTIONS)], turn_timeout_s)
                        done_turns += 1
                        if t.first_delta_ms is not None:
                            tally.sample("first_delta", t.first_delta_ms)
                        if t.done_ms is not None:
                            tally.sample("turn", t.done_ms)
                        for e in t.errors:
                            tally.error(e)
                        tally.bump("turns_done")
                        progress.advance(extra=f"open {open_now}")
                    # Hold the connection until every conversation is done: truly concurrent.
                    mark_finished()
                    await all_done.wait()
                except ConnectionClosed:
                    tally.error("disconnect")  # the server closed on us mid-conversation
                except trio.TooSlowError:
                    tally.error("hello_timeout")
                finally:
                    open_now -= 1
                    mark_finished()
        except _CONNECT_ERRORS as exc:
            tally.error("connect_failed" if not opened else f"close:{type(exc).__name__}")
        finally:
            mark_finished()
            tally.error("not_run", turns - done_turns)
            for ws in opened:
                await _close(ws)

    # Bounded: the ramp, every turn at its slowest, plus a margin for connects and closes.
    deadline = ramp_s + turns * (think_s * 1.5 + turn_timeout_s) + 60.0
    with trio.move_on_after(deadline) as scope:
        async with trio.open_nursery() as nursery:
            for i in range(conversations):
                nursery.start_soon(conversation, i)
    if scope.cancelled_caught:
        tally.error("phase_timeout")
    progress.close(extra=f"peak open {tally.counters.get('peak_open', 0)}")
    return tally.as_dict(
        conversations=conversations,
        turns_per_conversation=turns,
        ramp_s=ramp_s,
        think_s=think_s,
        wall_s=round(time.perf_counter() - began, 3),
    )


# -- sse: concurrent chats -------------------------------------------------------------------------


async def sse_phase(base_url: str, *, chats: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """`chats` POST /api/chat streams started together; time to the first `reply.delta` event."""
    tally = Tally()
    progress = Progress("sse chats", chats)
    go = trio.Event()
    began = time.perf_counter()
    limits = httpx.Limits(max_connections=chats + 8, max_keepalive_connections=chats + 8)
    timeout = httpx.Timeout(timeout_s, pool=timeout_s)

    async def chat(client: httpx.AsyncClient, i: int) -> None:
        await go.wait()
        t0 = time.perf_counter()
        first: float | None = None
        outcome = None
        with trio.move_on_after(timeout_s) as scope:
            try:
                body = {"text": QUESTIONS[i % len(QUESTIONS)]}
                async with client.stream("POST", f"{base_url}/api/chat", json=body) as resp:
                    if resp.status_code != 200:
                        tally.error(f"http:{resp.status_code}")
                        return
                    event = ""
                    async for line in resp.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: "):
                            if event == "reply.delta" and first is None:
                                first = (time.perf_counter() - t0) * 1000
                            elif event == "error":
                                tally.error(f"error:{json.loads(line[6:]).get('code')}")
                            elif event == "reply.done":
                                outcome = str(json.loads(line[6:]).get("outcome"))
                                break
            except httpx.HTTPError as exc:
                tally.error(f"http_error:{type(exc).__name__}")
                return
        if scope.cancelled_caught:
            tally.error("timeout")
        elif outcome is None:
            tally.error("no_reply_done")
        elif outcome != "ok":
            tally.error(f"outcome:{outcome}")
        if first is not None:
            tally.sample("first_delta", first)
            tally.sample("turn", (time.perf_counter() - t0) * 1000)
        progress.advance()

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async with trio.open_nursery() as nursery:
            for i in range(chats):
                nursery.start_soon(chat, client, i)
            await trio.lowlevel.checkpoint()
            go.set()
    progress.close()
    return tally.as_dict(chats=chats, wall_s=round(time.perf_counter() - began, 3))


# -- churn: connect / disconnect cycles ------------------------------------------------------------


async def churn_phase(
    url: str, *, cycles: int, concurrency: int = 10, timeout_s: float = 10.0
) -> dict[str, Any]:
    """`cycles` times: open /ws, ping -> pong, close. No `hello`, so no session is created:
    sessions are kept on purpose until dialog.idle_reset_s, and this measures per-connection
    resources only."""
    tally = Tally()
    progress = Progress("churn", cycles)
    began = time.perf_counter()
    next_cycle = 0

    async def worker() -> None:
        nonlocal next_cycle
        while next_cycle < cycles:
            next_cycle += 1
            opened: list[Any] = []
            try:
                with trio.fail_after(timeout_s):
                    async with open_websocket_url(url, connect_timeout=timeout_s) as ws:
                        opened.append(ws)
                        await ws.send_message(json.dumps({"type": "ping", "t": next_cycle}))
                        await _until(ws, "pong")
                tally.bump("cycles_done")
            except _CONNECT_ERRORS as exc:
                tally.error(f"churn:{type(exc).__name__}")
            finally:
                for ws in opened:
                    await _close(ws)
            progress.advance()

    with trio.move_on_after(cycles * timeout_s / max(1, concurrency) + 60) as scope:
        async with trio.open_nursery() as nursery:
            for _ in range(max(1, concurrency)):
                nursery.start_soon(worker)
    if scope.cancelled_caught:
        tally.error("phase_timeout")
    progress.close()
    wall = time.perf_counter() - began
    return tally.as_dict(
        cycles=cycles,
        concurrency=concurrency,
        wall_s=round(wall, 3),
        cycles_per_s=round(tally.counters.get("cycles_done", 0) / wall, 1) if wall > 0 else 0.0,
    )


# -- logins: wrong passwords all at once -----------------------------------------------------------


async def burst(
    base_url: str, n: int, request: Callable[[httpx.AsyncClient, int], Awaitable[str]]
) -> dict[str, int]:
    """`n` requests at once, each on its own connection: {outcome: count}, where the outcome is
    what `request` returns (e.g. the status code) or the httpx error's class name. Used for
    attacks: a reset connection reads as "ReadError"."""
    codes: dict[str, int] = {}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:

        async def one(i: int) -> None:
            try:
                key = await request(client, i)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            codes[key] = codes.get(key, 0) + 1

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return codes


async def logins_phase(base_url: str, *, logins: int) -> dict[str, int]:
    """`logins` wrong-password POSTs to the admin login at once (see `burst`)."""

    async def guess(client: httpx.AsyncClient, i: int) -> str:
        r = await client.post("/admin/api/login", json={"password": f"guess {i}"})
        return str(r.status_code)

    return await burst(base_url, logins, guess)


# -- CLI -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m appliance.bench.loadgen", description=__doc__)
    sub = ap.add_subparsers(dest="phase", required=True)
    ws = sub.add_parser("ws", help="concurrent /ws conversations")
    ws.add_argument("--url", required=True)
    ws.add_argument("--conversations", type=int, default=500)
    ws.add_argument("--turns", type=int, default=3)
    ws.add_argument("--ramp-s", type=float, default=5.0)
    ws.add_argument("--think-s", type=float, default=2.0)
    ws.add_argument("--turn-timeout-s", type=float, default=30.0)
    ws.add_argument("--seed", type=int, default=1)
    sse = sub.add_parser("sse", help="concurrent SSE chats")
    sse.add_argument("--url", required=True)
    sse.add_argument("--chats", type=int, default=100)
    ch = sub.add_parser("churn", help="connect/disconnect cycles")
    ch.add_argument("--url", required=True)
    ch.add_argument("--cycles", type=int, default=2000)
    ch.add_argument("--concurrency", type=int, default=10)
    lg = sub.add_parser("logins", help="parallel wrong admin logins")
    lg.add_argument("--url", required=True)
    lg.add_argument("--logins", type=int, default=1000)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raise_nofile_limit()
    run: Callable[[], Any]
    if args.phase == "ws":

        async def run() -> dict[str, Any]:
            return await ws_phase(
                args.url,
                conversations=args.conversations,
                turns=args.turns,
                ramp_s=args.ramp_s,
                think_s=args.think_s,
                turn_timeout_s=args.turn_timeout_s,
                seed=args.seed,
            )
    elif args.phase == "sse":

        async def run() -> dict[str, Any]:
            return await sse_phase(args.url, chats=args.chats)
    elif args.phase == "logins":

        async def run() -> dict[str, Any]:
            return await logins_phase(args.url, logins=args.logins)
    else:

        async def run() -> dict[str, Any]:
            return await churn_phase(args.url, cycles=args.cycles, concurrency=args.concurrency)

    result = trio.run(run)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
