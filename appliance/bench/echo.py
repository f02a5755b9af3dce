"""`appliance bench echo`: the box's own voice looped from its speaker into its microphone.

On the private PulseAudio devices of `bench voice` (`bench.pulse`), the real service (Silero
VAD, Moonshine, Piper, FAQ answers; the scripted LLM for anything else) answers spoken FAQ
questions with long answers while `module-loopback` streams play `spk.monitor` into `micfeed`
(what the appliance's microphone `vmic` hears): the echo path. Each reply gets its own path,
drawn in 20-80 ms delay and -6..-20 dB gain: a direct tap, and with `--reverb on` three later,
weaker taps (+7/+17/+29 ms at -13/-17/-21 dB under the direct one: early reflections, the
reverberant part ~11 dB under the direct sound). Real reverberation (a decaying tail) would
need a convolution in the live loop, which PulseAudio cannot do without a LADSPA plugin; the
taps are what we can do. Each tap's delay and the whole echo's gain are measured back from the
two recordings (`voice.locate`), not taken from the settings.

Per configuration (`gate`: the echo gate alone, the default config; `webrtc`: the WebRTC front
end's echo cancellation and noise suppression as well), a fresh appliance process:
- `--replies` questions answered with no visitor talking: every barge-in and every transcript
  beyond the question is the box interrupting itself (`self_interruptions`, target 0); VAD
  utterances that ended without a turn are counted apart (`echo_utterances`). With the front
  end on, its own ERLE (`appliance_frontend_erle_db`, the last 2 s of the reply) is read after
  each reply.
- `--bargeins` questions talked over, 1-3 s into the reply, by "stop" phrases scaled to the
  speech level the microphone hears from the echo at that moment: detected (the appliance
  logged a barge-in) and onset on `vmic` -> the speaker silent (as `bench voice`).
The appliance's dropped capture blocks, playback underruns and CPU come from /metrics and /proc.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from .core import DEFAULT_REPLY, Bench, Target, bench_dir
from .faults import metric
from .load import lag_p99_ms
from .procs import (
    cpu_percent,
    proc_sample,
    run_scripted_llm,
    scrape_metrics,
)
from .progress import Progress
from .pulse import RATE, PulseDaemon, missing_tools, pulse_for_children
from .stats import percentile
from .voice import (
    LogTail,
    Question,
    Session,
    first_loud,
    last_loud,
    locate,
    synthesize,
    voice_session,
)

__all__ = [
    "CONFIGS",
    "ECHO",
    "EchoPath",
    "LogCounts",
    "Turn",
    "bargein_stats",
    "erle_stats",
    "plan_paths",
    "run_echo",
    "scaled_to",
    "speech_rms",
]

F32 = npt.NDArray[np.float32]

# [audio] of each configuration under test.
CONFIGS: dict[str, dict[str, bool]] = {
    "gate": {"echo_cancellation": False, "noise_suppression": False},
    "webrtc": {"echo_cancellation": True, "noise_suppression": True},
}
# FAQ questions whose answers run 5-9 s (the sample museum's), in its headings' words.
REPLY_QUESTIONS = tuple(
    Question(text, "piper")
    for text in (
        "What are the opening hours?",
        "Is the museum wheelchair accessible?",
        "When are the guided tours?",
        "Which languages does the audio guide have?",
        "How do I get here by public transport?",
        "Where are the toilets?",
        "Do you offer group bookings?",
        "Is there a cafe?",
        "Are you open on public holidays?",
        "Can I buy tickets online?",
    )
)
# Stop requests: the barge-in ends the turn without another reply.
VISITORS = (
    Question("Stop, please.", "piper", "barge_in"),
    Question("Okay, stop.", "en-gb", "barge_in"),
)
DELAY_MS = (20, 80)
GAIN_DB = (-20.0, -6.0)
REVERB = ((7, -13.0), (17, -17.0), (29, -21.0))  # (ms after, dB under) the direct tap
BARGE_AFTER_S = (1.0, 3.0)
_PAD_AFTER_S = 1.0  # silence after each question (voice.synthesize)
_FIT_S = 2.0  # reply audio used to measure the echo path
_FIT_MAX_LAG_S = 0.2


# -- pure helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoPath:
    """The speaker -> microphone path of one reply: loopback taps (delay ms, gain dB), the
    direct one first."""

    taps: tuple[tuple[int, float], ...]

    @property
    def delay_ms(self) -> int:
        return self.taps[0][0]

    @property
    def gain_db(self) -> float:
        return self.taps[0][1]


def plan_paths(n: int, seed: int, reverb: bool) -> list[EchoPath]:
    """`n` echo paths, delay and gain uniform in DELAY_MS x GAIN_DB (seeded). Pure."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = int(rng.integers(DELAY_MS[0], DELAY_MS[1] + 1))
        g = round(float(rng.uniform(*GAIN_DB)), 1)
        taps = [(d, g)] + ([(d + dd, round(g + dg, 1)) for dd, dg in REVERB] if reverb else [])
        out.append(EchoPath(tuple(taps)))
    return out


def speech_rms(x: F32, rate: int, frame_s: float = 0.02, range_db: float = 30.0) -> float:
    """The level of the speech in `x`: RMS over its frames within `range_db` of the loudest
    (pauses left out, as an active speech level). 0 for silence. Pure."""
    n = int(frame_s * rate)
    m = len(x) // n
    if m == 0:
        return 0.0
    e = np.mean(x[: m * n].astype(np.float64).reshape(m, n) ** 2, axis=1)
    top = float(e.max())
    if top <= 1e-12:
        return 0.0
    return math.sqrt(float(np.mean(e[e >= top * 10 ** (-range_db / 10)])))


def scaled_to(clip: F32, rms: float, rate: int) -> F32:
    """`clip` with its speech level (`speech_rms`) set to `rms`, clipped to [-1, 1]. Pure."""
    own = speech_rms(clip, rate)
    gain = rms / own if own > 0 else 0.0
    out: F32 = np.clip(clip * gain, -1.0, 1.0).astype(np.float32)
    return out


# A barge-in logged this soon after the question's end is its own last words; a transcript
# (after endpointing and ASR) this soon, a question heard in two parts.
_QUESTION_TAIL_S = 0.4
_QUESTION_HEARD_S = 1.5


@dataclass(frozen=True)
class LogCounts:
    """What the appliance logged during one turn that tells its own voice started something.

    A question split by a pause ("Is the museum..." answered, "...wheelchair accessible"
    talking over that answer) is the visitor's, not the box's: a barge-in logged before
    `question_end` + `_QUESTION_TAIL_S` (wall time), or a transcript without a barge-in before
    `question_end` + `_QUESTION_HEARD_S`, is counted in `question_splits`. A transcript that
    follows a barge-in is part of that barge-in's event."""

    heard: int  # final transcripts (turns started)
    barge_ins: int
    self_barge_ins: int  # barge-ins after the question had been spoken
    self_turns: int  # turns started after the question, with no barge-in before them
    question_splits: int
    no_words: int  # VAD utterances whose transcript had no usable words: no turn
    stops: int  # "stop" requests: no turn
    not_addressed: int  # utterances the listen gate let pass: no turn

    @classmethod
    def of(cls, log: LogTail, since: int, question_end: float = -math.inf) -> LogCounts:
        heard = barge = self_barge = self_turns = splits = 0
        after_barge = False  # a barge-in since the last transcript
        for r in log.records[since:]:
            msg, ts = str(r.get("msg", "")), float(r.get("ts", math.inf))
            if msg.startswith("barge-in"):
                barge += 1
                after_barge = True
                if ts > question_end + _QUESTION_TAIL_S:
                    self_barge += 1
                else:
                    splits += 1
            elif msg.startswith("local voice heard"):
                heard += 1
                if heard > 1 and not after_barge:
                    if ts > question_end + _QUESTION_HEARD_S:
                        self_turns += 1
                    else:
                        splits += 1
                after_barge = False
        return cls(
            heard=heard,
            barge_ins=barge,
            self_barge_ins=self_barge,
            self_turns=self_turns,
            question_splits=splits,
            no_words=log.count("utterance without usable words", since),
            stops=log.count("the visitor asked the box to stop", since),
            not_addressed=log.count("utterance not addressed", since),
        )

    @property
    def self_interruptions(self) -> int:
        """With only the question spoken: a barge-in after it, or a turn started after it."""
        return self.self_barge_ins + self.self_turns

    @property
    def echo_utterances(self) -> int:
        return self.no_words + self.stops + self.not_addressed


def _p(values: Sequence[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


# -- the echo path on the devices ------------------------------------------------------------------


def _load_tap(pulse: PulseDaemon, delay_ms: int, gain_db: float) -> str:
    """One `module-loopback` spk.monitor -> micfeed at `delay_ms`, its stream at `gain_db`.

    `adjust_time=0`: the loopback's rate control would move the delay towards `delay_ms`
    while the reply plays (500-1000 ppm, 4-8 ms over a reply, measured), an echo path no room
    has; both null sinks run on one clock, so a fixed delay stays fixed."""
    module = pulse.pactl(
        "load-module", "module-loopback", "source=spk.monitor", "sink=micfeed", "adjust_time=0",
        f"latency_msec={delay_ms}", "source_dont_move=true", "sink_dont_move=true",
    ).strip()  # fmt: skip
    stream = None
    for line in pulse.pactl("list", "sink-inputs").splitlines():
        if m := re.match(r"Sink Input #(\d+)", line):
            stream = m.group(1)
        elif line.strip() == f"Owner Module: {module}":
            break
    else:
        pulse.pactl("unload-module", module)
        raise RuntimeError(f"no stream of loopback module {module}")
    assert stream is not None
    pulse.pactl("set-sink-input-volume", stream, f"{gain_db:.1f}dB")
    return module


class EchoLoop:
    """The loaded taps of one echo path; `cut()` takes them away early."""

    def __init__(self, pulse: PulseDaemon) -> None:
        self.pulse = pulse
        self.modules: list[str] = []

    async def cut(self) -> None:
        with trio.CancelScope(shield=True):
            while self.modules:
                await trio.to_thread.run_sync(self.pulse.pactl, "unload-module", self.modules.pop())


@asynccontextmanager
async def echo_loop(pulse: PulseDaemon, path: EchoPath) -> AsyncIterator[EchoLoop]:
    loop = EchoLoop(pulse)
    try:
        for delay, gain in path.taps:
            loop.modules.append(await trio.to_thread.run_sync(_load_tap, pulse, delay, gain))
        yield loop
    finally:
        await loop.cut()


# -- one turn --------------------------------------------------------------------------------------


@dataclass
class Turn:
    asked: str
    delay_ms_set: int
    gain_db_set: float
    outcome: str | None = None
    reply_s: float | None = None  # reply audio on the speaker, first to last loud sample
    delay_ms: float | None = None  # measured: the strongest tap
    gain_db: float | None = None  # measured: the whole echo at the mic over the speaker
    self_interruptions: int = 0
    echo_utterances: int = 0
    question_splits: int = 0  # the question heard in two parts (not the box's doing)
    echo_cut: bool = False  # the echo path was cut after the first self-interruption
    erle_db: float | None = None
    barge_after_s: float | None = None
    visitor_db: float | None = None  # the visitor's speech level over the echo's, at the mic
    barged_in_before: bool = False  # a barge-in was logged before the visitor spoke
    barge_detected: bool | None = None  # None: barged_in_before (not counted)
    bargein_ms: float | None = None
    bargein_note: str | None = None
    errors: list[str] = field(default_factory=list)


async def _turn(
    s: Session,
    q: Question,
    audio: F32,
    path: EchoPath,
    loop: EchoLoop,
    visitor: F32 | None = None,
    barge_after_s: float = 0.0,
) -> Turn:
    t = Turn(q.text, path.delay_ms, path.gain_db)
    spk0, log0 = len(s.spk), len(s.log.poll())
    barge: Callable[[], F32] | None = None
    if visitor is not None:
        t.barge_after_s = barge_after_s

        def barge() -> F32:
            t.barged_in_before = _counts(s, log0, q).self_barge_ins > 0
            # The echo as the microphone hears it right now (no visitor yet).
            echo = speech_rms(s.mic.since(len(s.mic) - RATE // 2), RATE)
            clip = scaled_to(visitor, echo, RATE)
            t.visitor_db = round(
                20 * math.log10(max(speech_rms(clip, RATE), 1e-9) / max(echo, 1e-9)), 1
            )
            return clip

    async def cut_on_self_interruption() -> None:
        # The first one is counted: cutting the echo then keeps a reply that keeps
        # interrupting itself ("Sorry?" -> its echo -> "Sorry?" ...) from running to the
        # timeout, and the next reply starts clean.
        if await s.wait_for(lambda: _counts(s, log0, q).self_interruptions > 0, math.inf):
            t.echo_cut = True
            await loop.cut()

    async with trio.open_nursery() as nursery:
        if visitor is None:
            nursery.start_soon(cut_on_self_interruption)
        r = await s.ask(q, audio, barge, barge_after_s)
        nursery.cancel_scope.cancel()
    t.outcome, t.errors = r.outcome, r.errors
    counts = _counts(s, log0, q)
    t.question_splits = counts.question_splits
    spk = s.spk.since(spk0)
    first, last = first_loud(spk), last_loud(spk)
    if first is not None and last is not None:
        t.reply_s = round((last - first) / RATE, 2)
    if visitor is None:
        t.self_interruptions, t.echo_utterances = counts.self_interruptions, counts.echo_utterances
        if first is not None:
            _measure_path(s, t, spk0 + first + RATE // 2)
    else:
        # A reply that interrupted itself before the visitor spoke tells nothing of the visitor.
        t.barge_detected = None if t.barged_in_before else counts.self_barge_ins > 0
        t.bargein_ms, t.bargein_note = r.bargein_ms, r.bargein_note
    return t


def _counts(s: Session, log0: int, q: Question) -> LogCounts:
    # `synthesize` leaves 1 s of silence after each question: its speech ended 1 s earlier.
    return LogCounts.of(s.log, log0, s.asked_at - _PAD_AFTER_S)


def _measure_path(s: Session, t: Turn, at: int) -> None:
    """The echo path as recorded, from `_FIT_S` of the reply from speaker sample `at`."""
    ref = s.spk.since(at)[: int(_FIT_S * RATE)]
    j = s.mic.index_at(s.spk.arrival_time(at)) if len(ref) else None
    if j is None or len(ref) < _FIT_S * RATE:
        return
    pre = RATE // 50  # 20 ms: the two recorders' stamps may be off by a few ms either way
    mic = s.mic.since(j - pre)[: len(ref) + pre + int(_FIT_MAX_LAG_S * RATE)]
    fit = locate(ref, mic, pre)
    if fit is not None:
        t.delay_ms, t.gain_db = round(fit[0] / RATE * 1000, 1), round(fit[1], 1)


# -- the bench -------------------------------------------------------------------------------------


def add_echo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replies", type=int, default=100, help="replies with no visitor (default 100)")
    p.add_argument("--bargeins", type=int, default=40, help="replies talked over (default 40)")
    p.add_argument(
        "--configs",
        default="gate,webrtc",
        help="comma-separated, of: gate (echo gate alone), webrtc (+ WebRTC AEC3 and NS)",
    )
    p.add_argument("--reverb", choices=("on", "off"), default="on", help="early-reflection taps")
    p.add_argument("--seed", type=int, default=13, help="echo paths and barge-in moments")


async def run_echo(args: argparse.Namespace) -> dict[str, Any]:
    missing = missing_tools()
    if missing:
        raise RuntimeError(f"PulseAudio tools not installed: {', '.join(missing)} (see setup)")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs or any(c not in CONFIGS for c in configs):
        raise ValueError(f"--configs: choose from {', '.join(CONFIGS)}")
    n, m = args.replies, args.bargeins
    paths = plan_paths(n + m, args.seed, args.reverb == "on")
    rng = np.random.default_rng(args.seed + 1)
    barge_after = [round(float(rng.uniform(*BARGE_AFTER_S)), 2) for _ in range(m)]
    result: dict[str, Any] = {"replies": n, "bargeins": m, "configs": {}}
    with bench_dir("echo", args) as tmp:
        work = Path(tmp)
        audios, _ = await trio.to_thread.run_sync(synthesize, [*REPLY_QUESTIONS, *VISITORS], work)
        questions, visitors = audios[: len(REPLY_QUESTIONS)], audios[len(REPLY_QUESTIONS) :]
        async with run_scripted_llm(
            first_token_ms=args.first_token_ms, token_ms=args.token_ms, reply=DEFAULT_REPLY
        ) as llm:
            for name in configs:
                (work / name).mkdir()
                async with pulse_for_children(work / name / "pulse") as pulse:
                    one = await _run_config(
                        name, work / name, pulse, llm.url, questions, visitors, paths,
                        barge_after, keep=bool(getattr(args, "keep", False)),
                    )  # fmt: skip
                result["configs"][name] = one
                result.update({f"{name}_{k}": v for k, v in one.items() if k in _FLAT})
    result["errors"] = sum(c["errors"] for c in result["configs"].values())
    result["setup"] = {
        "audio": "private PulseAudio: null sinks spk/micfeed, remap source vmic (48 kHz)",
        "echo_path": "module-loopback spk.monitor -> micfeed per tap (latency_msec = delay, "
        "adjust_time=0: a fixed delay), the tap's stream volume = gain; delay 20-80 ms, "
        "gain -6..-20 dB drawn per reply"
        + ("; reflections +7/+17/+29 ms at -13/-17/-21 dB" if args.reverb == "on" else ""),
        "echo_measured": "strongest tap by cross-correlation of 2 s of reply on spk.monitor "
        "and vmic; gain = echo energy over speaker energy (reflections included)",
        "self_interruptions": "barge-ins + transcripts beyond the question, replies with no "
        "visitor",
        "bargein": "stop phrase at the echo's speech level at the mic, 1-3 s into the reply; "
        "detected = the appliance logged a barge-in; latency = onset on vmic -> last loud "
        "speaker sample before 0.4 s of silence (detected ones)",
        "erle": "appliance_frontend_erle_db after each reply with no visitor (the front end's "
        "own figure: mic over output energy, AEC3 + noise suppression, last 2 s of our audio)",
        "llm": "scripted server (FAQ answers need none)",
    }
    return result


_FLAT = (
    "self_interruptions",
    "echo_utterances",
    "bargein_detected_percent",
    "bargein_p95_ms",
    "erle_p50_db",
    "erle_min_db",
    "dropped_blocks",
    "underruns",
    "appliance_cpu_percent",
)


async def _run_config(
    name: str,
    work: Path,
    pulse: PulseDaemon,
    llm_url: str,
    questions: list[F32],
    visitors: list[F32],
    paths: list[EchoPath],
    barge_after: list[float],
    keep: bool = False,
) -> dict[str, Any]:
    n = len(paths) - len(barge_after)
    nq = len(REPLY_QUESTIONS)
    replies: list[Turn] = []
    barges: list[Turn] = []
    async with voice_session(pulse, work, llm_url, CONFIGS[name]) as (app, s):
        before, cpu0 = await scrape_metrics(app.base_url), proc_sample(app.pid)
        progress = Progress(f"echo {name}", len(paths))
        for i, path in enumerate(paths):
            q = REPLY_QUESTIONS[i % nq]
            async with echo_loop(pulse, path) as loop:
                if i < n:
                    t = await _turn(s, q, questions[i % nq], path, loop)
                    if CONFIGS[name]["echo_cancellation"]:
                        t.erle_db = _erle(await scrape_metrics(app.base_url))
                    replies.append(t)
                    extra = f"self {t.self_interruptions}, erle {t.erle_db}"
                else:
                    j = i - n
                    t = await _turn(
                        s, q, questions[i % nq], path, loop, visitors[j % len(visitors)],
                        barge_after[j],
                    )  # fmt: skip
                    barges.append(t)
                    extra = f"barge-in {t.barge_detected} {t.bargein_ms} ms"
            progress.advance(extra=extra)
        progress.close()
        after, cpu1 = await scrape_metrics(app.base_url), proc_sample(app.pid)
        if keep:  # to look at what the gate got wrong: both recorders, with their read stamps
            await trio.to_thread.run_sync(_save_recordings, work / "recordings.npz", s)
    return _summary(replies, barges, before, after, cpu_percent(cpu0, cpu1))


def _save_recordings(path: Path, s: Session) -> None:
    """The speaker's monitor and the microphone as recorded (`RATE`), each with its
    (samples so far, trio time) read stamps, which align the two."""
    np.savez_compressed(
        path,
        mic=s.mic.samples,
        spk=s.spk.samples,
        rate=RATE,
        mic_arrivals=np.array(s.mic.arrivals),
        spk_arrivals=np.array(s.spk.arrivals),
    )


def _erle(metrics_text: str) -> float | None:
    for line in metrics_text.splitlines():
        if line.startswith("appliance_frontend_erle_db "):
            v = float(line.rpartition(" ")[2])
            return None if math.isnan(v) else round(v, 1)
    return None


def erle_stats(replies: Sequence[Turn]) -> dict[str, Any]:
    """ERLE over the replies that played through with their echo path: one cut after a
    self-interruption ends its 2 s window at that moment (double talk with its own echo,
    then no echo at all). The figure over every reply is kept beside it. Pure."""
    whole = [t.erle_db for t in replies if t.erle_db is not None and not t.echo_cut]
    every = [t.erle_db for t in replies if t.erle_db is not None]
    return {
        "erle_p50_db": round(statistics.median(whole), 1) if whole else None,
        "erle_p10_db": _p(whole, 10),
        "erle_min_db": min(whole) if whole else None,
        "erle_measured": len(whole),
        "erle_all_replies_p50_db": round(statistics.median(every), 1) if every else None,
        "erle_all_replies_measured": len(every),
    }


def bargein_stats(barges: Sequence[Turn]) -> dict[str, Any]:
    """Detection rate and onset -> silence latency of the barge-ins. Left out (`spoiled`):
    replies that interrupted themselves before the stop phrase was played, or whose speaker
    went silent before its onset (a self-interruption in the clip's lead-in). Pure."""
    counted = [
        t
        for t in barges
        if t.barge_detected is not None and not (t.bargein_ms is not None and t.bargein_ms < 0)
    ]
    detected = [t for t in counted if t.barge_detected]
    lat = [t.bargein_ms for t in detected if t.bargein_ms is not None]
    return {
        "bargein_detected_percent": round(100 * len(detected) / len(counted), 1)
        if counted
        else None,
        "bargein_detected": f"{len(detected)} of {len(counted)}",
        "bargein_spoiled": len(barges) - len(counted),
        "bargein_p50_ms": _p(lat, 50),
        "bargein_p95_ms": _p(lat, 95),
        "visitor_over_echo_db_p50": _p(
            [t.visitor_db for t in barges if t.visitor_db is not None], 50
        ),
    }


def _summary(
    replies: list[Turn], barges: list[Turn], before: str, after: str, cpu: float
) -> dict[str, Any]:
    lag, _, lag_n = lag_p99_ms(before, after)

    def delta(name: str) -> float:
        return metric(after, name) - metric(before, name)

    measured = [t for t in replies if t.delay_ms is not None]
    return {
        "self_interruptions": sum(t.self_interruptions for t in replies),
        "replies_self_interrupted": sum(1 for t in replies if t.self_interruptions),
        "echo_utterances": sum(t.echo_utterances for t in replies),
        "question_splits": sum(t.question_splits for t in [*replies, *barges]),
        "reply_s_p50": _p([t.reply_s for t in replies if t.reply_s is not None], 50),
        **bargein_stats(barges),
        **erle_stats(replies),
        "echo_delay_error_ms_p50": _p(
            [abs(t.delay_ms - t.delay_ms_set) for t in measured if t.delay_ms is not None], 50
        ),
        "echo_gain_error_db_p50": _p(
            [abs(t.gain_db - t.gain_db_set) for t in measured if t.gain_db is not None], 50
        ),
        "dropped_blocks": delta("appliance_audio_dropped_blocks_total"),
        "underruns": delta("appliance_playback_underruns_total"),
        "appliance_cpu_percent": cpu,
        "loop_lag_p99_ms": lag,
        "loop_lag_samples": lag_n,
        "errors": sum(len(t.errors) for t in [*replies, *barges]),
        "reply_turns": [asdict(t) for t in replies],
        "bargein_turns": [asdict(t) for t in barges],
    }


def markdown_echo(report: Mapping[str, Any]) -> str:
    configs: dict[str, Any] = report.get("configs", {})
    names = list(configs)
    rows = [
        ("self-interruptions (replies with no visitor)", "self_interruptions", "0"),
        ("replies self-interrupted", "replies_self_interrupted", ""),
        ("echo utterances without a turn", "echo_utterances", ""),
        ("questions heard in two parts (not counted)", "question_splits", ""),
        ("reply length p50 (s)", "reply_s_p50", ""),
        ("barge-in detected (%)", "bargein_detected_percent", ">= 95"),
        ("barge-in detected", "bargein_detected", ""),
        ("barge-in turns left out (self-interrupted first)", "bargein_spoiled", ""),
        ("visitor over echo at the mic p50 (dB)", "visitor_over_echo_db_p50", "0"),
        ("barge-in onset -> speaker silent p50 (ms)", "bargein_p50_ms", ""),
        ("barge-in onset -> speaker silent p95 (ms)", "bargein_p95_ms", "<= 200"),
        ("ERLE p50 / p10 / min (dB), replies played through", "erle", ">= 25"),
        ("  replies measured", "erle_measured", ""),
        ("ERLE p50 (dB), every reply (incl. cut ones)", "erle_all_replies_p50_db", ""),
        ("echo delay, measured minus set, abs p50 (ms)", "echo_delay_error_ms_p50", ""),
        ("echo gain, measured minus set, abs p50 (dB)", "echo_gain_error_db_p50", ""),
        ("dropped capture blocks", "dropped_blocks", "0"),
        ("playback underruns", "underruns", ""),
        ("appliance CPU (% of one core)", "appliance_cpu_percent", ""),
        ("event-loop lag p99 (ms)", "loop_lag_p99_ms", ""),
        ("errors", "errors", "0"),
    ]

    def cell(c: Mapping[str, Any], key: str) -> str:
        if key == "erle":
            if c.get("erle_p50_db") is None:
                return "-"
            return f"{c['erle_p50_db']} / {c['erle_p10_db']} / {c['erle_min_db']}"
        v = c.get(key)
        return "-" if v is None else str(v)

    lines = [
        "# bench echo",
        "",
        f"`{report.get('command', 'appliance bench echo')}` at {report.get('date', '?')}, "
        f"commit {report.get('machine', {}).get('git_commit', '?')}; "
        f"{report.get('replies')} replies + {report.get('bargeins')} barge-ins per configuration; "
        f"load average (1 min) before/after {report.get('loadavg_1m_before_after')}, whole box "
        f"{report.get('box_cpu_busy_percent')} % busy, {report.get('bench_wall_s')} s.",
        "",
        "| | " + " | ".join(names) + " | target |",
        "|---|" + "---:|" * len(names) + "---|",
    ]
    for label, key, target in rows:
        lines.append(
            f"| {label} | " + " | ".join(cell(configs[n], key) for n in names) + f" | {target} |"
        )
    lines += ["", "## Targets", ""]
    for t in report.get("targets", []):
        lines.append(
            f"- `{t['field']}` {t['target']}: {t['value']} ({'met' if t['met'] else 'MISSED'})"
        )
    lines += ["", "## Setup", ""]
    lines += [f"- {k}: {v}" for k, v in report.get("setup", {}).items()]
    return "\n".join(lines) + "\n"


ECHO = Bench(
    name="echo",
    help="the speaker looped into the microphone: self-interruptions, barge-in, ERLE",
    add_arguments=add_echo_arguments,
    run=run_echo,
    headline=(*(f"{c}_{k}" for c in CONFIGS for k in _FLAT), "errors"),
    targets=(
        Target("gate_self_interruptions", "==", 0),
        Target("webrtc_self_interruptions", "==", 0),
        Target("gate_bargein_detected_percent", ">=", 95),
        Target("webrtc_bargein_detected_percent", ">=", 95),
        Target("gate_bargein_p95_ms", "<=", 200),
        Target("webrtc_bargein_p95_ms", "<=", 200),
        Target("webrtc_erle_p50_db", ">=", 25),
        Target("gate_dropped_blocks", "==", 0),
        Target("webrtc_dropped_blocks", "==", 0),
    ),
    in_all=False,
    markdown=markdown_echo,
)
