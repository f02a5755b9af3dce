"""`appliance doctor`: check everything a kiosk needs, say exactly what is wrong."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from .config import Config
from .knowledge import KnowledgeBase, parse_faq
from .llm.client import LLMError, probe
from .llm.local import LocalLLMError, find_local_model
from .service import endpoints_from_config, is_local_endpoint

__all__ = ["Check", "run_checks"]


@dataclass
class Check:
    name: str
    level: str  # OK | WARN | FAIL
    detail: str


def _knowledge(cfg: Config) -> list[Check]:
    path = Path(cfg.knowledge.faq)
    try:
        entries, warnings = parse_faq(path.read_text(encoding="utf-8"))
        KnowledgeBase(entries)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [Check("knowledge", "FAIL", f"{path}: {exc}")]
    out = [Check("knowledge", "OK" if entries else "FAIL", f"{len(entries)} FAQ entries in {path}")]
    out += [Check("knowledge", "WARN", w) for w in warnings]
    return out


def _store(cfg: Config) -> Check:
    parent = Path(cfg.store.path).resolve().parent
    if not parent.is_dir():
        return Check("store", "FAIL", f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        return Check("store", "FAIL", f"directory {parent} is not writable")
    return Check("store", "OK", str(Path(cfg.store.path).resolve()))


def _models() -> list[Check]:
    try:
        from .models_manifest import ModelError, load_manifest, verify
    except ImportError:
        return [Check("models", "WARN", "model manifest support not installed")]
    try:
        manifest = load_manifest()
    except (OSError, ValueError, ModelError) as exc:
        return [Check("models", "FAIL", f"manifest: {exc}")]
    out = []
    for mf in manifest.values():
        try:
            path = verify(mf)
            out.append(Check(f"model {mf.id}", "OK", f"{path.name} sha256 ok ({mf.licence})"))
        except ModelError as exc:
            out.append(Check(f"model {mf.id}", "FAIL", str(exc)))
    return out


def _providers() -> Check:
    import onnxruntime as ort

    return Check(
        "onnxruntime",
        "OK",
        f"{ort.__version__}; providers {', '.join(ort.get_available_providers())}",
    )


def _audio(cfg: Config) -> Check:
    if cfg.audio.enabled is False:
        return Check("audio", "OK", "disabled in config (text and touch only)")
    level = "FAIL" if cfg.audio.enabled is True else "WARN"
    try:
        import sounddevice as sd

        devices = sd.query_devices()
    except (OSError, ImportError) as exc:  # PortAudio missing: sounddevice raises OSError
        return Check("audio", level, f"no audio backend: {exc}")
    ins = [d["name"] for d in devices if d["max_input_channels"] > 0]
    outs = [d["name"] for d in devices if d["max_output_channels"] > 0]
    if not ins or not outs:
        return Check("audio", level, f"inputs {ins or 'none'}, outputs {outs or 'none'}")
    return Check("audio", "OK", f"{len(ins)} input(s), {len(outs)} output(s)")


async def _llm(cfg: Config) -> list[Check]:
    out: list[Check] = []
    if cfg.llm.spawn_local:
        try:
            model = find_local_model(cfg.llm)
            ok = importlib.util.find_spec("llama_cpp") is not None
            out.append(
                Check(
                    "local llm",
                    "OK" if ok else "FAIL",
                    f"{model.name}" + ("" if ok else "; llama-cpp-python is not installed"),
                )
            )
        except LocalLLMError as exc:
            out.append(Check("local llm", "FAIL", str(exc)))
    async with httpx.AsyncClient() as client:
        for ep in endpoints_from_config(cfg):
            if ep.api_key is None and any(
                e.name == ep.name and e.api_key_env for e in cfg.llm.endpoints
            ):
                out.append(Check(f"endpoint {ep.name}", "WARN", "its API key variable is not set"))
            try:
                took = await probe(client, ep, 10.0)
                out.append(
                    Check(f"endpoint {ep.name}", "OK", f"{ep.url} answered in {took * 1000:.0f} ms")
                )
            except LLMError as exc:
                level = "WARN" if is_local_endpoint(cfg, ep) else "FAIL"
                hint = " (started by `appliance run`)" if level == "WARN" else ""
                out.append(Check(f"endpoint {ep.name}", level, f"{ep.url}: {exc.kind}{hint}"))
    return out


def _voice(cfg: Config) -> Check:
    """How the box listens, as configured (the running figures are on the admin status page)."""
    v, a = cfg.voice, cfg.audio
    if v.enabled is False:
        return Check("voice", "OK", "disabled in config (text only)")
    front = [
        n
        for n, on in (
            ("echo cancellation", a.echo_cancellation),
            ("noise suppression", a.noise_suppression),
        )
        if on
    ]
    level, problem = "OK", ""
    if front:
        try:
            import pywebrtc_audio  # noqa: F401
        except ImportError as exc:
            level, problem = "FAIL", f"; audio front end unavailable: {exc}"
    cutoff = f"cutoff {v.wake_threshold:g}" if v.wake_threshold else "the model's cutoff"
    wake = f" ('{v.wake_word}', {cutoff})" if "wake" in v.listen else ""
    return Check(
        "voice",
        level,
        f"listen {' + '.join(v.listen)}{wake}, follow-up {v.follow_up_s:g} s; "
        f"front end {', '.join(front) or 'off'}; echo gate {'on' if v.echo_gate else 'off'}; "
        f"final ASR beam {v.asr_beam}, FAQ bias {v.asr_bias:g}; "
        f"usual replies spoken ahead {'on' if v.warm_replies else 'off'}{problem}",
    )


async def run_checks(cfg: Config) -> list[Check]:
    checks = [Check("config", "OK", "valid")]
    checks += await trio.to_thread.run_sync(_knowledge, cfg)
    checks.append(_store(cfg))
    checks += await trio.to_thread.run_sync(_models)
    checks.append(_providers())
    checks.append(await trio.to_thread.run_sync(_audio, cfg))
    checks.append(_voice(cfg))
    checks += await _llm(cfg)
    return checks
