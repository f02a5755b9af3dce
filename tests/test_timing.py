"""Honest voice-to-voice timing: end of speech by the microphone's ADC clock, first reply audio
by the speaker's DAC clock (both device stamps on `time.monotonic()`, moved onto trio's clock),
with the frame's arrival / the sink's hand-over as the fallback for sources without a clock;
and the bench's comparison of the appliance's figure with its recording. Pure or on a
MockClock with a simulated device callback: nothing sleeps, no sound card."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trio
import trio.testing

from appliance.audio.devices import AudioSettings
from appliance.audio.farend import trio_time
from appliance.audio.playback import Playback, _Ring
from appliance.bench.voice import first_turn, timing_error
from appliance.voice.listening import FRAME, RATE, FrameClock, speech_end
from appliance.voice.local import PlaybackSink


def _on_trio(t_mono: float) -> float:
    return t_mono + trio.current_time() - time.monotonic()


# -- the microphone side ----------------------------------------------------------------------


def test_end_of_speech_is_when_the_sample_entered_the_microphone() -> None:
    clock = FrameClock()
    # Block 0 (frames 0-1) entered the mic at 100.0 s; the pipeline got each frame 0.3 s late.
    clock.anchor(0, 100.0)
    clock.frame(FRAME, arrived=100.4)
    clock.frame(2 * FRAME, arrived=100.4)
    end = 1.5 * FRAME / RATE  # mid-frame 1
    assert clock.spoken_at(end, now=200.0) == pytest.approx(100.0 + end)
    assert clock.arrived_at(end, now=200.0) == 100.4
    # A dropped capture block: the next one re-anchors; frames fed before keep their times.
    clock.anchor(2 * FRAME, 100.0 + 3 * FRAME / RATE)
    clock.frame(3 * FRAME, arrived=100.5)
    assert clock.spoken_at(2.5 * FRAME / RATE, now=200.0) == pytest.approx(
        100.0 + 3.5 * FRAME / RATE
    )
    assert clock.spoken_at(end, now=200.0) == pytest.approx(100.0 + end)
    # Audio not fed yet: now.
    assert clock.spoken_at(10.0, now=200.0) == 200.0


def _utterance(noise: float = 0.0) -> np.ndarray:
    """1 s of "speech" (0.5 peak), a 40 ms fading tail, then 0.5 s of hangover, over noise."""
    rng = np.random.default_rng(1)
    voice = 0.5 * np.sin(np.arange(RATE) * 2 * np.pi * 200 / RATE)
    tail = 0.05 * np.linspace(1.0, 0.0, int(0.04 * RATE))
    x = np.concatenate([voice, tail, np.zeros(RATE // 2)])
    return (x + noise * rng.uniform(-1, 1, len(x))).astype(np.float32)


def test_speech_ends_at_the_last_loud_sample_not_at_the_vad_end() -> None:
    x = _utterance()
    vad_end = int(1.1 * RATE)  # Silero's end: 60-110 ms after the voice on real questions
    last = int(np.flatnonzero(np.abs(x) > 0.5 * 10 ** (-35 / 20))[-1])
    assert RATE < last < RATE + int(0.04 * RATE)  # inside the fading tail
    assert speech_end(x, vad_end) == last + 1
    # A VAD that ended a little early: up to one frame after its end is searched too.
    assert speech_end(x, last - FRAME // 2) == last + 1
    # Room noise: the level stays above it (2x its peak), so the end is not lost in it; the
    # noise riding on the fading tail moves it by a few ms.
    assert abs(speech_end(_utterance(noise=0.003), vad_end) - last) < 0.005 * RATE
    # Noise as loud as the voice: nothing to refine, the VAD's end stands.
    assert speech_end(_utterance(noise=0.6), vad_end) == vad_end
    # Cut at max length (no hangover after the end), or no voice at all: the VAD's end.
    assert speech_end(x[:vad_end], vad_end) == vad_end
    assert speech_end(np.zeros(2 * RATE, np.float32), RATE) == RATE


def test_without_a_device_clock_end_of_speech_is_the_frame_arrival() -> None:
    clock = FrameClock()
    clock.anchor(0, None)  # a browser's or a file's audio
    clock.frame(FRAME, arrived=5.0)
    clock.frame(2 * FRAME, arrived=5.1)
    assert clock.spoken_at(1.5 * FRAME / RATE, now=9.0) == 5.1
    # A clock that goes away (end of input: made-up silence) is not extrapolated.
    clock.anchor(2 * FRAME, 50.0)
    clock.frame(3 * FRAME, arrived=5.2)
    clock.anchor(3 * FRAME, None)
    clock.frame(4 * FRAME, arrived=5.3)
    assert clock.spoken_at(3 * FRAME / RATE, now=9.0) == pytest.approx(50.0 + FRAME / RATE)
    assert clock.spoken_at(4 * FRAME / RATE, now=9.0) == 5.3


async def test_device_stamps_move_onto_the_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    autojump_clock.jump(1234.5)  # trio's clock has its own origin
    t = time.monotonic() + 0.1
    assert trio_time(t) == pytest.approx(trio.current_time() + 0.1, abs=2e-3)


# -- the speaker side -------------------------------------------------------------------------


def test_the_ring_says_where_in_the_block_the_first_audible_sample_is() -> None:
    ring = _Ring()
    quiet_then_loud = np.zeros(300, np.float32)
    quiet_then_loud[250:] = 0.5
    ring.push(np.zeros(100, np.float32), gen=1)  # silent chunk: no audible sample
    ring.push(quiet_then_loud, gen=1)
    out = np.zeros(256, np.float32)
    filled, loud, dry = ring.pull(out)
    assert filled == 256 and loud is None and not dry  # sample 250 of chunk 2 is block index 350
    filled, loud, dry = ring.pull(out)
    assert filled == 144 and loud == (1, 350 - 256) and dry
    assert out[94] == 0.5 and out[93] == 0.0


def _device(pb: Playback, rate: int = 48000) -> None:
    """What `_serve` sets once a stream plays (no sound card here)."""
    pb.available, pb.rate = True, rate


async def test_first_reply_sample_is_timed_at_the_dac_not_when_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pb = Playback(AudioSettings())
    _device(pb)
    sink = PlaybackSink(pb)
    audio = np.full(4800, 0.5, np.float32)
    played = trio.Event()
    latency = 0.08  # the device's buffer: the sample plays this long after the callback

    async def device_callback() -> None:
        await trio.sleep(0.02)  # the next callback period
        out = np.zeros(960, np.float32)
        _, loud, _ = pb._ring.pull(out)
        assert loud is not None
        gen, i = loud
        dac = time.monotonic() + latency  # outputBufferDacTime on monotonic
        pb._first_out(gen, dac + i / 48000)
        played.set()

    async with trio.open_nursery() as n:
        n.start_soon(device_callback)
        queued = trio.current_time()
        await sink.play(audio, 48000)
        # play() returned only once the device took the sample: its DAC time is known.
        assert played.is_set()
    assert sink.first_sample_at is not None
    assert sink.first_sample_at == pytest.approx(queued + 0.02 + latency, abs=2e-3)


async def test_no_wait_without_a_device_and_a_bounded_one_without_a_callback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pb = Playback(AudioSettings())
    sink = PlaybackSink(pb)
    t0 = trio.current_time()
    await sink.play(np.full(100, 0.5, np.float32), 22050)  # no device: discarded at once
    assert trio.current_time() == t0 and sink.first_sample_at is None
    sink.stop()
    _device(pb)
    await sink.play(np.full(100, 0.5, np.float32), 22050)  # the device never calls back
    assert trio.current_time() - t0 == pytest.approx(0.5)
    assert sink.first_sample_at is None  # ReplySpeech then takes the current time
    # A barge-in releases a waiting play at once.
    pb = Playback(AudioSettings())
    _device(pb)
    sink = PlaybackSink(pb)
    async with trio.open_nursery() as n:
        n.start_soon(sink.play, np.full(100, 0.5, np.float32), 22050)
        await trio.sleep(0.1)
        t1 = trio.current_time()
        pb.stop()
    assert trio.current_time() == pytest.approx(t1)


# -- the bench: the appliance's figure against its recording ----------------------------------


def test_timing_error_is_the_appliance_figure_minus_the_recorded_one() -> None:
    pairs = [(500.0, 510.0), (430.0, 400.0), (None, 420.0), (600.0, None), (300.0, 305.0)]
    out = timing_error(pairs)
    assert out["timing_error_measured"] == 3
    assert out["timing_error_abs_p50_ms"] == 10.0
    assert out["timing_error_abs_p95_ms"] == pytest.approx(28.0)
    assert out["timing_error_mean_ms"] == pytest.approx(5.0)
    assert timing_error([])["timing_error_abs_p95_ms"] is None


def test_first_turn_is_set_against_later_turns_of_its_kind() -> None:
    kinds = ["faq", "faq", "off_topic", "faq", "faq"]
    out = first_turn(kinds, [700.0, 480.0, 1300.0, None, 520.0])
    assert out == {
        "first_turn_v2v_ms": 700.0,
        "later_same_kind_p50_ms": 500.0,
        "first_turn_excess_ms": 200.0,
    }
    assert first_turn(["faq"], [None])["first_turn_excess_ms"] is None
    assert first_turn(["faq"], [450.0])["later_same_kind_p50_ms"] is None
