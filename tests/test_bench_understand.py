"""`appliance bench understand`: the clip generator (deterministic, SNR on target), the scorer on
hand-made rows, and one tiny run through the CLI (2 questions of the tune set, scripted LLM)
that writes the promised JSON and Markdown. No timing is asserted.
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

from appliance.bench import voices
from appliance.bench.understand_score import (
    VERDICTS,
    Question,
    breakdown,
    derive_kind,
    fact_present,
    load_set,
    markdown_report,
    normalize_words,
    select,
    summarize,
    verdict,
    word_errors,
)
from appliance.config import default_faq_path
from appliance.demo import read_wav, write_wav

REPO = Path(__file__).resolve().parents[1]
MUSEUM = Path(default_faq_path())


# -- the generator ---------------------------------------------------------------------------------


def test_plans_are_deterministic_and_spread_over_voices_and_noise() -> None:
    assert voices.plan_clip("Where is the cafe?", 5, seed=1) == voices.plan_clip(
        "Where is the cafe?", 5, seed=1
    )
    assert voices.plan_clip("Where is the cafe?", 5, seed=1) != voices.plan_clip(
        "Where is the cafe?", 5, seed=2
    )
    assert voices.slots(50, 3) == voices.slots(50, 3) and sorted(voices.slots(50, 3)) == list(
        range(50)
    )
    n = 2 * len(voices.VOICES) * len(voices.NOISES) * len(voices.SNRS_DB)
    plans = [voices.plan_clip("Hello there.", k) for k in range(n)]
    assert {p.voice for p in plans} == set(voices.VOICES)
    noisy = [p for p in plans if p.noise is not None]
    assert len(noisy) == len(plans) // 2  # half of the clips are noisy
    combos = {(p.noise, p.snr_db) for p in noisy}
    assert combos == {(n, s) for n in voices.NOISES for s in voices.SNRS_DB}
    for p in plans:
        assert 0.85 <= p.speed <= 1.2 and p.lead_s > 0 and p.trail_s > 0.5
        assert (p.noise is None) == (p.snr_db is None)
    # A follow-up's previous question: the same visitor (voice, noise), its own timing.
    a, b = voices.plan_clip("and for kids?", 9, 0), voices.plan_clip("How much?", 9, 0, part=1)
    assert (a.voice, a.noise, a.snr_db) == (b.voice, b.noise, b.snr_db)


def test_same_seed_same_samples_fresh_or_cached(tmp_path: Path) -> None:
    specs = [
        voices.ClipSpec("Where can I park my car?", "en-gb", 1.1, 0.4, 0.9, "babble", 10.0, 7),
        voices.ClipSpec("Is there a cafe?", "piper", 0.9, 0.3, 1.0, "music", 5.0, 11),
        voices.ClipSpec("Can I bring my dog?", "en-us+f3", 1.0, 0.5, 0.8, "hum", 20.0, 3),
    ]
    for spec in specs:
        first, cached1 = voices.make_clip(voices.Synth(), spec, tmp_path / "a")
        second, cached2 = voices.make_clip(voices.Synth(), spec, tmp_path / "b")
        again, cached3 = voices.make_clip(voices.Synth(), spec, tmp_path / "a")
        assert not cached1 and not cached2 and cached3
        assert first.dtype == np.float32 and len(first) > voices.RATE
        np.testing.assert_array_equal(first, second)  # two fresh renderings
        np.testing.assert_array_equal(first, again)  # and the cached file
        expected = spec.lead_s + spec.trail_s
        assert len(first) / voices.RATE > expected + 0.5
    # Another noise seed: other noise, the same speech.
    other = voices.ClipSpec("Where can I park my car?", "en-gb", 1.1, 0.4, 0.9, "babble", 10.0, 8)
    a = voices.make_clip(voices.Synth(), specs[0], tmp_path / "a")[0]
    b = voices.make_clip(voices.Synth(), other, tmp_path / "a")[0]
    assert len(a) == len(b) and not np.array_equal(a, b)
    assert len(list((tmp_path / "a").glob("*.wav"))) == 4


@pytest.mark.parametrize("kind", voices.NOISES)
def test_mixing_hits_the_target_snr(kind: str, tmp_path: Path) -> None:
    synth = voices.Synth()
    speech = synth.speak("What time does the museum open on Sunday?", "en-gb", 1.0)
    lead, trail = 8000, 16000
    padded = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
    span = slice(lead, lead + len(speech))
    noise = voices.make_noise(kind, len(padded), seed=5, speak=synth.speak)
    assert len(noise) == len(padded) and float(np.sqrt(np.mean(noise**2))) > 0.01
    np.testing.assert_array_equal(noise, voices.make_noise(kind, len(padded), 5, synth.speak))
    for target in voices.SNRS_DB:
        mix = voices.mix_at_snr(padded, noise, target, span)
        np.testing.assert_allclose(mix.audio, mix.speech + mix.noise, atol=1e-6)
        assert abs(voices.snr_db(mix.speech, mix.noise, span) - target) < 0.5
        assert float(np.max(np.abs(mix.audio))) <= 0.95 + 1e-6
        # ... still after the PCM16 file the bench caches (quantisation noise is ~-90 dB).
        path = tmp_path / f"{kind}{target}.wav"
        write_wav(path, mix.audio, voices.RATE)
        stored = read_wav(path)
        assert abs(voices.snr_db(mix.speech, stored - mix.speech, span) - target) < 0.5
    # Too loud a sum is scaled down as a whole: the SNR stays.
    loud = voices.mix_at_snr(padded * 1.9, noise * 3, 5.0, span)
    assert abs(voices.snr_db(loud.speech, loud.noise, span) - 5.0) < 0.5
    assert float(np.max(np.abs(loud.audio))) <= 0.95 + 1e-6


def test_mixing_refuses_mismatched_or_silent_input() -> None:
    with pytest.raises(ValueError):
        voices.mix_at_snr(np.ones(10, np.float32), np.ones(9, np.float32), 10, slice(0, 9))
    with pytest.raises(ValueError):
        voices.mix_at_snr(np.zeros(10, np.float32), np.ones(10, np.float32), 10, slice(0, 10))
    with pytest.raises(ValueError):
        voices.make_noise("rain", 100, 0)


# -- the scorer ------------------------------------------------------------------------------------


def test_facts_match_case_spacing_and_number_formats() -> None:
    assert fact_present("closed on Mondays", "We are CLOSED  on\nmondays.")
    assert fact_present("9:30", "We open at 9.30 every day.")
    assert fact_present("18:00", "On Sundays we close at 6 PM.")  # both spoken: "six PM"
    assert fact_present("6", "Children pay €6.")
    assert not fact_present("6", "We close at 16:00.")  # not inside a longer number
    assert fact_present("€12", "An adult ticket costs €12.")
    assert fact_present("1 January", "Closed on 1  January and 25 December.")
    assert fact_present("10:00 to 16:00", "On holidays 10:00 to 16:00.")
    assert fact_present("linden2024", "The password is linden2024.")
    assert not fact_present("ATM", "There is a cash machine.")


def test_word_error_rate_normalises_case_punctuation_numbers_contractions() -> None:
    assert word_errors("what's the wifi password?", "What is the Wi-Fi password") == (0, 5)
    assert normalize_words("Two tickets at 9:30, OK?") == normalize_words(
        "two tickets at nine thirty okay"
    )
    assert word_errors("can I bring my dog", "can I bring my dog") == (0, 5)
    assert word_errors("can I bring my dog", "") == (5, 5)
    assert word_errors("where is the cafe", "where is the café please") == (1, 4)
    assert word_errors("", "hello") == (1, 0)


def test_verdicts_for_every_outcome() -> None:
    # Answerable: the facts decide between correct and wrong; the rest is named.
    for kind in ("faq", "followup"):
        assert verdict(kind, "faq", True) == "correct"
        assert verdict(kind, "llm", True) == "correct"
        assert verdict(kind, "faq", False) == "wrong"
        assert verdict(kind, "llm", False) == "wrong"
        assert verdict(kind, "chat", None) == "wrong"
        assert verdict(kind, "clarify", None) == "clarify"
        assert verdict(kind, "decline", None) == "decline"
        for nothing in ("say_again", "none", "interrupted"):
            assert verdict(kind, nothing, None) == "missed"
    # Off-topic: only a decline is right; answering is wrong.
    assert verdict("offtopic", "decline", None) == "correct"
    assert verdict("offtopic", "llm", None) == "wrong"
    assert verdict("offtopic", "faq", None) == "wrong"
    assert verdict("offtopic", "clarify", None) == "clarify"
    assert verdict("offtopic", "say_again", None) == "missed"
    # Chat: only a chat reply.
    assert verdict("chat", "chat", None) == "correct"
    assert verdict("chat", "llm", None) == "wrong"
    assert verdict("chat", "decline", None) == "decline"
    assert verdict("chat", "none", None) == "missed"
    # Bad: the accepted kinds; an accepted answer must still hold the facts.
    assert verdict("bad", "say_again", None, ["say_again", "decline"]) == "correct"
    assert verdict("bad", "decline", None, ["say_again", "decline"]) == "correct"
    assert verdict("bad", "llm", None, ["say_again", "decline"]) == "wrong"
    assert verdict("bad", "faq", True, ["faq", "clarify"]) == "correct"
    assert verdict("bad", "faq", False, ["faq", "clarify"]) == "wrong"
    assert verdict("bad", "clarify", None, ["faq", "clarify"]) == "correct"
    assert verdict("bad", "decline", None, ["faq", "clarify"]) == "decline"
    assert verdict("bad", "none", None, ["faq", "clarify"]) == "missed"
    with pytest.raises(ValueError):
        verdict("quiz", "faq", True)


def test_reply_kind_derived_while_reply_done_has_none() -> None:
    assert derive_kind("faq", "ok", "ok") == "faq"
    assert derive_kind("local", "ok", "ok") == "llm"
    assert derive_kind("local", "truncated", "truncated") == "llm"
    assert derive_kind(None, "fallback", "fallback") == "decline"
    assert derive_kind(None, "blocked", "blocked") == "decline"
    assert derive_kind(None, None, "no_words") == "say_again"
    assert derive_kind(None, None, "asr_timeout") == "say_again"
    assert derive_kind(None, None, "interrupted") == "interrupted"
    assert derive_kind(None, None, None) == "none"


def _row(kind: str, v: str, noisy: bool, errs: int, words: int, v2v: float | None) -> Any:
    return {
        "kind": kind,
        "category": "c",
        "verdict": v,
        "noisy": noisy,
        "noise": "babble" if noisy else "clean",
        "wer_errors": errs,
        "wer_words": words,
        "voice_to_voice_ms": v2v,
    }


def test_summaries_count_verdicts_and_keep_clean_and_noisy_wer_apart() -> None:
    rows = [
        _row("faq", "correct", False, 1, 10, 400.0),
        _row("faq", "wrong", True, 5, 10, 500.0),
        _row("faq", "clarify", False, 0, 10, 300.0),
        _row("offtopic", "correct", True, 3, 10, 900.0),
        _row("chat", "missed", False, 2, 5, None),
        _row("faq", "decline", False, 0, 5, 450.0),
        {"kind": "faq", "verdict": None, "errors": ["timeout"]},  # the harness failed on it
    ]
    s = summarize(rows)
    assert s["n"] == 6 and s["not_run"] == 1
    assert [s[v] for v in VERDICTS] == [2, 1, 1, 1, 1]
    assert s["correct_percent"] == pytest.approx(33.3)
    assert s["wer_clean_percent"] == pytest.approx(100 * 3 / 30, abs=0.05)
    assert s["wer_noisy_percent"] == pytest.approx(100 * 8 / 20, abs=0.05)
    assert s["voice_to_voice_n"] == 5 and s["voice_to_voice_p50_ms"] == 450.0
    assert s["voice_to_voice_p95_ms"] >= s["voice_to_voice_p50_ms"]
    by_kind = breakdown(rows, "kind")
    assert set(by_kind) == {"faq", "offtopic", "chat"}
    assert by_kind["faq"]["n"] == 4 and by_kind["offtopic"]["correct"] == 1
    assert summarize([])["n"] == 0 and summarize([])["voice_to_voice_p50_ms"] is None


def test_sets_load_and_limit_spreads_over_the_set(tmp_path: Path) -> None:
    tune = load_set("tune", MUSEUM)
    assert tune.name == "tune" and len(tune.questions) > 100
    assert {q.kind for q in tune.questions} == {"faq", "followup", "offtopic", "chat", "bad"}
    assert set(tune.sites) >= {"museum", "hotel"} and tune.sites["hotel"].is_file()
    picked = select(tune.questions, limit=10)
    assert len(picked) == 10 and {q.site for _, q in picked} == {"museum", "hotel"}
    assert [i for i, _ in picked] == sorted(i for i, _ in picked)
    hotel = select(tune.questions, site="hotel")
    assert hotel and all(q.site == "hotel" for _, q in hotel)
    assert len(select(tune.questions)) == len(tune.questions)
    bad = tmp_path / "mine.toml"
    bad.write_text('[[q]]\nid = "x1"\nsite = "museum"\nkind = "quiz"\ntext = "hi"\n')
    with pytest.raises(ValueError, match="kind"):
        load_set(str(bad), MUSEUM)
    bad.write_text('[[q]]\nid = "x1"\nsite = "museum"\nkind = "faq"\ntext = "hours?"\n')
    with pytest.raises(ValueError, match="facts"):
        load_set(str(bad), MUSEUM)
    own = tmp_path / "own.toml"
    own.write_text(
        '[sites]\nzoo = "zoo.md"\n[[q]]\nid = "z1"\nsite = "zoo"\nkind = "chat"\ntext = "hi"\n'
    )
    got = load_set(str(own), MUSEUM)
    assert got.name == "own" and got.sites["zoo"] == tmp_path / "zoo.md"
    assert got.questions == (Question("z1", "zoo", "chat", "hi"),)


# -- end to end ------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.parametrize("frontend", ["off", "ns2"])
def test_cli_tiny_run_writes_json_and_markdown(tmp_path: Path, frontend: str) -> None:
    """Also with the microphone's noise suppression on (`[audio]` of `--config`): the clips go
    through it before the pipeline, as the box's own microphone's audio would."""
    out = tmp_path / "understand.json"
    cmd = [sys.executable, "-m", "appliance", "bench", "understand", "--set", "tune"]
    cmd += ["--limit", "2", "--llm", "scripted", "--first-token-ms", "20", "--token-ms", "2"]
    cmd += ["--cache", str(tmp_path / "clips"), "--out", str(out)]
    if frontend != "off":
        config = tmp_path / "ns.toml"
        config.write_text(f"[audio]\nnoise_suppression = true\nns_level = {frontend[2:]}\n")
        cmd += ["--config", str(config)]
    run = run_cli(
        cmd,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "clip 1/" in run.stderr and "question 2/2" in run.stderr
    report = json.loads(out.read_text())
    assert report["bench"] == "understand" and report["set"] == "tune"
    assert report["questions_asked"] == 2 and report["errors"] == 0
    assert report["llm"].startswith("scripted") and report["frontend"] == frontend
    for key in ("correct", "clarify", "decline", "wrong", "missed"):
        assert isinstance(report[key], int)
    assert sum(report[k] for k in ("correct", "clarify", "decline", "wrong", "missed")) == 2
    for group in ("overall", "by_kind", "by_site", "by_noise", "by_voice", "by_category"):
        assert isinstance(report[group], dict) and report[group], group
    assert report["overall"]["n"] == 2
    assert report["wer_clean_percent"] is None or _number(report["wer_clean_percent"])
    assert _number(report["seconds_per_question"])
    rows = report["rows"]
    assert [r["id"] for r in rows] == [
        q.id for _, q in select(load_set("tune", MUSEUM).questions, limit=2)
    ]
    for r in rows:
        assert r["verdict"] in VERDICTS and r["transcript"], r
        assert r["reply"] and r["reply_kind"] and r["kind_source"] in ("reply.done", "derived")
        assert isinstance(r["facts_found"], list) and r["wer_words"] > 0
        assert _number(r["voice_to_voice_ms"]) and "voice_to_voice_ms" in r["timings"]
        assert r["clip"]["voice"] in voices.VOICES and r["noise"] in ("clean", *voices.NOISES)
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Understanding bench: set `tune`") and "| kind |" in md
    assert markdown_report(report) == md.rstrip("\n") or markdown_report(report) == md
    # The clips (2 questions, the warm-up) are in the cache the run was given.
    assert len(list((tmp_path / "clips").glob("*.wav"))) >= 3


def test_bench_all_leaves_understand_out() -> None:
    import argparse

    from appliance.bench import BENCHES, add_bench_parser

    parser = argparse.ArgumentParser(prog="appliance")
    add_bench_parser(parser.add_subparsers(dest="command"))
    assert "understand" in BENCHES and not BENCHES["understand"].in_all
    args = parser.parse_args(["bench", "understand", "--set", "tune", "--limit", "3"])
    assert args.set == "tune" and args.limit == 3 and args.llm == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "all", "--skip", "understand"])
