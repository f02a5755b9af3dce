"""`appliance run|ask|doctor|bench|models` — one CLI for the box and for staff at a terminal."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .config import Config, ConfigError, load_config, remove_stale_temps
from .logsetup import setup_logging

if TYPE_CHECKING:
    from .voice.engine import VoiceEngine

__all__ = ["main"]

log = logging.getLogger("appliance.cli")

# How long another thread may hold the GIL before the event loop's thread gets it (see cmd_run).
_SWITCH_INTERVAL_S = 0.001


def _load(path: str | None) -> Config:
    return load_config(Path(path) if path else None)


# -- run ------------------------------------------------------------------------------------------


def _start_voice_load(cfg: Config) -> Future[VoiceEngine] | None:
    """The voice models, the longest part of a start, begin loading on a thread now: the rest
    of the service is imported meanwhile (~0.6 s of Python on 2 cores; onnxruntime releases
    the GIL while it builds a session). The supervisor takes the outcome, errors included."""
    if cfg.voice.enabled is False:
        return None
    from .voice.engine import load_engine_blocking  # numpy + onnxruntime, needed anyway

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-load")
    try:
        return pool.submit(load_engine_blocking, cfg)
    finally:
        pool.shutdown(wait=False)  # the thread ends with the load


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    cfg = _load(args.config)
    voice_models = _start_voice_load(cfg)

    from .knowledge import KnowledgeError
    from .store import StoreError
    from .supervisor import run_service

    config_path = Path(args.config).resolve() if args.config else None
    # Saves that a kill or power cut stopped mid-write (settings, the FAQ editor) leave temp
    # files; nothing is saving yet, so they can go.
    for saved in (config_path, Path(cfg.knowledge.faq)):
        for stale in remove_stale_temps(saved) if saved is not None else []:
            log.warning("removed %s, left by a save that was cut off", stale)
    failure: BaseException | None = None
    # A worker thread running Python (the conversation log's writes, a retrieval, numpy around
    # a model run) keeps the event loop from the GIL for up to the switch interval, 5 ms by
    # default, and the loop often waits for it twice in a row. `appliance bench load`, five
    # runs each: event-loop lag p99 median 11 ms (4.6-27) at 5 ms, 4.6 ms (2.0-12) at 1 ms,
    # with the same CPU per turn.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    try:
        trio.run(
            partial(
                run_service,
                cfg,
                config_path=config_path,
                tune_gc=True,
                voice_models=voice_models,
            )
        )
    except* (KnowledgeError, StoreError) as group:  # raised inside the task tree
        failure = group.exceptions[0]
        while isinstance(failure, BaseExceptionGroup):
            failure = failure.exceptions[0]
    if failure is not None:
        # Refuse to start half-configured, with the reason on one line (journald shows it).
        log.error("cannot start: %s", failure)
        print(f"error: cannot start: {failure}", file=sys.stderr)
        return 2
    return 0


# -- ask ------------------------------------------------------------------------------------------


async def _ask_running(base: str, text: str) -> bool:
    """Ask a running appliance over its SSE endpoint; False when none is listening."""
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=60.0)) as client:
        try:
            await client.get(f"{base}/healthz")
        except httpx.HTTPError:
            return False
        async with client.stream("POST", f"{base}/api/chat", json={"text": text}) as resp:
            if resp.status_code != 200:
                body = json.loads(await resp.aread())
                print(f"error: {body.get('message', resp.status_code)}", file=sys.stderr)
                raise SystemExit(1)
            event = ""
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "reply.delta":
                    msg = json.loads(line[6:])
                    if msg.get("reset"):
                        print("\n", end="")
                    print(msg["text"], end="", flush=True)
                elif line.startswith("data: ") and event == "reply.done":
                    print()
                    return True
    print()
    return True


async def _ask_standalone(cfg: Config, text: str) -> None:
    """No appliance running: bring up the same service (local LLM included) just for one turn."""
    import dataclasses

    from .supervisor import run_service

    cfg = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, host="127.0.0.1", port=0))
    async with trio.open_nursery() as nursery:
        service = await nursery.start(
            lambda task_status: run_service(cfg, handle_signals=False, task_status=task_status)
        )
        base = service.urls[0].replace("0.0.0.0", "127.0.0.1")
        try:
            await _ask_running(base, text)
        finally:
            service.stop()


def cmd_ask(args: argparse.Namespace) -> int:
    setup_logging("WARNING", json_lines=False)
    cfg = _load(args.config)
    text = " ".join(args.text).strip()
    if not text:
        print("error: the question is empty", file=sys.stderr)
        return 2
    base = args.url or f"http://{cfg.web.host}:{cfg.web.port}"

    async def main() -> None:
        if not await _ask_running(base, text):
            await _ask_standalone(cfg, text)

    trio.run(main)
    return 0


# -- doctor ---------------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    setup_logging("WARNING", json_lines=False)
    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(f"FAIL config: {exc}")
        return 1
    results = trio.run(run_checks, cfg)
    worst = 0
    for r in results:
        print(f"{r.level:4} {r.name}: {r.detail}")
        worst = max(worst, {"OK": 0, "WARN": 0, "FAIL": 1}[r.level])
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    return worst


# -- models ---------------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .modelprep import PrepError, cache_dir, derived_onnx
    from .models_manifest import ModelError, load_manifest, verify

    try:
        manifest = load_manifest()
    except (OSError, ValueError, ModelError) as exc:
        print(f"error: model manifest: {exc}", file=sys.stderr)
        return 2
    where = cache_dir(_load(args.config).inference.cache_dir)
    bad = 0
    for mf in manifest.values():
        if args.action == "list":
            print(f"{mf.id:18} {mf.licence:12} {mf.package}=={mf.version}  {mf.path}")
            continue
        try:
            path = verify(mf)
            if args.action == "prepare" and path.suffix == ".ort":
                path = derived_onnx(path, mf.sha256, where)
            print(f"OK   {mf.id:18} {path}")
        except (ModelError, PrepError) as exc:
            bad += 1
            print(f"FAIL {mf.id:18} {exc}")
    if args.action == "verify":
        print(f"{len(manifest) - bad} of {len(manifest)} model files verified")
    return 1 if bad else 0


# -- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="appliance", description="The kiosk voice appliance.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (web, LLM, voice) until SIGTERM")
    run.add_argument("--config", help="TOML config file (default: built-in defaults)")
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)

    ask = sub.add_parser("ask", help="ask one question; the reply streams to stdout")
    ask.add_argument("text", nargs="+")
    ask.add_argument("--config")
    ask.add_argument("--url", help="base URL of a running appliance (default: from config)")
    ask.set_defaults(func=cmd_ask)

    doc = sub.add_parser("doctor", help="check config, knowledge, models, audio and LLM endpoints")
    doc.add_argument("--config")
    doc.add_argument("--json", action="store_true")
    doc.set_defaults(func=cmd_doctor)

    models = sub.add_parser(
        "models",
        help="list the model files, verify their sha256, or prepare (verify + derive the fast "
        "ONNX forms of .ort files into the cache; setup runs it)",
    )
    models.add_argument("action", choices=["verify", "list", "prepare"])
    models.add_argument("--config", help="TOML config file (for inference.cache_dir)")
    models.set_defaults(func=cmd_models)

    from .demo import add_demo_parser

    add_demo_parser(sub)

    from .bench import add_bench_parser

    add_bench_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error in {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
