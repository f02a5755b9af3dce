"""What the figures were measured on: CPU, cores, memory, runtimes and package versions."""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "busy_percent",
    "cpu_model",
    "cpu_times",
    "machine_info",
    "raise_nofile_limit",
    "short_name",
    "wait_quiet",
]

PACKAGES = (
    "trio",
    "trio-websocket",
    "hypercorn",
    "quart",
    "quart-trio",
    "httpx",
    "h11",
    "onnxruntime",
    "numpy",
    "llama_cpp_python",
)


def cpu_model(cpuinfo: str) -> str:
    """The CPU's marketing name from /proc/cpuinfo text (x86 `model name`, ARM `Hardware`/
    `CPU part` fallbacks); "unknown" when nothing fits."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "cpu model", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    if "cpu part" in fields:
        return f"{fields.get('cpu implementer', '?')}/{fields['cpu part']}"
    return "unknown"


def short_name(model: str, cores: int) -> str:
    """A file-name-safe short machine name, e.g. "intel-xeon-2c" (used for result file names)."""
    name = re.sub(r"\((?:R|TM|tm|r)\)", " ", model)
    name = re.sub(r"@.*$", " ", name)
    words = [
        w
        for w in re.split(r"[^A-Za-z0-9]+", name.lower())
        if w and w not in {"cpu", "processor", "core", "with", "radeon", "graphics"}
    ]
    return "-".join([*words[:4], f"{cores}c"])


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _mem_total_mb() -> float | None:
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    return round(int(m.group(1)) / 1024, 1) if m else None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        run = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() or None if run.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    """Everything needed to compare two result files. Imports onnxruntime (~0.2 s)."""
    import onnxruntime

    model = cpu_model(_read("/proc/cpuinfo")) if os.path.exists("/proc/cpuinfo") else "unknown"
    model = model if model != "unknown" else (platform.processor() or "unknown")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu_model": model,
        "cores": cores or 1,
        "cpu_count": os.cpu_count(),
        "short_name": short_name(model, cores or 1),
        "memory_mb": _mem_total_mb(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
        "packages": _versions(),
        "git_commit": _git_commit(),
        "nofile_limit": [soft, hard],
    }


def raise_nofile_limit(want: int = 65536) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `want` (capped by the hard limit); child
    processes inherit it. Returns the soft limit now in force. 500 WebSockets plus their
    upstream LLM connections need more than the common default of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft)


def cpu_times(stat: str | None = None) -> tuple[float, float]:
    """(busy, total) jiffies of the whole box from /proc/stat's aggregate `cpu` line."""
    text = stat if stat is not None else _read("/proc/stat")
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [float(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
            total = sum(values[:8])  # guest time is already counted in user/nice
            return total - idle, total
    return 0.0, 0.0


def busy_percent(a: tuple[float, float], b: tuple[float, float]) -> float:
    """How busy the whole box was between two cpu_times() readings, in % of all cores."""
    total = b[1] - a[1]
    return round(100.0 * (b[0] - a[0]) / total, 1) if total > 0 else 0.0


def wait_quiet(max_wait_s: float, *, busy_below: float = 15.0, window_s: float = 1.0) -> float:
    """Block until the box was less than `busy_below` % busy for two consecutive windows (other
    work on a shared box skews every figure), or `max_wait_s` passed. Returns seconds waited.
    Called before a bench starts, from synchronous code (no event loop is running)."""
    began = time.monotonic()
    quiet = 0
    last = cpu_times()
    while quiet < 2 and time.monotonic() - began < max_wait_s:
        time.sleep(window_s)
        now = cpu_times()
        quiet = quiet + 1 if busy_percent(last, now) < busy_below else 0
        last = now
    return round(time.monotonic() - began, 1)
