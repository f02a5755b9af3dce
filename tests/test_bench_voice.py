"""`appliance bench voice` on 2 spoken questions (1 barge-in): it runs end to end on the
private PulseAudio devices and writes every promised field. No timing is asserted (figures come
from the bench, not from tests); the pure measurement helpers are checked on synthetic signals.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import run_cli

from appliance.bench.pulse import missing_tools
from appliance.bench.voice import (
    bargein_stop_index,
    dropped_blocks,
    first_chunk_sources,
    first_loud,
    last_loud,
)
from appliance.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
RATE = 1000  # helpers take the rate as a parameter; a small one keeps the arrays short


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_loud_edges_and_bargein_stop_on_a_synthetic_speaker() -> None:
    spk = np.zeros(5 * RATE, np.float32)
    spk[1000:3000] = 0.2  # reply playing 1.0-3.0 s, short pause, then the next reply
    spk[3100:3200] = 0.2  # a 0.1 s pause is speech, not a stop
    spk[4000:4500] = 0.2  # the reply to the barge-in, after 0.8 s of silence
    assert first_loud(spk) == 1000 and first_loud(spk, 3000) == 3100
    assert last_loud(spk) == 4499
    assert bargein_stop_index(spk, 2500, RATE) == 3199
    assert bargein_stop_index(spk, 3700, RATE) is None  # nothing was playing any more
    assert first_loud(np.zeros(10, np.float32)) is None


def test_dropped_blocks_reads_audio_counters_only() -> None:
    store_only = "appliance_store_dropped_total 3.0\n"
    assert dropped_blocks(store_only) == (None, None)
    text = "# HELP x\nappliance_audio_dropped_blocks_total 2.0\n" + store_only
    assert dropped_blocks(text) == (2.0, "appliance_audio_dropped_blocks_total")


def test_first_chunk_sources_count_the_replies_between_two_scrapes() -> None:
    m = Metrics()
    m.reply_first_chunk.labels(source="synthesized").inc()
    before = m.render().decode()
    m.reply_first_chunk.labels(source="cache").inc(3)
    m.reply_first_chunk.labels(source="synthesized").inc()
    after = m.render().decode()
    assert first_chunk_sources(before, after) == {"cache": 3, "synthesized": 1}
    assert first_chunk_sources(after, after) == {"cache": 0, "synthesized": 0}


@pytest.mark.skipif(bool(missing_tools()), reason="PulseAudio tools not installed")
def test_bench_voice_two_questions_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "voice.json"
    run = run_cli(
        [sys.executable, "-m", "appliance", "bench", "voice", "--questions", "2",
         "--bargeins", "1", "--voice-llm", "scripted", "--out", str(out)],
        timeout=240, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert out.exists(), run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "failed" not in report, report.get("failed")
    assert report["bench"] == "voice" and report["llm"] == "scripted server"
    assert report["machine"]["cores"] >= 1
    qs = report["questions"]
    assert len(qs) == 2 and report["questions_asked"] == 2
    for q in qs:
        assert q["transcript"] and q["reply"], q
        assert q["outcome"] == "ok", q  # a fallback reply is counted as an error
        assert _number(q["voice_to_voice_ms"]), q
        assert _number(q["timings"]["asr_final_ms"]), q
    # The first FAQ question is understood and answered from the FAQ (opening hours).
    assert "open" in qs[0]["transcript"].lower(), qs[0]
    assert "open" in qs[0]["reply"].lower(), qs[0]
    assert "bargein_ms" in qs[0]
    for key in ("voice_to_voice_p50_ms", "voice_to_voice_p95_ms", "asr_rtf", "tts_rtf"):
        assert _number(report[key]), key
    assert report["voice_to_voice_p95_ms"] >= report["voice_to_voice_p50_ms"]
    assert _number(report["loop_lag_p99_ms"]) and report["loop_lag_samples"] > 0
    assert "bargein_p95_ms" in report and "dropped_blocks" in report
    assert report["dropped_blocks"] is None or _number(report["dropped_blocks"])
    assert {t["field"] for t in report["targets"]} >= {
        "voice_to_voice_p50_ms",
        "bargein_p95_ms",
        "loop_lag_p99_ms",
        "dropped_blocks",
    }
    assert report["errors"] == 0, [q["errors"] for q in qs]
    # The usual replies' speech was made before the first question (--warm-replies on): the
    # opening hours answer starts from it.
    assert report["reply_first_chunk"].get("cache", 0) >= 1, report["reply_first_chunk"]
