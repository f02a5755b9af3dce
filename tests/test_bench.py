"""`appliance bench`: the harness runs end to end on tiny sizes and writes every promised field.

No test asserts a timing target; figures come from `appliance bench`, not from tests.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from support import run_cli

from appliance.bench.core import Target
from appliance.bench.load import cpu_ms_per_turn, lag_p99_ms
from appliance.bench.machine import busy_percent, cpu_model, cpu_times, short_name
from appliance.bench.procs import ApplianceStartError, ProcSample, proc_sample, run_appliance
from appliance.bench.report import format_table, markdown_summary
from appliance.bench.stats import (
    histogram_buckets,
    histogram_delta,
    histogram_quantile,
    percentile,
)
from appliance.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]


def _bench(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "result.json"
    run = run_cli(
        [sys.executable, "-m", "appliance", "bench", *args, "--out", str(out)],
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.exists(), run.stderr[-3000:]
    return run.returncode, json.loads(out.read_text()), run.stdout


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_quantiles(result: dict[str, Any], prefix: str) -> None:
    p50, p99 = result[f"{prefix}_p50_ms"], result[f"{prefix}_p99_ms"]
    assert _number(p50) and _number(p99) and p99 >= p50, (prefix, p50, p99)


# -- end to end, tiny sizes ------------------------------------------------------------------------


def test_bench_load_runs_the_appliance_from_under_test(tmp_path: Path) -> None:
    # A source tree whose appliance exits at once: the bench must start that one, not ours.
    fake = tmp_path / "tree" / "appliance"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("raise SystemExit(7)\n")
    work = tmp_path / "new" / "workdir"  # not there yet: made, not a FileNotFoundError
    code, report, _ = _bench(
        tmp_path, "load", "--conversations", "2", "--churn", "2", "--sse", "1",
        "--voice", "false", "--under-test", str(tmp_path / "tree"), "--workdir", str(work),
    )  # fmt: skip
    assert code != 0
    assert "exited with code 7" in report["failed"]
    assert work.is_dir()
    # The Markdown page says why instead of failing on the missing figures.
    assert "exited with code 7" in (tmp_path / "result.md").read_text()


def test_bench_all_tiny_writes_every_field(tmp_path: Path) -> None:
    code, report, stdout = _bench(
        tmp_path,
        "all",
        "--turns", "10",
        "--conversations", "20", "--conv-turns", "2", "--ramp-s", "0.5", "--think-s", "0.2",
        "--sse", "5",
        "--churn", "50",
        "--starts", "1", "--llm", "scripted", "--audio", "false", "--semantic", "false",
        "--first-token-ms", "20", "--token-ms", "2",
        "--skip", "voice",  # minutes and PulseAudio: tests/test_bench_voice.py covers it
    )  # fmt: skip
    assert code == 0, stdout
    assert report["bench"] == "all" and report["errors"] == 0
    assert "voice" not in report and {"text", "load", "startup"} <= set(report)
    m = report["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and m["python"].startswith("3.")
    assert "CPUExecutionProvider" in m["onnxruntime_providers"]
    for pkg in ("trio", "hypercorn", "quart-trio", "httpx", "onnxruntime", "numpy"):
        assert m["packages"][pkg], pkg

    text = report["text"]
    assert text["turns"] == text["turns_measured"] == 10 and text["errors"] == 0
    assert text["llm_first_token_ms"] == 20
    _check_quantiles(text, "overhead")
    assert text["overhead_p50_ms"] > -5  # first delta cannot come much before the LLM's token
    assert _number(text["overhead_vs_direct_p50_ms"]) and text["llm_direct_ttft_p50_ms"] >= 20
    assert {t["field"] for t in text["targets"]} == {"overhead_p50_ms", "errors"}

    load = report["load"]
    assert load["conversations"] == 20 and load["peak_open"] == 20
    assert load["turns_done"] == 40 and load["errors"] == 0 and load["disconnects"] == 0
    _check_quantiles(load, "added")
    _check_quantiles(load, "connect")
    _check_quantiles(load, "sse_added")
    assert load["sse_errors"] == 0 and load["churn_errors"] == 0
    assert _number(load["loop_lag_p99_ms"]) and load["loop_lag_p99_ms"] >= 0
    assert load["loop_lag_samples"] > 0
    assert load["rss_mb"] > 10 and _number(load["cpu_percent"])
    assert _number(load["cpu_ms_per_turn"]) and load["cpu_ms_per_turn"] > 0
    assert _number(load["leak_rss_mb"]) and isinstance(load["leak_fds"], int)
    assert load["llm_first_token_ms"] == 20 and load["llm_token_ms"] == 2
    assert load["exit_code"] == 0 and load["stopping_seen"] is True

    startup = report["startup"]
    assert startup["starts"] == 1 and startup["errors"] == 0
    assert 0 < startup["ready_s_median"] < 120 and startup["rss_mb"] > 10
    assert startup["llm"] == "scripted server"
    loads = startup["model_load_s"]
    assert _number(loads["knowledge_s"]) and loads["knowledge_s"] >= 0
    assert "knowledge_loaded" in startup["timeline_median_start"]

    md = (tmp_path / "result.md").read_text()
    for heading in ("## text", "## load", "## startup", "`added_p99_ms`", "`ready_s_median`"):
        assert heading in md
    assert "overhead_p50_ms" in stdout  # the short table


def test_bench_text_counts_errors_and_exits_nonzero(tmp_path: Path) -> None:
    # The scripted LLM answers 500: every turn ends in the fallback reply, counted as an error.
    code, report, _ = _bench(
        tmp_path, "text", "--turns", "3", "--first-token-ms", "0", "--llm-mode", "http_500"
    )
    assert code == 1
    assert report["bench"] == "text" and report["turns"] == 3
    assert report["errors"] == 3 and report["error_kinds"] == {"outcome:fallback": 3}
    assert report["machine"]["cores"] >= 1
    assert report["targets"][1] == {"field": "errors", "target": "== 0", "value": 3, "met": False}


async def test_appliance_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    config = {"web": {"host": "127.0.0.1", "port": 1, "no_such_key": True}}
    with pytest.raises(ApplianceStartError, match="no_such_key"), trio.fail_after(60):
        async with run_appliance(config, tmp_path):
            pass


# -- pure pieces -----------------------------------------------------------------------------------


def test_percentile_interpolates() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 99) == 99.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_histogram_quantile_from_real_metrics_text() -> None:
    metrics = Metrics()
    before = metrics.render().decode()
    for _ in range(98):
        metrics.loop_lag.observe(0.0003)  # bucket le=0.0005
    metrics.loop_lag.observe(0.003)  # le=0.005
    metrics.loop_lag.observe(0.2)  # le=0.25
    after = metrics.render().decode()
    buckets = histogram_buckets(after, "appliance_event_loop_lag_seconds")
    assert buckets[0.0005] == 98 and buckets[math.inf] == 100
    delta = histogram_delta(histogram_buckets(before, "appliance_event_loop_lag_seconds"), buckets)
    est, upper = histogram_quantile(0.99, delta)
    assert upper == 0.005 and 0.002 < est <= 0.005
    assert histogram_quantile(0.5, delta)[1] == 0.0005
    p99, bound, samples = lag_p99_ms(before, after)
    assert bound == 5.0 and samples == 100 and 2.0 < p99 <= 5.0
    assert histogram_quantile(0.99, {}) == (0.0, 0.0)


def test_cpu_ms_per_turn() -> None:
    a = ProcSample(wall=10.0, cpu_s=3.0, rss_mb=50.0, fds=10)
    b = ProcSample(wall=40.0, cpu_s=9.0, rss_mb=60.0, fds=12)
    assert cpu_ms_per_turn(a, b, 1500) == 4.0  # 6 s of CPU over 1500 turns
    assert cpu_ms_per_turn(a, b, 0) is None
    assert cpu_ms_per_turn(b, a, 10) == 0.0  # never negative


def test_histogram_quantile_in_the_inf_bucket() -> None:
    est, upper = histogram_quantile(0.99, {0.1: 1.0, 1.0: 1.0, math.inf: 10.0})
    assert est == 1.0 and math.isinf(upper)


def test_cpu_model_and_short_name() -> None:
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    assert cpu_model(x86) == "Intel(R) Xeon(R) Processor"
    assert cpu_model("processor : 0\nHardware : BCM2835\n") == "BCM2835"
    assert cpu_model("processor : 0\nCPU implementer : 0x41\nCPU part : 0xd0b\n") == "0x41/0xd0b"
    assert short_name("Intel(R) Xeon(R) Processor", 2) == "intel-xeon-2c"
    assert short_name("AMD Ryzen 7 5800X 8-Core Processor", 16) == "amd-ryzen-7-5800x-16c"
    assert short_name("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", 8) == "intel-i5-8250u-8c"


def test_box_cpu_busy_from_proc_stat() -> None:
    a = cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    b = cpu_times("cpu  200 0 200 1300 100 0 0 0 0 0\n")
    assert a == (200.0, 1000.0) and b == (400.0, 1800.0)
    assert busy_percent(a, b) == 25.0 and busy_percent(a, a) == 0.0
    busy, total = cpu_times()  # this box
    assert 0 <= busy <= total and total > 0


def test_targets_and_report_text() -> None:
    result: dict[str, Any] = {"added_p99_ms": 61.0, "errors": 0, "turns": 5}
    checks = [
        Target("added_p99_ms", "<=", 50).check(result),
        Target("errors", "==", 0).check(result),
    ]
    assert [c["met"] for c in checks] == [False, True]
    assert Target("missing", "<=", 1).check(result)["met"] is False
    result["targets"] = checks
    table = format_table("load", result, ("turns",))
    assert "added_p99_ms" in table and "MISSED" in table and "turns" in table
    machine = {
        "short_name": "x-2c",
        "cpu_model": "X",
        "cores": 2,
        "arch": "x86_64",
        "kernel": "6",
        "python": "3.11",
        "onnxruntime": "1",
        "onnxruntime_providers": ["CPUExecutionProvider"],
        "packages": {"trio": "0.35"},
    }
    report = {"date": "d", "machine": machine, "command": "c", "errors": 0, "load": result}
    md = markdown_summary(report, {"load": ("turns",)})
    assert "## load" in md and "| `added_p99_ms` | 61.0 | <= 50  MISSED |" in md


def test_proc_sample_reads_this_process() -> None:
    s = proc_sample(os.getpid())
    assert s.rss_mb > 1 and s.fds >= 3 and s.cpu_s > 0
