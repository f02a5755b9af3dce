"""ORT-format model files re-serialised as ONNX, so onnxruntime can optimise them at load.

Why: `moonshine-cpp` ships Moonshine as `.ort` files whose int8 weights are turned back into
float32 by Cast/Mul/Add nodes on *every* run, and onnxruntime does not re-optimise an
ORT-format model when it loads it. The ASR decoder spent ~40 of its ~45 ms per token there
(plus a transpose of the 32768 x 416 embedding for the output layer). The same graph loaded
as ONNX gets constant-folded once at load: a decoder step takes ~6 ms on 2 cores, for ~0.5 s
more load time and the float32 weights in memory (~+150 MB).

The derivation is offline and deterministic: onnxruntime loads the `.ort` file with every
optimisation off and writes its graph as ONNX; the `onnx` package then names the `If` node's
subgraphs, which onnxruntime writes unnamed and its own loader then refuses. The result is
cached (named after the source's sha256 and the onnxruntime version, written atomically), so
a box derives it once (`appliance models prepare`, run by setup) and every start loads it.
Any failure leaves the caller with the original file: slower, never broken.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from .inference import InferenceSettings, SessionError, create_session

if TYPE_CHECKING:
    import onnx

__all__ = ["PrepError", "cache_dir", "derived_onnx", "derived_path", "fast_session"]

log = logging.getLogger(__name__)

_APP = "kiosk-appliance"


class PrepError(RuntimeError):
    """A derived model could not be written (the original file is still usable)."""


def cache_dir(setting: str = "") -> Path:
    """Where derived models live: the setting, else systemd's CacheDirectory=
    ($CACHE_DIRECTORY), else $XDG_CACHE_HOME or ~/.cache."""
    if setting:
        return Path(setting).expanduser()
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "models"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / _APP / "models"


def derived_path(src: Path, sha256: str, directory: Path) -> Path:
    """The cache file for `src`: a new source file or onnxruntime version gets a new name."""
    return directory / f"{src.stem}-{sha256[:16]}-ort{ort.__version__}.onnx"


def derived_onnx(src: Path, sha256: str, directory: Path) -> Path:
    """The ONNX form of ORT-format `src` (whose verified hash is `sha256`), derived if absent.

    Blocking (seconds on first use). Raises PrepError when it cannot be derived or written."""
    out = derived_path(src, sha256, directory)
    if out.is_file():
        return out
    try:
        import onnx  # only needed for a derivation, never on a warm cache
    except ImportError as e:
        raise PrepError(f"the onnx package is missing: {e}") from e
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".derive-") as tmp:
            raw = Path(tmp) / "raw.onnx"
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.optimized_model_filepath = str(raw)
            so.add_session_config_entry("session.save_model_format", "ONNX")
            so.log_severity_level = 3
            ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
            model = onnx.load(str(raw))
            _name_subgraphs(model.graph, "main")
            fixed = Path(tmp) / "fixed.onnx"
            onnx.save(model, str(fixed))
            os.replace(fixed, out)  # same directory tree: atomic
    except Exception as e:  # ORT, onnx and the file system all raise their own kinds
        raise PrepError(f"cannot derive {out.name} from {src}: {e}") from e
    log.info("derived %s from %s", out, src.name)
    return out


def fast_session(
    src: Path, sha256: str, settings: InferenceSettings, *, name: str
) -> tuple[ort.InferenceSession, list[str]]:
    """`create_session` on the derived ONNX form of an `.ort` file, else on the file itself
    (other formats, or a derivation/load that failed: logged, and a bad cache file removed).
    Blocking."""
    if src.suffix == ".ort":
        try:
            path = derived_onnx(src, sha256, cache_dir(settings.cache_dir))
        except PrepError as e:
            log.warning("%s: %s; loading the ORT file instead (slower)", name, e)
        else:
            try:
                return create_session(path, settings, name=name)
            except SessionError as e:
                log.warning("%s: %s; removed, loading the ORT file instead", name, e)
                path.unlink(missing_ok=True)
    return create_session(src, settings, name=name)


def _name_subgraphs(graph: onnx.GraphProto, prefix: str) -> int:
    """Give every unnamed subgraph (If/Loop/Scan bodies) a unique name; returns the count."""
    import onnx

    count = 0
    for node in graph.node:
        for attr in node.attribute:
            if attr.type != onnx.AttributeProto.GRAPH:
                continue
            if not attr.g.name:
                attr.g.name = f"{prefix}/{node.name or node.op_type}/{attr.name}"
                count += 1
            count += _name_subgraphs(attr.g, attr.g.name)
    return count
