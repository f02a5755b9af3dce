"""`appliance bench hearing`: the summaries on hand-made rows, the wake clip plan, and one tiny run
through the CLI (2 questions, front end off and NS level 1, one wake word, half a minute of
negatives) that writes the JSON and Markdown. No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from support import run_cli

from appliance.bench import BENCHES, add_bench_parser, hearing
from appliance.bench.understand_score import Question
from appliance.bench.voices import VOICES

REPO = Path(__file__).resolve().parents[1]


def _row(fe: str, cond: tuple[str, float] | None, errors: int, words: int = 10) -> dict[str, Any]:
    return {
        "frontend": fe,
        "condition": hearing.condition_name(cond),
        "noise": None if cond is None else cond[0],
        "snr_db": None if cond is None else cond[1],
        "errors": errors,
        "words": words,
    }


def test_wer_summary_pairs_noisy_with_clean_per_front_end() -> None:
    rows = [
        _row("off", None, 1),
        _row("off", ("babble", 10.0), 3),
        _row("off", ("music", 10.0), 1),
        _row("off", ("hum", 5.0), 6),
        _row("ns1", None, 2),
        _row("ns1", ("babble", 10.0), 2),
        _row("ns1", ("music", 10.0), 2),
        _row("ns1", ("hum", 5.0), 2),
    ]
    s = hearing.wer_summary(rows)
    assert list(s) == ["off", "ns1"]
    off = s["off"]
    assert off["clean"] == {"wer_percent": 10.0, "errors": 1, "words": 10, "clips": 1}
    assert off["wer_10db_percent"] == 20.0 and off["ratio_10db"] == 2.0
    assert off["noisy"]["wer_percent"] == 33.3 and off["noisy"]["ratio"] == 3.33
    assert off["by_condition"]["babble@10dB"]["wer_percent"] == 30.0
    assert off["by_noise"]["hum"]["ratio"] == 6.0 and off["by_snr"]["5dB"]["clips"] == 1
    assert s["ns1"]["ratio_10db"] == 1.0 and s["ns1"]["noisy"]["wer_percent"] == 20.0
    # A clean WER of 0 gives no ratio unless the noisy one is 0 too.
    z = hearing.wer_summary([_row("off", None, 0), _row("off", ("hum", 10.0), 1)])
    assert z["off"]["ratio_10db"] is None
    head = hearing.headline(s, {}, {}, {"ns1": 12.0}, "hey_mycroft", "off")
    assert head["best_frontend"] == "ns1" and head["ratio_10db_best"] == 1.0
    assert head["ratio_10db_off"] == 2.0 and head["ns_cpu_percent_core"] == 0.12
    assert head["wake_detect_percent"] is None and head["false_wakes_per_hour"] is None


def test_wake_and_false_wake_summaries() -> None:
    rows = [
        {"word": "w", "frontend": "off", "voice": v, "condition": c, "noise": n, "detected": d}
        for v, c, n, d in (
            ("piper", "clean", None, True),
            ("piper", "hum@10dB", "hum", False),
            ("en-us", "clean", None, True),
            ("en-us", "clean", None, True),
        )
    ]
    s = hearing.wake_summary(rows)["w/off"]
    assert (s["detected"], s["n"], s["percent"]) == (3, 4, 75.0)
    assert s["clean"]["percent"] == 100.0 and s["noisy"]["percent"] == 0.0
    assert s["by_voice"]["piper"]["percent"] == 50.0 and set(s["by_voice"]) == {"piper", "en-us"}
    f = hearing.false_wake_summary(
        {"w/off": {"speech": 1, "music": 1}}, {"speech": 5400.0, "music": 1800.0}
    )["w/off"]
    assert f == {
        "false_wakes": 2,
        "minutes": 120.0,
        "per_hour": 1.0,
        "by_category": {"speech": 1, "music": 1},
        "admitted": None,  # not checked against a transcript
        "admitted_per_hour": None,
    }
    assert "admitted_percent" not in s
    # With the transcript check: what would still start a turn.
    checked = [{**r, "admitted": r["detected"] and r["voice"] == "piper"} for r in rows]
    s = hearing.wake_summary(checked)["w/off"]
    assert (s["admitted"], s["admitted_percent"], s["percent"]) == (1, 25.0, 75.0)
    events = [
        {"word": "w", "frontend": "off", "admitted": False},
        {"word": "w", "frontend": "off", "admitted": True},
    ]
    f = hearing.false_wake_summary(
        {"w/off": {"speech": 1, "music": 1}}, {"speech": 5400.0, "music": 1800.0}, events
    )["w/off"]
    assert (f["admitted"], f["admitted_per_hour"], f["per_hour"]) == (1, 0.5, 1.0)


def test_a_false_wake_is_checked_on_the_utterance_it_fired_in() -> None:
    said = [(0, "a", "v"), (16000, "b", "v"), (40000, "c", "v")]
    assert hearing.utterance_span(said, 20000, 60000) == (16000, 40000)
    assert hearing.utterance_span(said, 50000, 60000) == (40000, 60000)
    # noise alone: the seconds around the detection
    assert hearing.utterance_span([], 80000, 200000) == (80000 - 48000, 96000)
    assert hearing.utterance_span([], 1000, 200000) == (0, 17000)


def test_wake_plan_gives_every_voice_clean_and_noisy_clips() -> None:
    qs = [Question(id=f"q{i}", site="museum", kind="chat", text=f"Question {i}?") for i in range(5)]
    specs = hearing._wake_specs(qs, "Hey Mycroft", 10, seed=0)
    assert len(specs) == 10 * len(VOICES) >= 60
    assert all(s.text.startswith("Hey Mycroft, Question ") for s in specs)
    for v in VOICES:
        mine = [s for s in specs if s.voice == v]
        assert sum(s.noise is None for s in mine) == 5 and len(mine) == 10
    assert {s.noise for s in specs} == {None, "babble", "hum", "music"}
    assert specs == hearing._wake_specs(qs, "Hey Mycroft", 10, seed=0)  # deterministic


def test_front_end_names() -> None:
    assert hearing.frontend_settings("off") is None
    ns = hearing.frontend_settings("ns3")
    assert ns.noise_suppression and not ns.echo_cancellation and ns.ns_level == 3
    assert hearing.parse_frontends("off, ns1,ns1") == ["off", "ns1"]
    for bad in ("ns4", "agc", ""):
        with pytest.raises(ValueError):
            hearing.parse_frontends(bad)
    parser = argparse.ArgumentParser(prog="appliance")
    add_bench_parser(parser.add_subparsers(dest="command"))
    assert "hearing" in BENCHES and not BENCHES["hearing"].in_all
    args = parser.parse_args(["bench", "hearing", "--limit", "3"])
    assert args.set == "tune" and args.frontends == "off,ns1,ns2,ns3"


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def test_cli_tiny_run_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "hearing.json"
    cmd = [sys.executable, "-m", "appliance", "bench", "hearing", "--set", "tune", "--limit", "2"]
    cmd += ["--frontends", "off,ns1", "--wake-words", "hey_mycroft", "--wake-frontends", "off"]
    cmd += ["--wake-per-voice", "1", "--negatives-minutes", "0.5"]
    cmd += ["--cache", str(tmp_path / "clips"), "--out", str(out)]
    run = run_cli(cmd, timeout=400, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "question 2/2" in run.stderr and "wake hey_mycroft" in run.stderr
    r = json.loads(out.read_text())
    assert r["bench"] == "hearing" and r["set"] == "tune" and r["errors"] == 0
    assert len(r["wer_rows"]) == 2 * len(hearing.CONDITIONS) * 2
    for fe in ("off", "ns1"):
        s = r["wer"][fe]
        assert 0 <= s["clean"]["wer_percent"] <= 100 and s["clean"]["words"] > 4
        assert _number(s["noisy"]["wer_percent"]) and len(s["by_condition"]) == 9
    # Clean speech is mostly heard right (a broken front end or ASR gives ~100 %).
    assert r["wer_clean_percent_off"] < 60
    assert 0 < r["frontend_cpu_us_per_10ms"]["ns1"] < 1000 and r["ns_cpu_percent_core"] < 10
    assert r["best_frontend"] in ("off", "ns1")
    assert len(r["wake_rows"]) == len(VOICES)
    assert 0 <= r["wake_detect_percent"] <= 100 and r["wake_word"] == "hey_mycroft"
    # The clean clips of the kiosk's own voice and plain US English must wake it.
    assert all(
        w["detected"] for w in r["wake_rows"] if w["voice"] in ("piper",) and w["noise"] is None
    )
    assert r["negatives_minutes"] >= 0.5 and _number(r["false_wakes_per_hour"])
    assert len(r["false_wake_events"]) == r["false_wakes"]  # one event per false wake
    # The pipeline's transcript check ran on every detection and every false wake.
    assert all(isinstance(w["admitted"], bool) for w in r["wake_rows"])
    assert all(w["admitted"] <= w["detected"] for w in r["wake_rows"])
    assert all(isinstance(e["admitted"], bool) for e in r["false_wake_events"])
    assert _number(r["wake_admitted_percent"]) and _number(r["false_wakes_admitted_per_hour"])
    assert r["wake_admitted_percent"] <= r["wake_detect_percent"]
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Hearing bench: set `tune` (2 of ")
    assert "| off |" in md and "| hey_mycroft/off |" in md and "False wakes" in md
