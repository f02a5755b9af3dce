"""Session factory (provider choice, CPU fallback), ModelRunner, and the model manifest."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import trio
import trio.testing

from appliance.inference import (
    CPU,
    InferenceSettings,
    ModelRunner,
    ProviderError,
    SessionError,
    choose_providers,
    create_session,
    resolve_threads,
)
from appliance.models_manifest import (
    ENV_VAR,
    ModelError,
    ModelFile,
    load_manifest,
    locate,
    verify,
)

CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
AZURE = "AzureExecutionProvider"
DML = "DmlExecutionProvider"  # Windows-only: never available on the Linux boxes we test on

# --- choose_providers (pure) -------------------------------------------------------------


def test_auto_cpu_only_box() -> None:
    assert choose_providers("auto", [AZURE, CPU]) == [CPU]


def test_auto_prefers_accelerators_in_order_and_ends_with_cpu() -> None:
    available = [CPU, AZURE, CUDA, TRT, "OpenVINOExecutionProvider"]
    assert choose_providers("auto", available) == [TRT, CUDA, "OpenVINOExecutionProvider", CPU]


def test_cpu_setting_and_aliases() -> None:
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers(" CUDA ", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("tensorrt,cuda,trt", [TRT, CUDA, CPU]) == [TRT, CUDA, CPU]


def test_explicit_list_keeps_user_order() -> None:
    assert choose_providers(f"{CPU},{CUDA}", [CUDA, CPU]) == [CPU, CUDA]


def test_unknown_provider_error_lists_available() -> None:
    with pytest.raises(ProviderError) as ei:
        choose_providers("cuda,rocm", [AZURE, CPU])
    msg = str(ei.value)
    assert CUDA in msg and "rocm" in msg
    assert f"{AZURE}, {CPU}" in msg
    assert ei.value.missing == [CUDA, "rocm"]


def test_empty_setting_is_an_error() -> None:
    with pytest.raises(ProviderError):
        choose_providers(" , ", [CPU])


def test_resolve_threads() -> None:
    assert resolve_threads(3, 16) == 3
    assert resolve_threads(0, 2) == 2
    assert resolve_threads(0, 64) == 4
    assert resolve_threads(0, None) == 1
    with pytest.raises(ValueError):
        resolve_threads(-1, 2)


# --- create_session ----------------------------------------------------------------------


def _vad_path() -> Path:
    return verify(load_manifest()["vad"], check_hash=False)


def test_create_session_cpu() -> None:
    sess, used = create_session(_vad_path(), InferenceSettings(providers="cpu"), name="vad")
    assert used == [CPU]
    out, state = sess.run(
        None,
        {
            "input": np.zeros((1, 576), np.float32),
            "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, np.int64),
        },
    )
    assert out.shape == (1, 1) and state.shape == (2, 1, 128)


def test_absent_provider_falls_back_to_cpu_with_log(caplog: pytest.LogCaptureFixture) -> None:
    assert DML not in ort.get_available_providers()
    caplog.set_level(logging.WARNING, logger="appliance.inference")
    settings = InferenceSettings(providers=f"{DML},{CUDA}")
    _, used = create_session(_vad_path(), settings, name="vad")
    assert used[-1] == CPU
    assert DML not in used
    assert any(DML in r.getMessage() and "vad" in r.getMessage() for r in caplog.records)


def test_misspelt_provider_is_an_error() -> None:
    with pytest.raises(ProviderError, match="CUDAExecutionProvidr"):
        create_session(_vad_path(), InferenceSettings(providers="CUDAExecutionProvidr"), name="x")


def test_unloadable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(SessionError, match=r"broken: cannot load .*garbage\.onnx"):
        create_session(bad, InferenceSettings(providers="cpu"), name="broken")


# --- ModelRunner -------------------------------------------------------------------------


async def test_model_runner_runs_one_call_at_a_time() -> None:
    runner = ModelRunner(object(), name="m")
    started, release = threading.Event(), threading.Event()
    main_thread = threading.get_ident()
    seen: list[tuple[str, int]] = []

    def work(tag: str) -> str:
        seen.append((tag, threading.get_ident()))
        if tag == "first":
            started.set()
            assert release.wait(10)
        return tag.upper()

    results: dict[str, str] = {}

    async def call(tag: str) -> None:
        results[tag] = await runner.run(work, tag)

    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(call, "first")
            assert await trio.to_thread.run_sync(started.wait, 10)
            nursery.start_soon(call, "second")
            await trio.testing.wait_all_tasks_blocked()
            stats = runner.limiter.statistics()
            # The first call holds the only token; the second waits, not running beside it.
            assert stats.borrowed_tokens == 1 and stats.tasks_waiting == 1
            assert [t for t, _ in seen] == ["first"]
        finally:
            release.set()
    assert results == {"first": "FIRST", "second": "SECOND"}
    assert all(ident != main_thread for _, ident in seen)


# --- manifest ----------------------------------------------------------------------------

IDS = {
    "vad",
    "asr_encoder",
    "asr_decoder",
    "asr_tokenizer",
    "tts_voice",
    "tts_config",
    "llm_gguf",
    "embedder_weights",
    "embedder_vocab",
    "wake_hey_mycroft",
    "wake_okay_nabu",
    "wake_hey_jarvis",
    "wake_alexa",
}


def test_repo_manifest_lists_every_model_with_permissive_licence() -> None:
    m = load_manifest()
    assert set(m) == IDS
    assert {mf.licence for mf in m.values()} <= {"MIT", "Apache-2.0"}
    assert all(mf.source.startswith("https://") for mf in m.values())


def test_repo_manifest_matches_installed_files() -> None:
    for mf in load_manifest().values():
        path = verify(mf, check_hash=True)
        assert path.is_file() and path.stat().st_size == mf.size_bytes


def _fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelFile, Path]:
    """A copy of the VAD model inside an importable (never imported) package dir."""
    src = _vad_path()
    pkg = tmp_path / "site" / "fake_voice_pkg" / "data"
    pkg.mkdir(parents=True)
    dst = pkg / "model.onnx"
    shutil.copyfile(src, dst)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    mf = ModelFile(
        id="vad_copy",
        package="fake-voice-pkg",
        version="1.0",
        path="data/model.onnx",
        sha256=hashlib.sha256(src.read_bytes()).hexdigest(),
        licence="MIT",
        size_bytes=src.stat().st_size,
    )
    return mf, dst


def test_verify_good_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mf, dst = _fake_package(tmp_path, monkeypatch)
    assert locate(mf) == dst
    assert verify(mf) == dst


def test_verify_flipped_byte_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mf, dst = _fake_package(tmp_path, monkeypatch)
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    assert verify(mf, check_hash=False) == dst  # same size: only the hash can tell
    with pytest.raises(ModelError) as ei:
        verify(mf)
    msg = str(ei.value)
    assert msg.startswith("vad_copy: sha256 mismatch for ")
    assert str(dst) in msg and mf.sha256 in msg


def test_verify_missing_and_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mf, dst = _fake_package(tmp_path, monkeypatch)
    dst.write_bytes(dst.read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"vad_copy: size mismatch .*expected \d+, got \d+"):
        verify(mf)
    dst.unlink()
    with pytest.raises(ModelError, match=rf"vad_copy: file missing: .*{dst.name}"):
        verify(mf)


def test_package_not_installed() -> None:
    mf = ModelFile("x", "no-such-pkg-zz", "1", "a.bin", "0" * 64, "MIT", 1)
    with pytest.raises(ModelError, match="x: package no-such-pkg-zz==1 is not installed"):
        locate(mf)


ENTRY = """
[[model]]
id = "vad"
package = "silero-vad"
version = "6.2.3"
path = "data/silero_vad.onnx"
sha256 = "{sha}"
size_bytes = 10
licence = "MIT"
"""


def test_manifest_validation_errors(tmp_path: Path) -> None:
    p = tmp_path / "manifest.toml"
    p.write_text(ENTRY.format(sha="ab" * 32) * 2)
    with pytest.raises(ModelError, match="'vad' appears twice"):
        load_manifest(p)
    p.write_text(ENTRY.format(sha="xyz"))
    with pytest.raises(ModelError, match="'sha256' is not 64 hex digits"):
        load_manifest(p)
    p.write_text(ENTRY.format(sha="ab" * 32).replace('licence = "MIT"', ""))
    with pytest.raises(ModelError, match="'licence' must be a non-empty string"):
        load_manifest(p)
    p.write_text(ENTRY.format(sha="ab" * 32).replace("data/silero", "../silero"))
    with pytest.raises(ModelError, match="'path' must be relative"):
        load_manifest(p)
    p.write_text("model = [")
    with pytest.raises(ModelError, match="cannot read manifest"):
        load_manifest(p)


def test_manifest_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "m.toml"
    p.write_text(ENTRY.format(sha="AB" * 32))
    monkeypatch.setenv(ENV_VAR, str(p))
    m = load_manifest()
    assert list(m) == ["vad"] and m["vad"].sha256 == "ab" * 32
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "absent.toml"))
    with pytest.raises(ModelError, match=r"absent\.toml"):
        load_manifest()
