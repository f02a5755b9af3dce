"""Derived ONNX forms of the shipped .ort ASR files: same results, cached, and a safe fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from voicefixtures import SETTINGS, manifest, question_16k  # noqa: F401  (fixture)

from appliance.inference import InferenceSettings, create_session
from appliance.modelprep import PrepError, cache_dir, derived_onnx, derived_path, fast_session
from appliance.models_manifest import require
from appliance.voice.moonshine import MoonshineAsr, MoonshineTokenizer


def _ort_file(model_id: str) -> tuple[Path, str]:
    m = manifest()
    return require(m, model_id), m[model_id].sha256


def test_cache_dir_prefers_setting_then_systemd_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/appliance")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("/srv/models") == Path("/srv/models")
    assert cache_dir() == Path("/var/cache/appliance/models")
    monkeypatch.delenv("CACHE_DIRECTORY")
    assert cache_dir() == tmp_path / "kiosk-appliance" / "models"


def test_derived_once_then_reused(tmp_path: Path) -> None:
    src, sha = _ort_file("asr_encoder")
    out = derived_onnx(src, sha, tmp_path)
    assert out == derived_path(src, sha, tmp_path) and out.suffix == ".onnx"
    stamp = out.stat().st_mtime_ns
    assert derived_onnx(src, sha, tmp_path).stat().st_mtime_ns == stamp  # not derived again
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left behind
    # A different source hash (a new package version) gets its own file.
    assert derived_path(src, "0" * 64, tmp_path) != out


def test_derived_models_give_the_same_transcript(
    tmp_path: Path,
    question_16k: np.ndarray,  # noqa: F811
) -> None:
    """The folded graph computes the same thing: greedy decoding picks the same tokens."""
    tok = MoonshineTokenizer.from_file(require(manifest(), "asr_tokenizer"))
    models = {}
    for form in ("ort", "onnx"):
        sessions = []
        for model_id in ("asr_encoder", "asr_decoder"):
            src, sha = _ort_file(model_id)
            path = src if form == "ort" else derived_onnx(src, sha, tmp_path)
            sessions.append(create_session(path, SETTINGS, name=model_id)[0])
        models[form] = MoonshineAsr(sessions[0], sessions[1], tok)
    a = models["ort"].transcribe(question_16k)
    b = models["onnx"].transcribe(question_16k)
    assert a.text and b.text == a.text and b.tokens == a.tokens


def test_unwritable_cache_falls_back_to_the_ort_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    src, sha = _ort_file("asr_encoder")
    with pytest.raises(PrepError, match="cannot derive"):
        derived_onnx(src, sha, blocker / "models")
    settings = InferenceSettings(providers="cpu", cache_dir=str(blocker / "models"))
    with caplog.at_level(logging.WARNING):
        sess, _ = fast_session(src, sha, settings, name="asr_encoder")
    assert isinstance(sess, ort.InferenceSession)
    assert "loading the ORT file instead" in caplog.text


def test_corrupt_cache_file_is_removed_and_the_ort_file_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, sha = _ort_file("asr_encoder")
    bad = derived_path(src, sha, tmp_path)
    bad.write_bytes(b"not an onnx model")
    settings = InferenceSettings(providers="cpu", cache_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        sess, _ = fast_session(src, sha, settings, name="asr_encoder")
    assert sess.get_inputs()[0].name == "input_values"
    assert not bad.exists() and "removed" in caplog.text
    # The next start derives a good one again.
    assert fast_session(src, sha, settings, name="asr_encoder")[0] is not None
    assert bad.exists()
