"""`appliance bench ...`: the figures we promise, measured on this box as JSON.

Each bench runs the appliance as its own process (`python -m appliance run`, as systemd does)
against a scripted OpenAI-compatible server in another process; the client or load generator is
the bench process itself (text) or yet another process (load). Benches live in `BENCHES`
(`core.register`); `all` runs every registered bench in order but those marked `in_all=False`
(`understand`: an evaluation of the voice path, run in this process, tens of minutes;
`hearing`: ASR WER under noise and the wake words, offline; `echo`: the speaker looped
into the microphone, tens of minutes). To add one
(e.g. `voice`), write a module exposing a `core.Bench` and register it in `_builtin()` below.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .core import BENCHES, Bench, Target, register

__all__ = ["BENCHES", "Bench", "Target", "add_bench_parser", "main", "register", "run_benches"]


def _builtin() -> None:
    if BENCHES:
        return
    from .echo import ECHO
    from .faults import FAULTS
    from .hearing import HEARING
    from .load import LOAD
    from .startup import STARTUP
    from .text import TEXT
    from .understand import UNDERSTAND
    from .voice import VOICE

    for bench in (TEXT, VOICE, LOAD, STARTUP, UNDERSTAND, HEARING, FAULTS, ECHO):
        register(bench)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument(
        "--first-token-ms",
        type=float,
        default=150.0,
        help="scripted LLM: time to first token (default 150, like the local SmolLM2)",
    )
    p.add_argument(
        "--token-ms",
        type=float,
        default=15.0,
        help="scripted LLM: time between tokens (default 15, ~67 tok/s)",
    )
    p.add_argument(
        "--voice",
        choices=("auto", "false"),
        default="auto",
        help="voice.enabled of the appliance under test (auto: models loaded, as on the box)",
    )
    p.add_argument("--workdir", help="where temp dirs go (default: the system temp dir)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each bench, wait up to S seconds for the box to be idle (shared boxes)",
    )
    p.add_argument("--keep", action="store_true", help="keep temp dirs (appliance logs, configs)")
    # For the harness's own tests: make the scripted LLM fail so that errors are counted.
    p.add_argument("--llm-mode", default="ok", help=argparse.SUPPRESS)
    # Run the appliance under test from another source tree (to measure what a change changed,
    # e.g. a worktree of the commit before it); the bench itself runs from this one.
    p.add_argument("--under-test", help=argparse.SUPPRESS)


def add_bench_parser(sub: Any) -> None:
    """Register `bench` and its subcommands on the CLI's subparsers (called by appliance.cli)."""
    _builtin()
    bench: argparse.ArgumentParser = sub.add_parser(
        "bench", help="measure latency, load, start-up (JSON out)"
    )
    bsub = bench.add_subparsers(dest="bench", required=True)
    for b in BENCHES.values():
        p = bsub.add_parser(b.name, help=b.help)
        _add_common(p)
        b.add_arguments(p)
        p.set_defaults(func=lambda args, name=b.name: run_benches([name], args))
    in_all = [n for n, b in BENCHES.items() if b.in_all]
    p_all = bsub.add_parser("all", help=f"{', '.join(in_all)}; also writes a Markdown summary")
    _add_common(p_all)
    for n in in_all:
        BENCHES[n].add_arguments(p_all)
    p_all.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=in_all,
        metavar="NAME",
        help="leave a bench out (repeatable), e.g. --skip voice on a box without PulseAudio",
    )
    p_all.set_defaults(
        func=lambda args: run_benches(
            [n for n in in_all if n not in args.skip], args, combined=True
        )
    )


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _run_one(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from .core import evaluate
    from .machine import busy_percent, cpu_times, wait_quiet

    waited = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else 0.0
    began = time.monotonic()
    load_before = _loadavg()
    box_before = cpu_times()
    try:
        result = trio.run(bench.run, args)
    except Exception as exc:  # a bench that cannot run is a result (and an error), not a crash
        result = {"failed": f"{type(exc).__name__}: {exc}", "errors": 1}
    result["bench_wall_s"] = round(time.monotonic() - began, 1)
    # Other work on the box skews every figure; say how busy it was.
    result["loadavg_1m_before_after"] = [load_before, _loadavg()]
    result["box_cpu_busy_percent"] = busy_percent(box_before, cpu_times())  # all processes
    if args.wait_quiet > 0:
        result["waited_quiet_s"] = waited
    if "failed" not in result:
        result["targets"] = evaluate(result, bench.targets)
    return result


def run_benches(names: list[str], args: argparse.Namespace, *, combined: bool = False) -> int:
    """Run the named benches, print their tables, write JSON (and Markdown for `all`).
    Exit status 1 when any bench counted errors (or failed to run), else 0."""
    from .machine import machine_info, raise_nofile_limit
    from .report import format_table, markdown_summary, write_json

    raise_nofile_limit()  # the appliance and the load generator inherit it
    report: dict[str, Any] = {
        "bench": "all" if combined else names[0],
        "version": 1,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "appliance " + shlex.join(sys.argv[sys.argv.index("bench") :])
        if "bench" in sys.argv
        else "appliance bench " + " ".join(names),
        "machine": machine_info(),
    }
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"-- bench {name} ...", file=sys.stderr, flush=True)
        results[name] = _run_one(BENCHES[name], args)
        print(format_table(name, results[name], BENCHES[name].headline), flush=True)
    errors = sum(int(r.get("errors", 0)) for r in results.values())
    if combined:
        report.update(results)
        report["errors"] = errors
    else:
        report.update(results[names[0]])
    if args.out is not None:
        write_json(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
        md = args.out.with_suffix(".md")
        if combined:
            md.write_text(markdown_summary(report, {n: BENCHES[n].headline for n in names}))
            print(f"wrote {md}", file=sys.stderr)
        elif "failed" in report:  # nothing to tabulate: say why on the page too
            md.write_text(f"# Bench {names[0]}: failed\n\n- {report['failed']}\n")
            print(f"wrote {md}", file=sys.stderr)
        elif (page := BENCHES[names[0]].markdown) is not None:
            md.write_text(page(report))
            print(f"wrote {md}", file=sys.stderr)
    return 1 if errors > 0 else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m appliance.bench ...` (same as `appliance bench ...`)."""
    parser = argparse.ArgumentParser(prog="appliance")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code
