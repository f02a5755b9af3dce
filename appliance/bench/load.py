"""`appliance bench load`: many concurrent conversations, SSE chats, connection churn.

Three processes: the appliance under test, the scripted LLM (fixed time to first token and token
rate, both reported), and the load generator (`python -m appliance.bench.loadgen`, one process
per phase). This process only orchestrates: it samples the appliance's /proc entry (CPU, RSS,
descriptors) and its /metrics (event-loop lag histogram) between and during phases.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from .core import DEFAULT_REPLY, Bench, Target, bench_dir, service_config
from .procs import (
    ProcSample,
    cpu_percent,
    free_port,
    proc_sample,
    run_appliance,
    run_scripted_llm,
    scrape_metrics,
)
from .stats import histogram_buckets, histogram_delta, histogram_quantile, summarize_ms

__all__ = ["LOAD", "cpu_ms_per_turn", "lag_p99_ms", "run_load"]

_LAG = "appliance_event_loop_lag_seconds"


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conversations", type=int, default=500, help="concurrent /ws conversations")
    p.add_argument("--conv-turns", type=int, default=3, help="turns per conversation (3)")
    p.add_argument("--ramp-s", type=float, default=5.0, help="spread connects over this (5 s)")
    p.add_argument(
        "--think-s", type=float, default=5.0, help="mean pause between a visitor's turns (5 s)"
    )
    p.add_argument("--sse", type=int, default=100, help="concurrent SSE chats (100)")
    p.add_argument("--churn", type=int, default=2000, help="connect/disconnect cycles (2000)")


def lag_p99_ms(before: str, after: str) -> tuple[float, float | None, int]:
    """Event-loop lag p99 between two /metrics scrapes: (interpolated ms, bucket upper bound ms
    or None when above the last finite bucket, number of samples)."""
    delta = histogram_delta(histogram_buckets(before, _LAG), histogram_buckets(after, _LAG))
    est, upper = histogram_quantile(0.99, delta)
    count = int(max(delta.values())) if delta else 0
    return round(est * 1000, 3), (None if math.isinf(upper) else round(upper * 1000, 3)), count


def cpu_ms_per_turn(before: ProcSample, after: ProcSample, turns: int) -> float | None:
    """CPU milliseconds (user + sys, all its threads) one process used per completed turn
    between two samples; None without a completed turn. Pure. Sampled from the appliance's own
    /proc entry, so the load generator and the scripted LLM (other processes) are not in it."""
    if turns <= 0:
        return None
    return round(1000.0 * max(0.0, after.cpu_s - before.cpu_s) / turns, 3)


async def _loadgen(args: list[str], timeout_s: float) -> dict[str, Any]:
    """One load-generator phase in its own process; its progress line goes to our stderr."""
    cmd = [sys.executable, "-m", "appliance.bench.loadgen", *args]
    with trio.fail_after(timeout_s):
        done = await trio.run_process(
            cmd, capture_stdout=True, stderr=None, stdin=subprocess.DEVNULL, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"load generator {args[0]} exited with {done.returncode}")
    lines = done.stdout.decode().strip().splitlines()
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def _children_cpu_s() -> float:
    """CPU seconds used by our waited-for child processes (here: finished load generators)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class _Sampler:
    """Peak RSS and descriptors of a process, sampled every `period_s` while a phase runs."""

    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        self.pid, self.period_s = pid, period_s
        self.peak_rss_mb = 0.0
        self.peak_fds = 0

    async def run(self) -> None:
        while True:
            s = proc_sample(self.pid)
            self.peak_rss_mb = max(self.peak_rss_mb, s.rss_mb)
            self.peak_fds = max(self.peak_fds, s.fds)
            await trio.sleep(self.period_s)


async def _settled(pid: int, timeout_s: float = 5.0) -> ProcSample:
    """A sample once the descriptor count stopped moving (closing sockets linger briefly)."""
    last = proc_sample(pid)
    with trio.move_on_after(timeout_s):
        while True:
            await trio.sleep(0.25)
            now = proc_sample(pid)
            if now.fds == last.fds:
                return now
            last = now
    return last


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    ttft: float = args.first_token_ms
    n, turns = args.conversations, args.conv_turns
    out: dict[str, Any] = {
        "conversations": n,
        "turns_per_conversation": turns,
        "think_s": args.think_s,
        "ramp_s": args.ramp_s,
        "llm_first_token_ms": ttft,
        "llm_token_ms": args.token_ms,
        "llm_reply_words": len(DEFAULT_REPLY.split()),
    }
    with bench_dir("load", args) as tmp:
        work = Path(tmp)
        async with run_scripted_llm(
            first_token_ms=ttft, token_ms=args.token_ms, reply=DEFAULT_REPLY, mode=args.llm_mode
        ) as llm:
            cfg = service_config(port=free_port(), llm_url=llm.url, workdir=work, voice=args.voice)
            async with run_appliance(cfg, work, pythonpath=args.under_test) as app:
                out["rss_idle_mb"] = proc_sample(app.pid).rss_mb
                out.update(await _ws_phase(args, app.base_url, app.ws_url, app.pid, llm.pid))
                out.update(await _sse_phase(args, app.base_url, app.pid))
                out.update(await _churn_phase(args, app.ws_url, app.pid))
            out["exit_code"] = app.exit_code
            out["stop_s"] = app.stop_s
            out["stopping_seen"] = app.stopping_seen
    out["errors"] = out["ws_errors"] + out["sse_errors"] + out["churn_errors"]
    out["setup"] = {
        "processes": "appliance, scripted LLM and load generator in separate processes",
        "knowledge": "semantic=false, answer_mode=open (every turn takes the LLM path)",
        "voice.enabled": args.voice,
        "pacing": f"connects spread over {args.ramp_s:g} s; think time uniform "
        f"[0.5, 1.5] x {args.think_s:g} s between turns; all connections held until the last "
        "conversation finished",
        "added": "first reply.delta latency minus the scripted server's time to first token",
        "loop_lag": "p99 of appliance_event_loop_lag_seconds over the ws phase, "
        "interpolated within its bucket (Prometheus histogram_quantile)",
        "cpu_ms_per_turn": "user+sys CPU of the appliance process (all its threads, not the "
        "scripted LLM or the load generator) over the ws phase, connects included, divided by "
        "the turns completed",
    }
    return out


async def _ws_phase(
    args: argparse.Namespace, base_url: str, ws_url: str, pid: int, llm_pid: int
) -> dict[str, Any]:
    n, turns = args.conversations, args.conv_turns
    m0 = await scrape_metrics(base_url)
    a0, l0 = proc_sample(pid), proc_sample(llm_pid)
    g0 = _children_cpu_s()
    sampler = _Sampler(pid)
    bound = args.ramp_s + turns * (args.think_s * 1.5 + 30) + 120
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run)
        ws = await _loadgen(
            [
                "ws",
                "--url",
                ws_url,
                "--conversations",
                str(n),
                "--turns",
                str(turns),
                "--ramp-s",
                str(args.ramp_s),
                "--think-s",
                str(args.think_s),
            ],
            bound,
        )
        nursery.cancel_scope.cancel()
    a1, l1 = proc_sample(pid), proc_sample(llm_pid)
    loadgen_cpu_s = _children_cpu_s() - g0  # only the load generator exited in between
    m1 = await scrape_metrics(base_url)
    lag, lag_upper, lag_samples = lag_p99_ms(m0, m1)
    samples = ws["samples_ms"]
    added = [ms - args.first_token_ms for ms in samples.get("first_delta", [])]
    turns_done = int(ws.get("turns_done", 0))
    wall = float(ws["wall_s"])
    return {
        **summarize_ms(added, "added"),
        **summarize_ms(samples.get("connect", []), "connect"),
        **summarize_ms(samples.get("turn", []), "turn"),
        "turns_done": turns_done,
        "turns_per_s": round(turns_done / wall, 1) if wall > 0 else 0.0,
        "peak_open": int(ws.get("peak_open", 0)),
        "ws_errors": int(ws["errors"]),
        "ws_error_kinds": ws["error_kinds"],
        "disconnects": int(ws["error_kinds"].get("disconnect", 0)),
        "loop_lag_p99_ms": lag,
        "loop_lag_p99_bucket_ms": lag_upper,
        "loop_lag_samples": lag_samples,
        "cpu_percent": cpu_percent(a0, a1),
        "cpu_ms_per_turn": cpu_ms_per_turn(a0, a1, turns_done),
        "llm_cpu_percent": cpu_percent(l0, l1),
        "loadgen_cpu_percent": round(100 * loadgen_cpu_s / (a1.wall - a0.wall), 1),
        "rss_mb": sampler.peak_rss_mb,
        "peak_fds": sampler.peak_fds,
        "ws_wall_s": wall,
    }


async def _sse_phase(args: argparse.Namespace, base_url: str, pid: int) -> dict[str, Any]:
    m0 = await scrape_metrics(base_url)
    sse = await _loadgen(["sse", "--url", base_url, "--chats", str(args.sse)], 180)
    m1 = await scrape_metrics(base_url)
    lag, _, _ = lag_p99_ms(m0, m1)
    added = [ms - args.first_token_ms for ms in sse["samples_ms"].get("first_delta", [])]
    s = summarize_ms(added, "added")
    return {
        "sse_chats": args.sse,
        "sse_added_p50_ms": s["added_p50_ms"],
        "sse_added_p99_ms": s["added_p99_ms"],
        "sse_errors": int(sse["errors"]),
        "sse_error_kinds": sse["error_kinds"],
        "sse_loop_lag_p99_ms": lag,
        "sse_wall_s": sse["wall_s"],
    }


async def _churn_phase(args: argparse.Namespace, ws_url: str, pid: int) -> dict[str, Any]:
    # Warm up first, so allocator pools and caches that grow once are not counted as a leak.
    warm = max(10, args.churn // 10)
    await _loadgen(["churn", "--url", ws_url, "--cycles", str(warm)], 120)
    before = await _settled(pid)
    churn = await _loadgen(["churn", "--url", ws_url, "--cycles", str(args.churn)], 600)
    after = await _settled(pid)
    return {
        "churn_cycles": args.churn,
        "churn_warmup_cycles": warm,
        "churn_cycles_per_s": churn["cycles_per_s"],
        "churn_errors": int(churn["errors"]),
        "churn_error_kinds": churn["error_kinds"],
        "rss_before_churn_mb": before.rss_mb,
        "rss_after_churn_mb": after.rss_mb,
        "fds_before_churn": before.fds,
        "fds_after_churn": after.fds,
        "leak_rss_mb": round(after.rss_mb - before.rss_mb, 2),
        "leak_fds": after.fds - before.fds,
    }


LOAD = Bench(
    name="load",
    help="concurrent /ws conversations, SSE chats and connection churn against the appliance",
    add_arguments=add_load_arguments,
    run=run_load,
    headline=(
        "conversations",
        "peak_open",
        "turns_per_s",
        "added_p50_ms",
        "added_p99_ms",
        "connect_p99_ms",
        "loop_lag_p99_ms",
        "cpu_percent",
        "cpu_ms_per_turn",
        "rss_mb",
        "sse_added_p50_ms",
        "sse_added_p99_ms",
        "leak_rss_mb",
        "leak_fds",
        "errors",
    ),
    targets=(
        Target("added_p99_ms", "<=", 50.0),
        Target("errors", "==", 0),
        Target("loop_lag_p99_ms", "<=", 5.0),
        Target("leak_fds", "<=", 0),
        Target("leak_rss_mb", "<=", 5.0, note="our tolerance for allocator noise"),
    ),
)
