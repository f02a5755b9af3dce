"""Presenting results: the short table on stdout, the JSON file, the Markdown summary (pure text
builders plus two small writers)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["format_table", "format_value", "markdown_summary", "write_json"]


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if value is None:
        return "-"
    return str(value)


def _rows(result: dict[str, Any], headline: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(field, value, target verdict) for the headline fields and every target field."""
    targets = {t["field"]: t for t in result.get("targets", [])}
    fields = list(headline) + [f for f in targets if f not in headline]
    rows = []
    for f in fields:
        t = targets.get(f)
        verdict = "" if t is None else f"{t['target']}  {'ok' if t['met'] else 'MISSED'}"
        rows.append((f, format_value(result.get(f)), verdict))
    return rows


def format_table(name: str, result: dict[str, Any], headline: tuple[str, ...]) -> str:
    """A short fixed-width table of one bench's headline figures and targets."""
    if "failed" in result:
        return f"== {name}: FAILED: {result['failed']}"
    rows = _rows(result, headline)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"== {name}"]
    lines += [f"  {f:<{w0}}  {v:>{w1}}  {t}".rstrip() for f, v, t in rows]
    return "\n".join(lines)


def markdown_summary(report: dict[str, Any], headlines: dict[str, tuple[str, ...]]) -> str:
    """The Markdown page committed next to the JSON: machine, command, one table per bench."""
    m = report["machine"]
    out = [
        f"# Bench results {report['date']} on {m['short_name']}",
        "",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m.get('memory_mb')} MB RAM, "
        f"{m['arch']}, Linux {m['kernel']}",
        f"- Python {m['python']}, onnxruntime {m['onnxruntime']} "
        f"({', '.join(m['onnxruntime_providers'])})",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v is not None),
        f"- Commit: {m.get('git_commit') or 'unknown'}",
        f"- Command: `{report['command']}`",
        f"- Errors in total: {report['errors']}",
        "",
    ]
    for name, headline in headlines.items():
        result = report.get(name)
        if not isinstance(result, dict):
            continue
        out += [f"## {name}", ""]
        if "failed" in result:
            out += [f"Failed: `{result['failed']}`", ""]
            continue
        out += ["| figure | value | target |", "|---|---:|---|"]
        for f, v, t in _rows(result, headline):
            out.append(f"| `{f}` | {v} | {t} |")
        stages = result.get("model_load_s")
        if isinstance(stages, dict) and stages:
            out += [
                "",
                "Stage times (s, median): " + ", ".join(f"{k} {v}" for k, v in stages.items()),
            ]
        setup = result.get("setup")
        if isinstance(setup, dict):
            out += ["", "Setup: " + "; ".join(f"{k}: {v}" for k, v in setup.items())]
        load = result.get("loadavg_1m_before_after")
        if isinstance(load, list):
            out += [
                "",
                f"Box during this bench: load average {load[0]} before, {load[1]} after; "
                f"whole-box CPU busy {result.get('box_cpu_busy_percent')} % (all processes); "
                f"took {result.get('bench_wall_s')} s.",
            ]
        out.append("")
    return "\n".join(out)


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
