"""Segmenter tests on synthetic VAD probability streams (32 ms frames, exact times)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.voice.segmenter import (
    Event,
    NoSpeechTimeout,
    Segmenter,
    SegmenterSettings,
    SilenceStarted,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
    segment_probs,
    segment_samples,
)

F = 0.032  # frame length
S = SegmenterSettings()


def frames(*runs: tuple[float, int]) -> list[float]:
    """[(prob, n_frames), ...] -> flat list of probabilities."""
    return [p for p, n in runs for _ in range(n)]


def approx_events(events: list[Event]) -> list[tuple[str, tuple[float | str, ...]]]:
    out: list[tuple[str, tuple[float | str, ...]]] = []
    for e in events:
        if isinstance(e, SpeechEnded):
            out.append(
                ("SpeechEnded", (round(e.t, 6), round(e.start, 6), round(e.end, 6), e.reason))
            )
        else:
            out.append((type(e).__name__, (round(e.t, 6),)))
    return out


def test_click_shorter_than_min_speech_is_ignored() -> None:
    # 4 frames = 0.128 s < 0.15 s, then silence.
    seg = Segmenter(S)
    seg.reset(0.0)
    events: list[Event] = []
    for i, p in enumerate(frames((0.0, 5), (0.9, 4), (0.1, 30))):
        events += seg.process(p, (i + 1) * F)
        assert seg.state == "waiting"
    assert events == []


def test_normal_utterance_ends_after_hangover_with_start_and_end() -> None:
    # 10 silent frames, 20 speech frames (0.32..0.96 s), then silence.
    events = segment_probs(frames((0.0, 10), (0.9, 20), (0.0, 40)))
    assert approx_events(events) == [
        # onset is the start of the voiced run, reported once 5 frames (0.16 s) have been voiced
        ("SpeechStarted", (0.32,)),
        ("SilenceStarted", (0.96,)),
        # 0.5 s hangover: 16 silent frames, decided at the end of the 16th
        ("SpeechEnded", (1.472, 0.32, 0.96, "hangover")),
    ]


def test_speech_started_is_emitted_when_min_speech_reached() -> None:
    seg = Segmenter(S)
    seg.reset(0.0)
    got = [seg.process(0.9, (i + 1) * F) for i in range(5)]
    assert got[:4] == [[], [], [], []]  # 0.128 s voiced: not yet
    assert got[4] == [SpeechStarted(t=0.0)]
    assert seg.state == "speech"


def test_speech_resumed_within_hangover_does_not_end() -> None:
    probs = frames((0.9, 10), (0.0, 10), (0.9, 10), (0.0, 10))
    events = segment_probs(probs)
    assert approx_events(events) == [
        ("SpeechStarted", (0.0,)),
        ("SilenceStarted", (0.32,)),
        ("SpeechResumed", (0.64,)),
        ("SilenceStarted", (0.96,)),
    ]
    seg = Segmenter(S)
    seg.reset(0.0)
    for i, p in enumerate(probs):
        seg.process(p, (i + 1) * F)
    assert seg.state == "trailing"


def test_complete_hint_uses_short_hangover() -> None:
    seg = Segmenter(S)
    seg.reset(0.0)
    events: list[Event] = []
    for i, p in enumerate(frames((0.9, 20), (0.0, 20))):
        if i == 10:
            seg.set_complete_hint(True)  # partial transcript became a complete question
        events += seg.process(p, (i + 1) * F)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1
    # 0.25 s of silence = 8 frames after 0.64 s
    assert ended[0].reason == "short_hangover"
    assert ended[0].t == pytest.approx(0.64 + 8 * F)
    assert ended[0].end == pytest.approx(0.64)


def test_complete_hint_set_late_ends_at_once() -> None:
    seg = Segmenter(S)
    seg.reset(0.0)
    for i, p in enumerate(frames((0.9, 20), (0.0, 10))):
        assert not any(isinstance(e, SpeechEnded) for e in seg.process(p, (i + 1) * F))
    # silence is already 0.32 s > short hangover: the next frame ends the utterance
    seg.set_complete_hint(True)
    events = seg.process(0.0, 31 * F)
    assert [type(e) for e in events] == [SpeechEnded]
    assert isinstance(events[0], SpeechEnded) and events[0].reason == "short_hangover"


def test_complete_hint_is_cleared_after_the_utterance() -> None:
    seg = Segmenter(S)
    seg.reset(0.0)
    seg.set_complete_hint(True)
    events: list[Event] = []
    probs = frames((0.9, 10), (0.0, 10), (0.9, 10), (0.0, 20))
    for i, p in enumerate(probs):
        events += seg.process(p, (i + 1) * F)
    reasons = [e.reason for e in events if isinstance(e, SpeechEnded)]
    assert reasons == ["short_hangover", "hangover"]


def test_max_length_ends_a_long_utterance() -> None:
    cfg = SegmenterSettings(max_utterance_s=1.0)
    events = segment_probs(frames((0.9, 100)), cfg)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert ended[0].reason == "max_length"
    assert ended[0].start == pytest.approx(0.0)
    # 1.0 s is reached at the end of frame 32 (1.024 s; 31 frames = 0.992 s)
    assert ended[0].t == pytest.approx(32 * F)
    assert ended[0].end == pytest.approx(32 * F)
    # speech continues: a new utterance starts right after
    after = events[events.index(ended[0]) + 1]
    assert isinstance(after, SpeechStarted)
    assert after.t == pytest.approx(32 * F)


def test_max_length_while_trailing_ends_at_silence_start() -> None:
    cfg = SegmenterSettings(max_utterance_s=1.0, hangover_s=2.0, short_hangover_s=0.25)
    events = segment_probs(frames((0.9, 25), (0.0, 20)), cfg)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1
    assert ended[0].reason == "max_length"
    assert ended[0].end == pytest.approx(25 * F)


def test_no_speech_timeout_fires_once() -> None:
    events = segment_probs(frames((0.0, 400)))  # 12.8 s of silence
    assert approx_events(events) == [("NoSpeechTimeout", (8.0,))]


def test_no_speech_timeout_restarts_after_reset_and_after_utterance() -> None:
    seg = Segmenter(S)
    seg.reset(10.0)
    events: list[Event] = []
    t = 10.0
    for p in frames((0.0, 100), (0.9, 10), (0.0, 300)):
        t += F
        events += seg.process(p, t)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "SpeechStarted",
        "SilenceStarted",
        "SpeechEnded",
        "NoSpeechTimeout",
    ]
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    timeout = events[-1]
    assert timeout.t == pytest.approx(ended.t + 8.0)


def test_no_timeout_while_speaking_and_full_timeout_after() -> None:
    seg = Segmenter(S)
    seg.reset(0.0)
    seg.set_speaking(True)
    events: list[Event] = []
    for i in range(300):  # 9.6 s of box speech, visitor silent
        events += seg.process(0.0, (i + 1) * F)
    assert events == []
    seg.set_speaking(False)
    for i in range(300, 600):
        events += seg.process(0.0, (i + 1) * F)
    assert approx_events(events) == [("NoSpeechTimeout", (round(300 * F + 8.0, 6),))]


def test_speaking_boost_suppresses_moderate_probabilities() -> None:
    probs = frames((0.6, 30), (0.0, 30))
    quiet = Segmenter(S)
    loud = Segmenter(S)
    loud.set_speaking(True)  # thresholds become 0.7 / 0.55
    got_quiet: list[Event] = []
    got_loud: list[Event] = []
    for i, p in enumerate(probs):
        got_quiet += quiet.process(p, (i + 1) * F)
        got_loud += loud.process(p, (i + 1) * F)
    assert any(isinstance(e, SpeechStarted) for e in got_quiet)
    assert got_loud == []


def test_speaking_boost_barge_in_with_clear_speech() -> None:
    seg = Segmenter(S)
    seg.set_speaking(True)
    events: list[Event] = []
    for i, p in enumerate(frames((0.95, 6))):
        events += seg.process(p, (i + 1) * F)
    assert len(events) == 1
    assert isinstance(events[0], SpeechStarted)
    assert events[0].t == pytest.approx(0.0)


def test_barge_in_needs_less_voiced_time_than_a_new_utterance() -> None:
    """While speaking, 3 voiced frames (96 ms >= bargein_min_speech_s 0.09 here) interrupt;
    when not speaking, the same run is a click (min_speech_s 0.15 needs 5 frames)."""
    probs = frames((0.95, 3), (0.0, 10))
    quick = SegmenterSettings(bargein_min_speech_s=0.09)
    speaking, idle = Segmenter(quick), Segmenter(quick)
    speaking.set_speaking(True)
    got_speaking: list[Event] = []
    got_idle: list[Event] = []
    for i, p in enumerate(probs):
        got_speaking += speaking.process(p, (i + 1) * F)
        got_idle += idle.process(p, (i + 1) * F)
    starts = [e for e in got_speaking if isinstance(e, SpeechStarted)]
    assert len(starts) == 1 and starts[0].t == pytest.approx(0.0)
    assert not any(isinstance(e, SpeechStarted) for e in got_idle)
    with pytest.raises(ValueError, match="bargein_min_speech_s"):
        SegmenterSettings(bargein_min_speech_s=-0.1)


@pytest.mark.parametrize(
    ("clear", "starts"),
    [
        ((True, True, True), True),  # plainly a visitor over our voice: 96 ms is enough
        ((False, False, False), False),  # not plainly (leaked echo looks like this): 150 ms
        ((True, False, True), False),  # one doubtful frame makes the run doubtful
    ],
)
def test_a_clear_voice_over_ours_barges_in_sooner(clear: tuple[bool, ...], starts: bool) -> None:
    seg = Segmenter(SegmenterSettings(bargein_min_speech_s=0.15, bargein_clear_speech_s=0.09))
    seg.set_speaking(True)
    events: list[Event] = []
    for i, p in enumerate(frames((0.95, 3), (0.0, 10))):
        events += seg.process(p, (i + 1) * F, clear=i < 3 and clear[i])
    assert any(isinstance(e, SpeechStarted) for e in events) is starts
    # Not speaking, "clear" means nothing: a new utterance needs min_speech_s.
    idle = Segmenter(SegmenterSettings(bargein_clear_speech_s=0.09))
    got = [
        e for i, p in enumerate(frames((0.95, 3))) for e in idle.process(p, (i + 1) * F, clear=True)
    ]
    assert got == []


def test_hysteresis_between_thresholds_keeps_state() -> None:
    # 0.4 is between silence (0.35) and speech (0.5) thresholds.
    # waiting: 0.4 alone never starts speech
    assert segment_probs(frames((0.4, 100))) == []
    # an onset at 0.6 continued by 0.4 frames becomes speech (voiced run continues)
    started = segment_probs(frames((0.6, 1), (0.4, 10)))
    assert [type(e) for e in started] == [SpeechStarted]
    # speech: 0.4 keeps speech going (no SilenceStarted)
    seg = Segmenter(S)
    seg.reset(0.0)
    events: list[Event] = []
    for i, p in enumerate(frames((0.9, 10), (0.4, 40))):
        events += seg.process(p, (i + 1) * F)
    assert [type(e) for e in events] == [SpeechStarted]
    assert seg.state == "speech"
    # trailing: 0.4 does not resume speech; the hangover keeps running
    events = segment_probs(frames((0.9, 10), (0.0, 2), (0.4, 14), (0.0, 5)))
    assert approx_events(events) == [
        ("SpeechStarted", (0.0,)),
        ("SilenceStarted", (0.32,)),
        ("SpeechEnded", (round(0.32 + 16 * F, 6), 0.0, 0.32, "hangover")),
    ]


def test_click_in_trailing_between_thresholds_then_silence_resets_onset() -> None:
    # a sub-threshold onset then a drop: the candidate onset is forgotten
    seg = Segmenter(S)
    seg.reset(0.0)
    out: list[Event] = []
    for i, p in enumerate(frames((0.9, 3), (0.2, 1), (0.9, 3), (0.2, 5))):
        out += seg.process(p, (i + 1) * F)
    assert out == []


def test_reset_forgets_utterance() -> None:
    seg = Segmenter(S)
    seg.reset(0.0)
    for i in range(10):
        seg.process(0.9, (i + 1) * F)
    assert seg.state == "speech"
    seg.reset(1.0)
    assert seg.state == "waiting"
    assert seg.process(0.0, 1.0 + F) == []


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="threshold"):
        SegmenterSettings(speech_threshold=0.3, silence_threshold=0.4)
    with pytest.raises(ValueError, match="short_hangover"):
        SegmenterSettings(hangover_s=0.2, short_hangover_s=0.3)
    with pytest.raises(ValueError, match="max_utterance_s"):
        SegmenterSettings(max_utterance_s=0)


@pytest.mark.parametrize(
    ("start", "end", "kwargs", "expected"),
    [
        (1.0, 2.0, {"sample_rate": 16000}, (11200, 32000)),
        (0.1, 0.5, {"sample_rate": 16000}, (0, 8000)),  # pre-roll clamped at 0
        (1.0, 2.0, {"sample_rate": 16000, "buffer_len": 24000}, (11200, 24000)),
        (1.0, 2.0, {"sample_rate": 16000, "buffer_start": 0.5}, (3200, 24000)),
        (1.0, 2.0, {"sample_rate": 16000, "pre_roll_s": 0.0, "post_roll_s": 0.1}, (16000, 33600)),
        (5.0, 6.0, {"sample_rate": 16000, "buffer_len": 100}, (100, 100)),  # past the end
    ],
)
def test_segment_samples(
    start: float, end: float, kwargs: dict[str, float], expected: tuple[int, int]
) -> None:
    assert segment_samples(start, end, **kwargs) == expected  # type: ignore[arg-type]


def test_segment_samples_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        segment_samples(0.0, 1.0, sample_rate=0)


# -- properties -----------------------------------------------------------------------------

prob_runs = st.lists(
    st.tuples(st.sampled_from([0.0, 0.2, 0.4, 0.45, 0.6, 0.9, 1.0]), st.integers(1, 40)),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    runs=prob_runs,
    hints=st.lists(st.booleans(), min_size=1, max_size=8),
    speaking=st.booleans(),
)
def test_events_are_well_ordered(
    runs: list[tuple[float, int]], hints: list[bool], speaking: bool
) -> None:
    cfg = SegmenterSettings(max_utterance_s=3.0, no_speech_timeout_s=2.0)
    seg = Segmenter(cfg)
    seg.reset(0.0)
    seg.set_speaking(speaking)
    events: list[Event] = []
    for i, p in enumerate(frames(*runs)):
        seg.set_complete_hint(hints[i % len(hints)])
        events += seg.process(p, (i + 1) * F)

    in_utt = False
    trailing = False
    last_t = -1.0
    start = 0.0
    for e in events:
        if isinstance(e, SpeechStarted):
            assert not in_utt, "two SpeechStarted without an end"
            in_utt, trailing, start = True, False, e.t
        elif isinstance(e, SilenceStarted):
            assert in_utt and not trailing
            trailing = True
        elif isinstance(e, SpeechResumed):
            assert in_utt and trailing
            trailing = False
        elif isinstance(e, SpeechEnded):
            assert in_utt, "SpeechEnded without SpeechStarted"
            assert e.start == start
            assert e.start <= e.end <= e.t + 1e-9
            assert e.end - e.start < cfg.max_utterance_s + F  # decided per frame
            in_utt = trailing = False
        else:
            assert isinstance(e, NoSpeechTimeout)
            assert not in_utt and not speaking
        # decision times never go backwards
        decided = e.t if not isinstance(e, SpeechStarted | SpeechResumed | SilenceStarted) else None
        if decided is not None:
            assert decided >= last_t - 1e-9
            last_t = decided
    assert seg.state == ("waiting" if not in_utt else ("trailing" if trailing else "speech"))


@settings(max_examples=100, deadline=None)
@given(runs=prob_runs)
def test_silent_stream_only_times_out(runs: list[tuple[float, int]]) -> None:
    # below the silence threshold nothing but a timeout can ever happen
    probs = [min(p, 0.3) for p in frames(*runs)]
    events = segment_probs(probs)
    assert all(isinstance(e, NoSpeechTimeout) for e in events)
    assert len(events) == (1 if len(probs) * F >= 8.0 - 1e-6 else 0)
