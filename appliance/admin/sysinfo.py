"""Facts for the admin status page: models, execution providers, audio devices, CPU, memory.

Blocking (file stats, /proc reads, PortAudio queries): call through trio.to_thread.run_sync.
Every probe reports its own failure as text instead of failing the whole page.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

from ..models_manifest import ModelError, load_manifest, locate

__all__ = ["audio_devices", "machine", "models", "providers"]


def models() -> list[dict[str, Any]]:
    """Manifest entries with whether the file is present with the expected size. Hashes come
    from the manifest (verified at load by each stage and by `appliance models verify`):
    hashing ~100 MB on every page view would cost the kiosk CPU."""
    try:
        manifest = load_manifest()
    except ModelError as exc:
        return [{"id": "manifest", "error": str(exc)}]
    out: list[dict[str, Any]] = []
    for mf in manifest.values():
        entry: dict[str, Any] = {
            "id": mf.id,
            "package": mf.package,
            "version": mf.version,
            "sha256": mf.sha256,
            "licence": mf.licence,
            "size_bytes": mf.size_bytes,
        }
        try:
            path = locate(mf)
            size = path.stat().st_size
            entry["present"] = size == mf.size_bytes
            if size != mf.size_bytes:
                entry["error"] = f"size {size} != {mf.size_bytes}"
        except (ModelError, OSError) as exc:
            entry["present"] = False
            entry["error"] = str(exc)
        out.append(entry)
    return out


def providers(configured: str) -> dict[str, Any]:
    try:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    except Exception as exc:  # a broken ORT install should show on the page, not crash it
        return {"configured": configured, "available": [], "error": str(exc)}
    return {"configured": configured, "available": available}


def audio_devices() -> dict[str, Any]:
    try:
        import sounddevice as sd

        devices = [
            {
                "name": str(d["name"]),
                "inputs": int(d["max_input_channels"]),
                "outputs": int(d["max_output_channels"]),
            }
            for d in sd.query_devices()
        ]
    except Exception as exc:  # no PortAudio, no sound server: say so
        return {"devices": [], "error": str(exc)}
    return {"devices": devices}


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                out[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def machine() -> dict[str, Any]:
    mem = _meminfo()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "cpus": os.cpu_count() or 0,
        "load": [round(x, 2) for x in load],
        "mem_total": mem.get("MemTotal"),
        "mem_available": mem.get("MemAvailable"),
        "process_max_rss": rss,
    }
