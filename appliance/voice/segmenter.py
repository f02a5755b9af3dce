"""End-of-utterance segmenter: VAD probabilities in, dataclass events out.

A pure state machine (no audio, no clock): the caller passes each frame's speech
probability and the time at the *end* of that frame. Decisions: a short hangover when the words
so far already form a complete question (``set_complete_hint``), a ``SilenceStarted`` event so
a speculative final ASR pass can start at the first silent frame, and ``SpeechResumed`` so that
pass can be cancelled.

States: ``waiting`` (no speech yet; an onset shorter than ``min_speech_s`` still counts as
waiting), ``speech``, ``trailing`` (silence after speech, before the hangover ends).

Hysteresis: a frame at or above the speech threshold is voiced; once voiced, frames stay
voiced until the probability drops below the silence threshold. A frame between the two
thresholds therefore keeps whatever state the segmenter is in: it continues speech (or an
onset) and it does not interrupt trailing silence (the hangover clock keeps running).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..config import VoiceConfig

# Times come from float arithmetic (n * 0.032); compare durations with a small tolerance
# so 0.5 s of silence really ends after 16 frames, not 17.
_EPS = 1e-6

EndReason = Literal["hangover", "short_hangover", "max_length"]
State = Literal["waiting", "speech", "trailing"]


@dataclass(frozen=True)
class SegmenterSettings:
    """The segmenter's thresholds; defaults and meanings are [voice]'s (config.VoiceConfig)."""

    speech_threshold: float = VoiceConfig.speech_threshold
    silence_threshold: float = VoiceConfig.silence_threshold
    min_speech_s: float = VoiceConfig.min_speech_s
    hangover_s: float = VoiceConfig.hangover_s
    short_hangover_s: float = VoiceConfig.short_hangover_s
    max_utterance_s: float = VoiceConfig.max_utterance_s
    no_speech_timeout_s: float = VoiceConfig.no_speech_timeout_s
    pre_roll_s: float = VoiceConfig.pre_roll_s
    speaking_threshold_boost: float = VoiceConfig.speaking_threshold_boost
    bargein_min_speech_s: float = VoiceConfig.bargein_min_speech_s
    bargein_clear_speech_s: float = VoiceConfig.bargein_clear_speech_s

    def __post_init__(self) -> None:
        if not 0.0 <= self.silence_threshold <= self.speech_threshold <= 1.0:
            raise ValueError("need 0 <= silence_threshold <= speech_threshold <= 1")
        for name in (
            "min_speech_s",
            "bargein_min_speech_s",
            "bargein_clear_speech_s",
            "hangover_s",
            "short_hangover_s",
            "pre_roll_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_utterance_s", "no_speech_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.short_hangover_s > self.hangover_s:
            raise ValueError("short_hangover_s must not exceed hangover_s")
        if self.speaking_threshold_boost < 0:
            raise ValueError("speaking_threshold_boost must be >= 0")


@dataclass(frozen=True)
class SpeechStarted:
    t: float
    """Onset: the start of the voiced run that became speech."""


@dataclass(frozen=True)
class SilenceStarted:
    t: float
    """When the silence began (end of the last voiced frame): start a speculative ASR pass."""


@dataclass(frozen=True)
class SpeechResumed:
    t: float
    """Start of the voiced frame that interrupted the trailing silence: cancel that pass."""


@dataclass(frozen=True)
class SpeechEnded:
    t: float
    """When the decision was made (end of the frame that completed the hangover)."""
    start: float
    """Utterance onset (same as the SpeechStarted.t)."""
    end: float
    """End of the last voiced frame (for max_length while voiced: t)."""
    reason: EndReason


@dataclass(frozen=True)
class NoSpeechTimeout:
    t: float


Event = SpeechStarted | SilenceStarted | SpeechResumed | SpeechEnded | NoSpeechTimeout


class Segmenter:
    """Turns a stream of per-frame VAD probabilities into utterance events."""

    def __init__(self, settings: SegmenterSettings | None = None) -> None:
        self.settings = settings or SegmenterSettings()
        self._state: State = "waiting"
        self._onset: float | None = None  # start of a voiced run not yet long enough
        self._onset_clear = False  # ... every frame of it plainly someone else's voice
        self._start = 0.0  # utterance onset
        self._silence_start = 0.0
        self._listen_start: float | None = None  # no-speech timer origin; None = next frame
        self._timed_out = False
        self._complete = False
        self._speaking = False

    @property
    def state(self) -> str:
        """``waiting`` | ``speech`` | ``trailing`` (plain str so callers' checks do not narrow)."""
        return self._state

    @property
    def speaking(self) -> bool:
        return self._speaking

    def set_complete_hint(self, complete: bool) -> None:
        """The turn-taking heuristic's verdict on the latest partial transcript.

        Holds until changed, or until the utterance ends / ``reset``.
        """
        self._complete = complete

    def set_speaking(self, speaking: bool) -> None:
        """The box is playing audio: raise thresholds so barge-in needs clearer speech.

        No-speech timeouts are suppressed while speaking, and the timer restarts at the
        next frame once speaking stops, so the visitor gets the full timeout to answer.
        """
        if self._speaking and not speaking:
            self._listen_start = None
            self._timed_out = False
        self._speaking = speaking

    def reset(self, t: float) -> None:
        """Forget any utterance in progress and start listening afresh at time ``t``."""
        self._state = "waiting"
        self._onset = None
        self._listen_start = t
        self._timed_out = False
        self._complete = False

    def _thresholds(self) -> tuple[float, float]:
        s = self.settings
        boost = s.speaking_threshold_boost if self._speaking else 0.0
        return min(1.0, s.speech_threshold + boost), min(1.0, s.silence_threshold + boost)

    def _end(self, t: float, end: float, reason: EndReason) -> SpeechEnded:
        event = SpeechEnded(t=t, start=self._start, end=end, reason=reason)
        self._state = "waiting"
        self._onset = None
        self._listen_start = t
        self._timed_out = False
        self._complete = False
        return event

    def process(
        self, prob: float, t: float, frame_s: float = 0.032, *, clear: bool = False
    ) -> list[Event]:
        """Feed one frame; ``t`` is the time at the end of the frame. Returns new events.

        ``clear``: while the box speaks, the echo gate found the frame to be plainly not our own
        voice (what its room model leaves is at least a quarter of the echo: a visitor within
        ~6 dB of the echo or louder). A voiced run of clear frames interrupts after
        ``bargein_clear_speech_s``; leaked echo is seldom clear, and otherwise waits for
        ``bargein_min_speech_s`` like any doubtful run."""
        s = self.settings
        speech_thr, silence_thr = self._thresholds()
        frame_start = t - frame_s
        events: list[Event] = []
        if self._listen_start is None:
            self._listen_start = frame_start

        if self._state == "waiting":
            if self._onset is None:
                if prob >= speech_thr:
                    self._onset = frame_start
                    self._onset_clear = clear
            elif prob < silence_thr:
                self._onset = None  # a click: the voiced run was too short
            else:
                self._onset_clear = self._onset_clear and clear
            need = s.min_speech_s
            if self._speaking:
                quick = self._onset_clear and s.bargein_clear_speech_s < s.bargein_min_speech_s
                need = s.bargein_clear_speech_s if quick else s.bargein_min_speech_s
            if self._onset is not None and t - self._onset >= need - _EPS:
                self._start = self._onset
                self._onset = None
                self._state = "speech"
                events.append(SpeechStarted(t=self._start))
            elif (
                self._onset is None
                and not self._speaking
                and not self._timed_out
                and t - self._listen_start >= s.no_speech_timeout_s - _EPS
            ):
                self._timed_out = True
                events.append(NoSpeechTimeout(t=t))
        elif self._state == "speech":
            if prob < silence_thr:
                self._state = "trailing"
                self._silence_start = frame_start
                events.append(SilenceStarted(t=frame_start))
        elif prob >= speech_thr:  # trailing, and clear speech came back
            self._state = "speech"
            events.append(SpeechResumed(t=frame_start))

        if self._state == "trailing":
            silent = t - self._silence_start
            if self._complete and silent >= s.short_hangover_s - _EPS:
                reason: EndReason = "short_hangover" if silent < s.hangover_s else "hangover"
                events.append(self._end(t, self._silence_start, reason))
            elif silent >= s.hangover_s - _EPS:
                events.append(self._end(t, self._silence_start, "hangover"))
        if self._state != "waiting" and t - self._start >= s.max_utterance_s - _EPS:
            end = t if self._state == "speech" else self._silence_start
            events.append(self._end(t, end, "max_length"))
        return events


def segment_probs(
    probs: Iterable[float],
    settings: SegmenterSettings | None = None,
    *,
    frame_s: float = 0.032,
    t0: float = 0.0,
) -> list[Event]:
    """Run a fresh segmenter over a whole probability sequence (frame i ends at t0+(i+1)*frame_s).

    For offline use (``appliance demo`` on a WAV file) and tests.
    """
    seg = Segmenter(settings)
    seg.reset(t0)
    events: list[Event] = []
    for i, p in enumerate(probs):
        events.extend(seg.process(p, t0 + (i + 1) * frame_s, frame_s))
    return events


def segment_samples(
    start: float,
    end: float,
    *,
    sample_rate: int,
    pre_roll_s: float = 0.3,
    post_roll_s: float = 0.0,
    buffer_start: float = 0.0,
    buffer_len: int | None = None,
) -> tuple[int, int]:
    """Sample indexes ``[i0, i1)`` of a segment in a buffer starting at time ``buffer_start``.

    The start is moved back by ``pre_roll_s`` (so the first syllable is not cut) and the end
    forward by ``post_roll_s``; both are clamped to ``[0, buffer_len]`` (``buffer_len`` None =
    no upper clamp). ``i0 <= i1`` always holds.
    """
    if sample_rate <= 0:
        raise ValueError("sample_rate must be > 0")
    if pre_roll_s < 0 or post_roll_s < 0:
        raise ValueError("pre_roll_s and post_roll_s must be >= 0")
    i0 = round((start - pre_roll_s - buffer_start) * sample_rate)
    i1 = round((end + post_roll_s - buffer_start) * sample_rate)
    hi = buffer_len if buffer_len is not None else max(i0, i1, 0)
    i0 = min(max(i0, 0), hi)
    i1 = min(max(i1, i0), hi)
    return i0, i1
