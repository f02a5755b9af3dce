"""Listening's small parts: PCM decoding, the audio ring ASR cuts from, an ASR pass's state, and
the filter that keeps filler sounds from starting a turn. Pure, apart from trio.Event."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import trio

from .segmenter import segment_samples

__all__ = [
    "FRAME",
    "FRAME_S",
    "RATE",
    "AsrPass",
    "AudioRing",
    "FrameClock",
    "InFlight",
    "agreed",
    "pcm16_to_float",
    "speech_end",
    "usable_transcript",
]

F32 = npt.NDArray[np.float32]
RATE = 16000
FRAME = 512  # samples per VAD frame (32 ms)
FRAME_S = FRAME / RATE


def pcm16_to_float(data: bytes) -> F32:
    """PCM s16le mono -> float32 in [-1, 1). An odd trailing byte is dropped."""
    n = len(data) // 2
    return np.frombuffer(data[: 2 * n], dtype="<i2").astype(np.float32) / 32768.0


def agreed(before: Sequence[int], after: Sequence[int]) -> tuple[int, ...]:
    """What two passes over the growing start of one utterance both heard: their common
    prefix. A pass over audio cut while the visitor talks may invent an ending (a phrase said
    again, a word made up); the next pass, over more audio, seldom invents the same one."""
    n = 0
    for a, b in zip(before, after, strict=False):
        if a != b:
            break
        n += 1
    return tuple(after[:n])


_WORD = re.compile(r"[A-Za-z0-9]+")
_FILLERS = frozenset("uh um hmm mm mhm ah eh oh er erm hm".split())


def loops(text: str, longest: int = 8) -> bool:
    """The same phrase of 3 to `longest` words twice in a row ("and we are not bringing the
    car and we are not bringing the car"): a decoder that lost its place in the audio, not
    what a visitor says (who repeats a word or two: "no, no", "sorry, sorry"). Pure."""
    words = [w.lower() for w in _WORD.findall(text)]
    for n in range(3, longest + 1):
        for i in range(len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n]:
                return True
    return False


def usable_transcript(text: str) -> bool:
    """Worth a turn: at least one real word that is not a filler sound. Pure."""
    words = [w.lower() for w in _WORD.findall(text)]
    return any(w not in _FILLERS for w in words)


class AudioRing:
    """The last `keep_s` seconds of 16 kHz audio, addressed by audio time. Pure."""

    def __init__(self, keep_s: float) -> None:
        self._keep = int(keep_s * RATE)
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = 0  # absolute sample index of _buf[0]

    @property
    def end(self) -> int:
        return self._start + len(self._buf)

    def append(self, block: F32) -> None:
        self._buf = np.concatenate([self._buf, block])
        extra = len(self._buf) - self._keep
        if extra > 4 * FRAME:  # trim in steps, not per frame
            self._buf = self._buf[extra:]
            self._start += extra

    def slice(self, t0: float, t1: float, *, pre_roll_s: float, post_roll_s: float) -> F32:
        i0, i1 = segment_samples(
            t0,
            t1,
            sample_rate=RATE,
            pre_roll_s=pre_roll_s,
            post_roll_s=post_roll_s,
            buffer_start=self._start / RATE,
            buffer_len=len(self._buf),
        )
        return self._buf[i0:i1].copy()


# Where speech ends: the last sample this far under the utterance's peak (and clearly above the
# room's floor). 35 dB keeps a word's soft last consonant; a 0.5 peak gives 0.009.
END_BELOW_PEAK_DB = 35.0
_END_SEARCH_S = 0.25  # how far before the VAD's end of speech the voice may have stopped
_FLOOR_S = 0.1  # the end of the hangover: the room's floor (the speech's tail has died away)


def speech_end(audio: F32, vad_end: int) -> int:
    """The sample index where the voice stopped in `audio` (an utterance from its onset
    through the hangover the VAD waited out), near the VAD's end of speech `vad_end`.

    Silero keeps frames voiced while its probability decays: its end of speech came 60-110 ms
    after the last loud sample on the bench's questions (tools: Piper, espeak-ng), which the
    latency figures would otherwise leave out. Searched from `_END_SEARCH_S` before `vad_end`
    to one frame after it; returns `vad_end` when nothing there is louder than the level
    (noise as loud as the speech's tail) or no hangover follows (cut at max length). Pure."""
    tail = audio[vad_end + FRAME :]
    if vad_end <= 0 or len(tail) < FRAME:
        return vad_end
    peak = float(np.max(np.abs(audio[:vad_end])))
    floor = float(np.max(np.abs(tail[-int(_FLOOR_S * RATE) :])))
    level = max(peak * 10 ** (-END_BELOW_PEAK_DB / 20), 2.0 * floor)
    lo = max(0, vad_end - int(_END_SEARCH_S * RATE))
    loud = np.flatnonzero(np.abs(audio[lo : vad_end + FRAME]) > level)
    return lo + int(loud[-1]) + 1 if loud.size else vad_end


class FrameClock:
    """When each frame's audio was spoken and when it reached the pipeline, by audio time, for
    the latency figures. Pure: the caller passes the times (trio clock).

    A live microphone's blocks carry the ADC time of their first sample (`anchor`): the audio
    was spoken then, however long capture, the channel and a busy loop held it before the
    pipeline saw it. A browser's or a file's carry none, and a frame's arrival is the best we
    know. Each frame keeps the time of the anchor it was fed under, so a dropped capture block
    (a jump on the sample axis, re-anchored by the next block) does not shift earlier frames."""

    def __init__(self, keep: int = 1024) -> None:
        # (audio time at the frame's end, its arrival, when its last sample was spoken or None)
        self._frames: deque[tuple[float, float, float | None]] = deque(maxlen=keep)
        self._anchor: tuple[int, float] | None = None

    def anchor(self, sample: int, t: float | None) -> None:
        """Sample index `sample` (of the samples fed) entered the microphone at `t`; None: the
        audio from there on has no clock."""
        self._anchor = None if t is None else (sample, t)

    def frame(self, end_sample: int, arrived: float) -> None:
        """A frame ending at sample index `end_sample` reached the pipeline at `arrived`."""
        spoken = None
        if self._anchor is not None:
            sample, t = self._anchor
            spoken = t + (end_sample - sample) / RATE
        self._frames.append((end_sample / RATE, arrived, spoken))

    def _holding(self, t: float) -> tuple[float, float, float | None] | None:
        for f in self._frames:
            if f[0] >= t - 1e-9:
                return f
        return None

    def arrived_at(self, t: float, now: float) -> float:
        """When the frame holding audio time `t` reached the pipeline (`now`: not fed yet)."""
        f = self._holding(t)
        return now if f is None else f[1]

    def spoken_at(self, t: float, now: float) -> float:
        """When audio time `t` entered the microphone: by the device clock of the frame holding
        it, else that frame's arrival (`now`: not fed yet)."""
        f = self._holding(t)
        if f is None:
            return now
        end, arrived, spoken = f
        return arrived if spoken is None else spoken - (end - t)


@dataclass
class AsrPass:
    """One ASR pass over [start, end] of audio time; `stop` asks it to end early."""

    start: float
    end: float
    final: bool
    stop: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    text: str | None = None
    alternatives: tuple[str, ...] = ()  # a beam search's other hypotheses, best first
    compute_s: float = 0.0
    audio_s: float = 0.0
    prefix: tuple[int, ...] = ()  # token ids the pass starts from (an earlier pass settled)
    token_ids: tuple[int, ...] = ()  # what it heard, as token ids


class InFlight:
    """A count of background jobs and a wait for the moment none is running."""

    def __init__(self) -> None:
        self._n = 0
        self._none = trio.Event()
        self._none.set()

    def begin(self) -> None:
        self._n += 1
        if self._none.is_set():
            self._none = trio.Event()

    def end(self) -> None:
        self._n -= 1
        if self._n == 0:
            self._none.set()

    async def wait(self) -> None:
        while self._n:
            await self._none.wait()


_STOP = (
    r"(?:(?:please|ok|okay|oh)\W+)*(?:stop|cancel|be quiet|quiet|shut up|that's enough|"
    r"that is enough|enough|never mind|nevermind)(?:\W+(?:please|it|now|talking|thanks?))*\W*$"
)
_STOP_RE = re.compile(r"^\W*" + _STOP, re.IGNORECASE)
# After a barge-in the transcript often starts with one stray word: the tail of our own
# echo in the pre-roll ("Percy, stop.", "Dot, stop, please." in `appliance bench echo`).
# Not a word that makes "stop" a noun or its opposite ("bus stop", "don't stop").
_STRAY_STOP_RE = re.compile(
    r"^\W*(?!(?:don't|dont|do|not|never|bus|tram|train|next|last|which|what|where|the|a|an|"
    r"one|first|full|pit|can|to)\b)[^\W\d_]+\W+" + _STOP,
    re.IGNORECASE,
)


def is_stop_request(text: str, *, barged_in: bool = False) -> bool:
    """ "Stop", "cancel", "please stop", "that's enough": the visitor wants silence, not an
    answer. `barged_in`: the utterance interrupted our reply, so one stray word may lead. Pure."""
    return bool(_STOP_RE.match(text) or (barged_in and _STRAY_STOP_RE.match(text)))


_SOUND_ALIKE = str.maketrans("cgqjvbdzx", "kkkkfptsk")
_DIGRAPHS = (("ph", "f"), ("ck", "k"), ("ch", "k"), ("sh", "s"), ("th", "t"))


def consonant_skeleton(text: str) -> str:
    """The consonants of `text`, sound-alike ones merged (k/g/c, p/b, t/d, f/v, s/z) and
    repeats collapsed: "Hey Mycroft", "Famicraft" and "K-Microft" share "mkrft". Pure."""
    s = re.sub(r"[^a-z]", "", text.lower())
    for a, b in _DIGRAPHS:
        s = s.replace(a, b)
    s = re.sub(r"[aeiouyhw]", "", s.translate(_SOUND_ALIKE))
    return re.sub(r"(.)\1+", r"\1", s)


# Consonant skeletons this close count as the phrase. 0.8 missed garbles that keep the name's
# core ("Hey Mikra": mkr against mkrft). On the tuning split (docs/bench/wake-tune-t07.json)
# 0.7 admitted 58 of 65 detected wakes (0.8: 57, 0.65: 59) and let 1 of 582 ordinary FAQ
# questions pass as starting with the phrase (0.65: 12, 0.6: 23).
_SKELETON_MATCH = 0.7
# Words a question starts with: never part of a wake phrase's head.
_ASKS = frozenset(
    "what what's when where where's which who how is are do does can could may will would "
    "should i i'm we excuse please".split()
)


def strip_wake_phrase(text: str, phrase: str) -> str:
    """The transcript without a leading wake phrase ("Hey Mycroft, what time ..."), matched
    loosely: ASR spells a made-up name many ways ("hey my craft", "hey microsoft",
    "Kameikroft", "came across"). A head of 1-4 words matches when its letters are close to
    the phrase's, or, for a phrase with 4 or more consonants, when its consonants are: short
    skeletons ("Alexa": lks) match too much ordinary speech. Thresholds set on the hearing
    bench's tuning split (docs/bench/wake-tune.md). Pure."""
    import difflib

    target = re.sub(r"[^a-z]", "", phrase.lower())
    bones = consonant_skeleton(phrase)
    words = text.split()
    best, best_score = 0, 0.0
    for n in range(1, min(4, len(words)) + 1):
        if n > 1 and re.sub(r"[^a-z']", "", words[n - 1].lower()) in _ASKS:
            break  # the question has begun ("Hey Mikrok, what's ...": its consonants fit too)
        joined = "".join(words[:n])
        head = re.sub(r"[^a-z]", "", joined.lower())
        score = difflib.SequenceMatcher(None, head, target).ratio() - 0.75
        if len(bones) >= 4:
            ratio = difflib.SequenceMatcher(None, consonant_skeleton(joined), bones).ratio()
            score = max(score, ratio - _SKELETON_MATCH + 1e-9)  # as > 0.75 does for letters
        if score > best_score:
            best, best_score = n, score
    return " ".join(words[best:]).lstrip(" ,.!?") if best else text


def says_no_wake_phrase(text: str, phrase: str) -> bool:
    """True when an utterance that only the wake word let in shows, in its words, that nobody
    said the phrase: the detector's near misses ("can my dog come in") are real speech without
    it. An empty or filler-only transcript is not proof either way (the question may follow),
    so it is not a false wake. Pure."""
    return usable_transcript(text) and strip_wake_phrase(text, phrase) == text


_ONSET_SLACK_S = 0.3


class ListenGate:
    """Who may start a turn on the box's own microphone. Pure (times are passed in).

    Modes: `always` (every utterance, for quiet sites), `wake` (after the wake word), `touch`
    (after a tap on the kiosk screen's microphone). An opening (`open`) lets the next utterance
    through if it starts within `open_s`, and the utterance already under way when a wake word
    ends inside it (the question usually follows the wake word in one breath). After each reply
    a follow-up window of `follow_up_s` needs no wake word. In `always` mode and in the
    follow-up window, an utterance quieter than `attention_dbfs` (someone talking across the
    lobby, not to the box) starts nothing; an opened utterance is never level-gated.
    """

    def __init__(
        self,
        modes: tuple[str, ...] = ("always",),
        *,
        follow_up_s: float = 8.0,
        open_s: float = 8.0,
        attention_dbfs: float = -100.0,
    ) -> None:
        self.modes = modes
        self.follow_up_s = follow_up_s
        self.open_s = open_s
        self.attention_dbfs = attention_dbfs
        self._opened_at = -1.0
        self._open_until = -1.0
        self._follow_until = -1.0
        self.opened = 0
        self.ignored = 0  # utterances that started no turn

    @property
    def always(self) -> bool:
        return "always" in self.modes

    def open(self, now: float) -> None:
        """The wake word was heard or the screen's microphone tapped."""
        self._opened_at = now
        self._open_until = now + self.open_s
        self.opened += 1

    def reply_done(self, now: float) -> None:
        """A reply finished: the visitor may follow up without the wake word."""
        if self.follow_up_s > 0:
            self._follow_until = now + self.follow_up_s

    def listening(self, now: float) -> bool:
        """Whether an utterance starting now may become a turn (before its level is known)."""
        return self.always or self._opened(now) or now <= self._follow_until

    def _opened(self, t: float) -> bool:
        # Speech that began before the tap or the wake word (talk already under way) is not
        # the question it opened for; a little slack for the VAD's onset.
        return self._opened_at - _ONSET_SLACK_S <= t <= self._open_until

    def admit(self, started: float, level_dbfs: float, opened_during: bool) -> bool:
        """The utterance that started at `started` (its speech level, whether the wake word
        ended inside it) ends: does it become a turn? An admitted opening is used up."""
        if opened_during or self._opened(started):
            self._open_until = -1.0
            return True
        ok = (self.always or started <= self._follow_until) and level_dbfs >= self.attention_dbfs
        if not ok:
            self.ignored += 1
        return ok
