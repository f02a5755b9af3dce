"""`appliance bench faults` end to end on a small matrix: three faults against the real service
process (an LLM fault, WebSocket fuzzing, kill -9 during settings saves), every promised field
written, JSON and Markdown. The full matrix and its figures: docs/bench/."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from support import run_cli

from appliance.bench.faults import FAULT_NAMES, metric

REPO = Path(__file__).resolve().parents[1]


def test_small_fault_matrix(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    run = run_cli(
        [
            sys.executable, "-m", "appliance", "bench", "faults",
            "--faults", "llm_http_500,ws_fuzz,config_save_kill9",
            "--probe-turns", "2", "--save-trials", "3",
            "--fuzz-frames", "300", "--fuzz-clients", "5",
            "--voice", "false", "--out", str(out),
            # A stuck fault is cut at 120 s and reported with where its tasks waited
            # (detail.stuck_tasks) instead of hanging the test until its own timeout.
            "--fault-timeout-s", "120",
        ],
        timeout=400,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert out.exists(), run.stderr[-3000:]
    report = json.loads(out.read_text())
    failed = [(f["name"], f["error"], f["detail"]) for f in report["faults"] if not f["survived"]]
    assert failed == [], failed
    assert run.returncode == 0, (run.stdout, report)
    assert report["bench"] == "faults" and report["faults_run"] == 3
    assert report["faults_survived"] == 3 and report["faults_failed"] == []
    assert report["turns_lost"] == 0 and report["turns_lost_log"] == 0 and report["errors"] == 0
    faults = {f["name"]: f for f in report["faults"]}
    for f in faults.values():
        assert f["survived"] and f["error"] is None and f["rss_peak_mb"] > 10, f
    llm = faults["llm_http_500"]
    # Every question was answered (the fallback reply), and the box was fine again at once.
    assert llm["turns_asked"] == 2 and llm["outcomes"] == {"fallback": 2}
    assert llm["recovery_s"] is not None and llm["recovery_s"] < 10
    fuzz = faults["ws_fuzz"]["detail"]
    assert fuzz["frames"] >= 300 and fuzz["clients"] == 5 and fuzz["bad_input_counted"] > 0
    save = faults["config_save_kill9"]["detail"]
    assert save["trials"] == 3 and save["old"] + save["new"] == 3
    assert save["torn"] == 0 and save["unbootable"] == 0
    assert save["temp_files_left"] <= 1  # each start removes what a cut-off save left
    md = out.with_suffix(".md").read_text()
    assert "| `config_save_kill9` | yes |" in md and "# Fault matrix" in md
    assert {t["field"] for t in report["targets"]} >= {"errors", "rss_peak_mb_max"}


def test_every_fault_is_named_once() -> None:
    assert len(FAULT_NAMES) == len(set(FAULT_NAMES)) >= 20
    assert {"llm_hang_headers", "local_llm_sigkill", "disk_full", "audio_unplug"} <= set(
        FAULT_NAMES
    )


def test_metric_sums_the_matching_series() -> None:
    text = "\n".join(
        [
            "# HELP appliance_bad_input_total Rejected client input by code",
            'appliance_bad_input_total{code="bad_json"} 3.0',
            'appliance_bad_input_total{code="audio_flood"} 4.0',
            "appliance_sse_streams 2.0",
        ]
    )
    assert metric(text, "appliance_bad_input_total") == 7.0
    assert metric(text, "appliance_bad_input_total", code="audio_flood") == 4.0
    assert metric(text, "appliance_sse_streams") == 2.0
    assert metric(text, "appliance_nothing") == 0.0


async def test_task_stacks_say_where_each_task_waits() -> None:
    import trio
    import trio.testing

    from appliance.bench.stuck import task_stacks

    async def parked_on_an_event(ev: trio.Event) -> None:
        await ev.wait()

    ev = trio.Event()
    async with trio.open_nursery() as n:
        n.start_soon(parked_on_an_event, ev)
        await trio.testing.wait_all_tasks_blocked()
        lines = task_stacks()
        ev.set()
    parked = [line for line in lines if "parked_on_an_event" in line]
    # The task, by name, and the await chain down to the event it waits on.
    assert len(parked) == 1 and "_sync.py" in parked[0] and " wait" in parked[0], lines
    assert lines[0].startswith("<init>") and parked[0].startswith("    ")
