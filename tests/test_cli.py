import subprocess
import sys
from pathlib import Path

from appliance.models_manifest import find_manifest, load_manifest


def _models_verify(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "models", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_models_verify_checks_every_manifest_file() -> None:
    run = _models_verify()
    n = len(load_manifest())
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{n} of {n} model files verified" in run.stdout
    assert run.stdout.count("OK   ") == n


def test_models_verify_fails_on_a_bad_hash(tmp_path: Path) -> None:
    good = load_manifest()["vad"].sha256
    bad = tmp_path / "manifest.toml"
    bad.write_text(find_manifest().read_text().replace(good, "0" * 64))
    run = _models_verify({"PATH": "/usr/bin:/bin", "APPLIANCE_MODELS_MANIFEST": str(bad)})
    assert run.returncode == 1
    assert "FAIL vad" in run.stdout and "sha256 mismatch" in run.stdout


def test_models_prepare_derives_the_ort_files_into_the_configured_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[inference]\ncache_dir = "{cache}"\n')
    argv = [sys.executable, "-m", "appliance", "models", "prepare", "--config", str(cfg)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    ort_ids = [mf.id for mf in load_manifest().values() if mf.path.endswith(".ort")]
    assert ort_ids  # the Moonshine encoder and decoder
    for model_id in ort_ids:
        line = next(ln for ln in run.stdout.splitlines() if f" {model_id} " in ln + " ")
        assert line.startswith("OK") and str(cache) in line and line.endswith(".onnx")
    assert len(list(cache.glob("*.onnx"))) == len(ort_ids)
