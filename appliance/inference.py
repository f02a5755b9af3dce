"""The one place that creates onnxruntime sessions: provider choice, threads, CPU fallback.

A kiosk must boot deaf-proof: an accelerator that is configured but absent or broken costs
speed, never the voice, so session creation falls back to the CPU provider with a log line.
A provider name that onnxruntime has never heard of is a config typo and stays an error.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, TypeVarTuple, Unpack

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import trio

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
# Preference order for "auto": the fastest accelerator this onnxruntime build has, then CPU.
AUTO_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
)
ALIASES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
}


class ProviderError(ValueError):
    """The provider setting names providers this onnxruntime build does not have."""

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = list(missing)


@dataclass(frozen=True)
class InferenceSettings:
    providers: str = "auto"  # "auto" | "cpu" | comma list of ORT provider names (or aliases)
    intra_op_threads: int = 0  # 0 = pick for this box, see resolve_threads()
    inter_op_threads: int = 1
    # Busy-waiting worker threads burn a core that the LLM server and the other models need
    # on a small box; measured on 2 cores, spinning made ASR slower (RTF 0.19 vs 0.17).
    allow_spinning: bool = False
    cache_dir: str = ""  # derived model files (appliance/modelprep.py); "" = the default place


def resolve_threads(requested: int, cpu_count: int | None) -> int:
    """0 -> min(4, cores): beyond ~4 threads these small models gain little, and the
    LLM server and the other stages share the CPU."""
    if requested < 0:
        raise ValueError(f"intra_op_threads must be >= 0, got {requested}")
    if requested:
        return requested
    return max(1, min(4, cpu_count or 1))


def _canonical(name: str) -> str:
    return ALIASES.get(name.lower(), name)


def choose_providers(setting: str, available: Sequence[str]) -> list[str]:
    """Providers to ask onnxruntime for, best first, always including CPU. Pure.

    `auto` takes the accelerators present (TensorRT, CUDA, OpenVINO, CoreML, DirectML);
    `cpu` is CPU only; otherwise a comma list whose every entry must be available.
    """
    s = setting.strip()
    if s.lower() == "auto":
        chosen = [p for p in AUTO_ORDER if p in available]
    else:
        names = [_canonical(n.strip()) for n in s.split(",") if n.strip()]
        if not names:
            raise ProviderError(f"empty provider setting {setting!r}", [])
        missing = [n for n in names if n not in available]
        if missing:
            raise ProviderError(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"build; available: {', '.join(available)} (or 'auto' / 'cpu')",
                missing,
            )
        chosen = list(dict.fromkeys(names))  # dedupe, keep the user's order
    if CPU not in chosen:
        chosen.append(CPU)  # the fallback for ops an accelerator does not implement
    return chosen


def session_options(settings: InferenceSettings) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = resolve_threads(settings.intra_op_threads, os.cpu_count())
    so.inter_op_num_threads = max(1, settings.inter_op_threads)
    so.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    so.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not our log
    return so


class SessionError(RuntimeError):
    """No provider, not even CPU, could load the model file."""


def create_session(
    path: Path | bytes,
    settings: InferenceSettings,
    *,
    name: str,
    initializers: Mapping[str, npt.NDArray[Any]] | None = None,
) -> tuple[ort.InferenceSession, list[str]]:
    """Load `path` (or a serialized model) with the configured providers; fall back to CPU if
    they fail.

    `initializers` supply the data of the model's initializers marked as external data, by
    name: onnxruntime copies them at load, so a model built in memory need not serialise its
    weights into the protobuf nor write them to a file.

    Returns the session and the providers it actually uses. Blocking (model load): call via
    trio.to_thread.run_sync from async code.
    """
    available = ort.get_available_providers()
    try:
        providers = choose_providers(settings.providers, available)
    except ProviderError as e:
        known = set(ort.get_all_providers())
        typos = [m for m in e.missing if m not in known]
        if typos or not e.missing:
            raise
        log.warning("%s: %s; using %s", name, e, CPU)
        providers = [CPU]
    so = session_options(settings)
    if initializers:
        # The OrtValues borrow the arrays' memory, which must live until the session is built.
        values = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in initializers.values()
        ]
        so.add_external_initializers(list(initializers), values)
    model = str(path) if isinstance(path, Path) else path
    what = str(path) if isinstance(path, Path) else "the in-memory model"
    try:
        sess = ort.InferenceSession(model, sess_options=so, providers=providers)
    except Exception as e:
        if providers == [CPU]:
            raise SessionError(f"{name}: cannot load {what}: {e}") from e
        log.warning("%s: providers %s failed (%s); falling back to %s", name, providers, e, CPU)
        try:
            sess = ort.InferenceSession(model, sess_options=so, providers=[CPU])
        except Exception as e2:
            raise SessionError(f"{name}: cannot load {what}: {e2}") from e2
    used = list(sess.get_providers())
    shown = path.name if isinstance(path, Path) else what
    log.info("%s: loaded %s with %s", name, shown, ", ".join(used))
    return sess, used


M = TypeVar("M")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class ModelRunner(Generic[M]):
    """A loaded model plus a CapacityLimiter(1): each model runs on one worker thread at a
    time (an ORT session is thread-safe, but two concurrent runs of one model on a small box
    only fight over the same cores and both finish late)."""

    def __init__(self, model: M, *, name: str, providers: Sequence[str] = ()) -> None:
        self.model = model
        self.name = name
        self.providers = list(providers)
        self.limiter = trio.CapacityLimiter(1)
        self.last_used = -math.inf  # trio time a visitor's run last ended (background waits)

    @property
    def busy(self) -> bool:
        """A run holds the model or waits for it."""
        return self.limiter.borrowed_tokens > 0 or self.limiter.statistics().tasks_waiting > 0

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts, background: bool = False) -> T:
        """Run blocking `fn(*args)` on a worker thread. Cancellation waits for the call to
        return (ORT cannot be interrupted), so long calls should poll a stop flag.
        `background`: work nobody waits for, which leaves `last_used` as it was."""
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            if not background:
                self.last_used = trio.current_time()
