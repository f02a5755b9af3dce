"""`appliance demo --wav IN.wav --out OUT.wav [--json]`: one voice turn from a file.

The file is streamed block by block at real-time pace through the same pipeline as a live
microphone (VAD/endpoint -> ASR -> turn -> TTS), so the timings are honest: voice_to_voice_ms
runs from the moment the last voiced block "arrived" to the first reply sample. No sound card
and no web server are needed; the LLM is the one in the config (the local llama.cpp child by
default) or `--llm-url`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import trio

from .audio.resample import resample
from .config import Config, LLMEndpointConfig, load_config
from .contentfilter import ContentFilter
from .dialog import SessionRegistry
from .events import ServerEvent, Transcript
from .llm.conn import KeepAlive
from .llm.local import run_local_llm
from .llm.pool import DELTA_COALESCE_S, SHOWN_COALESCE_S, LLMPool
from .metrics import Metrics
from .service import endpoints_from_config, load_knowledge, warm_up_endpoints
from .turns import TurnRunner
from .voice.engine import VoiceEngine, load_engine
from .voice.listening import FRAME, RATE
from .voice.pipeline import PipelineSettings, open_pipeline
from .voice.sinks import MemorySink

__all__ = ["DemoInputError", "DemoResult", "cmd_demo", "read_wav", "run_demo", "write_wav"]

log = logging.getLogger("appliance.demo")

F32 = npt.NDArray[np.float32]


class DemoInputError(Exception):
    """The input file is not a WAV we can read."""


def read_wav(path: Path) -> F32:
    """Any PCM WAV (8/16/24/32-bit, any rate, any channels) -> 16 kHz mono float32. Blocking."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise DemoInputError(f"{path}: file not found") from None
    except (OSError, EOFError, wave.Error) as exc:
        raise DemoInputError(f"{path}: not a readable PCM WAV file ({exc})") from None
    if width == 1:
        a = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        a = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        a = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        a = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise DemoInputError(f"{path}: unsupported sample width {width} bytes")
    if channels < 1 or len(a) < channels:
        raise DemoInputError(f"{path}: no audio frames")
    mono = a[: len(a) // channels * channels].reshape(-1, channels).mean(axis=1)
    return resample(mono, rate, RATE)


def write_wav(path: Path, audio: F32, rate: int) -> None:
    """Mono PCM16. Blocking."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def with_llm_url(cfg: Config, url: str) -> Config:
    """Answer from `url` (an OpenAI-compatible base ending in /v1) instead of the config's LLM."""
    ep = LLMEndpointConfig(name="override", url=url.rstrip("/"), model="default")
    return dataclasses.replace(
        cfg, llm=dataclasses.replace(cfg.llm, endpoints=(ep,), spawn_local=False)
    )


@asynccontextmanager
async def turn_stack(cfg: Config, metrics: Metrics) -> AsyncIterator[TurnRunner]:
    """The service's turn machinery without the web server: knowledge, LLM pool (and the local
    LLM child when configured), warmed up (the prompt prefix too). No conversation log (a demo
    is not a visitor)."""
    knowledge = await trio.to_thread.run_sync(load_knowledge, cfg)
    timeout = httpx.Timeout(connect=3.0, read=None, write=10.0, pool=5.0)
    keepalive = KeepAlive()
    async with httpx.AsyncClient(timeout=timeout) as http, trio.open_nursery() as nursery:
        if cfg.llm.spawn_local:
            await nursery.start(lambda task_status: run_local_llm(cfg.llm, task_status=task_status))
        pool = LLMPool(
            endpoints_from_config(cfg),
            http,
            first_token_s=cfg.budgets.first_token_s,
            stall_s=cfg.budgets.stall_s,
            coalesce_s=DELTA_COALESCE_S,
            shown_coalesce_s=SHOWN_COALESCE_S,
            keepalive=keepalive,
        )
        await warm_up_endpoints(cfg, pool, trio.Event())
        runner = TurnRunner(cfg, pool, knowledge, ContentFilter(cfg.filter.blocked_terms), metrics)
        # As the service does before READY: the local endpoint holds the prompt prefix.
        await pool.warm(runner.prefix_messages(), timeout_s=cfg.budgets.probe_s)
        try:
            yield runner
        finally:
            nursery.cancel_scope.cancel()
            keepalive.close()


@dataclass
class DemoResult:
    transcript: str
    reply: str
    outcome: str
    timings: dict[str, float]
    audio_out_s: float
    partials: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def run_demo(
    cfg: Config,
    audio_16k: F32,
    *,
    engine: VoiceEngine | None = None,
    realtime: bool = True,
) -> tuple[DemoResult, MemorySink]:
    """Stream `audio_16k` through one voice pipeline; the first utterance's turn is reported."""
    metrics = Metrics()
    engine = engine or await load_engine(cfg)
    sink = MemorySink()
    partials: list[str] = []

    async def emit(ev: ServerEvent) -> None:
        if isinstance(ev, Transcript) and not ev.final:
            partials.append(ev.text)
        await trio.lowlevel.checkpoint()

    sessions = SessionRegistry(
        idle_reset_s=cfg.dialog.idle_reset_s, history_turns=cfg.llm.history_turns
    )
    conv, _ = sessions.resume_or_create(None, trio.current_time())
    settings = PipelineSettings.from_config(cfg.voice)
    async with (
        turn_stack(cfg, metrics) as runner,
        open_pipeline(engine, runner, conv, emit, sink, settings, metrics) as pipe,
    ):
        t0 = trio.current_time()
        for i in range(0, len(audio_16k), FRAME):
            if realtime:
                # A block is there when its last sample would have been captured.
                await trio.sleep_until(t0 + min(i + FRAME, len(audio_16k)) / RATE)
            await pipe.feed(audio_16k[i : i + FRAME])
        await pipe.end_of_input()
        await pipe.wait_idle()
    first = pipe.turns[0] if pipe.turns else None
    out = sink.audio()
    result = DemoResult(
        transcript=first.transcript if first else "",
        reply=first.reply if first else "",
        outcome=first.outcome if first else "no_speech",
        timings=first.timings if first else {},
        audio_out_s=round(len(out) / sink.rate, 3) if sink.rate else 0.0,
        partials=partials,
    )
    return result, sink


def cmd_demo(args: argparse.Namespace) -> int:
    from .logsetup import setup_logging

    setup_logging("WARNING", json_lines=False)
    cfg = load_config(Path(args.config) if args.config else None)
    if args.llm_url:
        cfg = with_llm_url(cfg, args.llm_url)
    try:
        audio = read_wav(Path(args.wav))
    except DemoInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not np.all(np.isfinite(audio)) or len(audio) < FRAME:
        print(f"error: {args.wav}: too short or not audio", file=sys.stderr)
        return 2
    result, sink = trio.run(run_demo, cfg, audio)
    out = Path(args.out)
    if sink.rate:
        write_wav(out, sink.audio(), sink.rate)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        print(f"transcript: {result.transcript}")
        print(f"reply:      {result.reply}")
        print(f"outcome:    {result.outcome}; reply audio {result.audio_out_s:.2f} s -> {out}")
        for name, ms in sorted(result.timings.items()):
            print(f"  {name:24} {ms:9.1f}")
    return 0 if result.transcript else 1


def add_demo_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="one voice turn from a WAV file (no sound card needed)"
    )
    p.add_argument("--wav", required=True, help="input WAV (any rate/channels, PCM)")
    p.add_argument("--out", required=True, help="where to write the spoken reply (WAV)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--config")
    p.add_argument("--llm-url", help="OpenAI-compatible base URL ending in /v1 (overrides config)")
    p.set_defaults(func=cmd_demo)
