"""The microphone front end (WebRTC AEC3 + NS via pywebrtc-audio) on a synthetic room.

Far end: the kiosk's own Piper voice. Echo: the far end through a room impulse response
(direct path after 20-80 ms at -6..-20 dB, then a decaying noise tail, RT60 0.25 s), plus
pink noise at -65 dBFS. The visitor: espeak-ng. Real processing, no mocks.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from audiosynth import (
    HAVE_ESPEAK,
    RATE,
    convolve,
    espeak,
    pink_noise,
    rms_db,
    room_ir,
    set_level,
)
from voicefixtures import speech_16k

from appliance.audio.farend import FarEndTap, MicBlock
from appliance.audio.frontend import (
    DELAY_SAMPLES,
    FRAME,
    AudioFrontEnd,
    FarAligner,
    FrontEndSettings,
    lead_samples,
    reference_span,
)

pytestmark = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed")

F32 = np.ndarray
KIOSK = (
    "Welcome to the museum. The exhibition on the second floor opens at ten.",
    "You can buy tickets at the desk or on our website.",
    "The cafe is on the ground floor, next to the cloakroom.",
    "Audio guides are available in six languages.",
)
NOISE_DBFS = -65.0


@functools.cache
def far_speech() -> F32:
    """~20 s of the kiosk talking (Piper), -20 dBFS, short pauses between sentences."""
    gap = np.zeros(RATE // 4, dtype=np.float32)
    parts = [x for s in KIOSK * 2 for x in (set_level(speech_16k(s), -20), gap)]
    out = np.concatenate(parts)
    out.setflags(write=False)
    return out


def visitor_voice() -> F32:
    return espeak("Excuse me, where are the toilets? I cannot find them.", "en-gb-x-rp+f3", 160)


def visitor(seconds_at: float, n: int, level_dbfs: float) -> F32:
    """The visitor (espeak, female voice) at `level_dbfs` starting `seconds_at` into n samples."""
    v = set_level(visitor_voice(), level_dbfs)
    out = np.zeros(n, dtype=np.float32)
    s = int(seconds_at * RATE)
    out[s : s + len(v)] = v[: n - s]
    return out


def room(far: F32, *, delay_s: float, gain_db: float, seed: int = 0) -> tuple[F32, F32]:
    """(echo, noise) for `far` played into the synthetic room."""
    rng = np.random.default_rng(seed)
    echo = convolve(far, room_ir(rng, delay_s=delay_s, gain_db=gain_db, rt60_s=0.25))
    noise = pink_noise(len(far), rng) * np.float32(10 ** (NOISE_DBFS / 20))
    return echo, noise


def shifted(x: F32, samples: int) -> F32:
    """x delayed by `samples` (negative: advanced), same length."""
    if samples >= 0:
        return np.concatenate((np.zeros(samples, np.float32), x[: len(x) - samples]))
    return np.concatenate((x[-samples:], np.zeros(-samples, np.float32)))


def run(
    mic: F32, far: F32 | None, settings: FrontEndSettings | None = None, block: int = 512
) -> tuple[F32, AudioFrontEnd]:
    fe = AudioFrontEnd(settings)
    parts = [
        fe.process(mic[i : i + block], None if far is None else far[i : i + block])
        for i in range(0, len(mic), block)
    ]
    return np.concatenate(parts), fe


def frame_energy(x: F32) -> F32:
    n = len(x) // FRAME
    f = x[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return np.einsum("ij,ij->i", f, f)


def erle_db(mic: F32, out: F32, far: F32, from_s: float) -> float:
    """10·log10(mic energy / output energy) over the frames from `from_s` on in which the
    far end plays (output re-aligned by the front end's re-framing delay)."""
    o = out[DELAY_SAMPLES:]
    en, eo, ef = frame_energy(mic[: len(o)]), frame_energy(o), frame_energy(far[: len(o)])
    use = ef > FRAME * 10 ** (-55 / 10)
    use[: int(from_s * 100)] = False
    return float(10 * np.log10(en[use].sum() / eo[use].sum()))


# -- echo cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("delay_s", "gain_db"), [(0.02, -6.0), (0.05, -12.0), (0.08, -20.0)])
def test_erle_after_convergence_is_at_least_25_db(delay_s: float, gain_db: float) -> None:
    far = far_speech()
    echo, noise = room(far, delay_s=delay_s, gain_db=gain_db)
    mic = echo + noise
    for settings in (FrontEndSettings(noise_suppression=False), FrontEndSettings()):
        out, fe = run(mic, far, settings)
        measured = erle_db(mic, out, far, from_s=5.0)
        assert measured >= 25.0, (settings, measured)
        st = fe.stats()
        # Our own estimate (median of 200 ms blocks over the last 2 s) agrees roughly.
        assert st.erle_db is not None and abs(st.erle_db - measured) < 10.0, (st, measured)
        assert st.frames == len(mic) // FRAME and st.far_frames > st.frames // 2
        assert 0 < st.cpu_us_per_10ms < 2000


def test_double_talk_keeps_the_visitors_voice() -> None:
    """A visitor talks over the kiosk at the echo's level, after convergence: their voice
    comes through within a few dB while the echo is still cancelled."""
    far = far_speech()
    echo, noise = room(far, delay_s=0.04, gain_db=-10.0)
    at = int(9.0 * RATE)
    span = slice(at, at + len(visitor_voice()))
    v = visitor(9.0, len(far), rms_db(echo[span]))  # as loud as the echo over its span
    out_dt, _ = run(echo + noise + v, far)
    out_echo, _ = run(echo + noise, far)
    d = DELAY_SAMPLES + 14 * RATE // 1000  # re-framing + WebRTC's delay (EC + NS)
    e_dt = float(np.sum(out_dt[span.start + d : span.stop + d].astype(np.float64) ** 2))
    e_echo = float(np.sum(out_echo[span.start + d : span.stop + d].astype(np.float64) ** 2))
    e_voice = float(np.sum(v[span].astype(np.float64) ** 2))
    kept_db = 10 * np.log10(max(e_dt - e_echo, 1e-12) / e_voice)
    assert -5.0 < kept_db < 1.0, kept_db  # measured: -2.4 dB
    # The echo alone over the same stretch stays far below the voice.
    assert 10 * np.log10(e_echo / e_voice) < -20.0


def test_a_lagging_reference_breaks_cancellation_a_leading_one_does_not() -> None:
    far = far_speech()
    delay = 0.03
    echo, noise = room(far, delay_s=delay, gain_db=-6.0)
    mic = echo + noise
    result = {}
    for lead_ms in (-20, -5, 20, 100):
        # The reference the canceller gets leads the echo by lead_ms (negative: lags it).
        ref = shifted(far, round((delay * 1000 - lead_ms) * RATE / 1000))
        out, _ = run(mic, ref, FrontEndSettings(noise_suppression=False))
        result[lead_ms] = erle_db(mic, out, far, from_s=5.0)
    assert result[20] >= 30.0 and result[100] >= 30.0, result
    assert result[-5] < result[20] - 15.0 and result[-20] < result[20] - 15.0, result


@pytest.mark.parametrize("block", [1, 100, 159, 161, 480, 512, 1000, 4096])
def test_any_block_size_gives_the_output_of_10_ms_blocks(block: int) -> None:
    far = far_speech()[: 4 * RATE]
    echo, noise = room(far, delay_s=0.03, gain_db=-6.0)
    mic = echo + noise + visitor(2.0, len(far), -30.0)
    ref, _ = run(mic, far, block=FRAME)
    out, _ = run(mic, far, block=block)
    assert len(out) == len(mic)
    np.testing.assert_array_equal(out, ref)


def test_irregular_blocks_give_the_same_output() -> None:
    far = far_speech()[: 3 * RATE]
    mic = room(far, delay_s=0.03, gain_db=-6.0)[0]
    ref, _ = run(mic, far, block=FRAME)
    fe = AudioFrontEnd()
    rng = np.random.default_rng(5)
    cuts = np.unique(np.concatenate(([0], rng.integers(0, len(mic), 60), [len(mic)])))
    out = np.concatenate([fe.process(mic[a:b], far[a:b]) for a, b in itertools.pairwise(cuts)])
    np.testing.assert_array_equal(out, ref)


def test_silent_far_end_leaves_near_speech_alone() -> None:
    """No playback, echo cancellation on: the visitor's voice is passed as the same chain
    without the canceller passes it (high-pass + NS), only 8 ms later."""
    n = 6 * RATE
    mic = visitor(1.0, n, -26.0) + pink_noise(n, np.random.default_rng(1)) * np.float32(1e-3)
    out, fe = run(mic, np.zeros(n, np.float32))
    plain, _ = run(mic, None, FrontEndSettings(echo_cancellation=False))
    out_none, _ = run(mic, None)
    np.testing.assert_array_equal(out, out_none)  # far=None is silence
    lag = 8 * RATE // 1000  # the canceller's own delay
    a, b = out[lag:], plain[: len(plain) - lag]
    err = rms_db(a - b) - rms_db(b)
    assert err < -25.0, err
    assert abs(rms_db(out) - rms_db(mic)) < 1.0
    assert fe.stats().far_frames == 0 and fe.erle_db is None and not fe.echo_active


def test_delay_s_is_where_a_click_comes_out() -> None:
    for settings in (
        FrontEndSettings(),
        FrontEndSettings(noise_suppression=False),
        FrontEndSettings(echo_cancellation=False),
    ):
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(3 * RATE) * 0.01).astype(np.float32)
        at = 2 * RATE + 37
        x[at] += 0.8
        out, fe = run(x, None, settings, block=480)
        peak = int(np.argmax(np.abs(out[at - 100 : at + 1000]))) + at - 100
        assert peak - at == round(fe.delay_s * RATE), settings


def test_echo_active_follows_the_far_end_and_its_tail() -> None:
    fe = AudioFrontEnd(FrontEndSettings(echo_tail_s=0.3))
    quiet = np.zeros(1600, np.float32)
    loud = set_level(far_speech()[RATE : RATE + 1600], -20)
    assert not fe.echo_active
    fe.process(quiet, loud)
    assert fe.echo_active
    fe.process(np.zeros(3200, np.float32), np.zeros(3200, np.float32))  # 0.2 s later
    assert fe.echo_active
    fe.process(np.zeros(3200, np.float32), np.zeros(3200, np.float32))  # 0.4 s later
    assert not fe.echo_active


def test_inputs_are_checked() -> None:
    fe = AudioFrontEnd()
    with pytest.raises(ValueError, match="far has 100 samples for 160"):
        fe.process(np.zeros(160, np.float32), np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="ns_level"):
        FrontEndSettings(ns_level=4)
    with pytest.raises(ValueError, match="reference_lead_ms"):
        FrontEndSettings(reference_lead_ms=-1)
    assert len(fe.process(np.zeros(0, np.float32))) == 0


# -- aligning the far end ----------------------------------------------------------------------


def test_reference_span_reads_the_reference_ahead() -> None:
    assert lead_samples(20.0) == 320
    assert reference_span(1000, 1512, 320) == (1320, 1832)
    assert reference_span(0, 10, 0) == (0, 10)
    with pytest.raises(ValueError, match="lagging"):
        reference_span(0, 10, -1)


def test_far_aligner_places_played_audio_ahead_of_the_mic_and_forwards_the_tap() -> None:
    """Playback at 16 kHz whose first sample reaches the speaker 0.1 s after the mic's
    first sample: with a 20 ms lead, it appears in the far end at 0.08 s."""
    tap, forward = FarEndTap(), FarEndTap()
    aligner = FarAligner(20.0, forward=forward)
    t0 = 1000.0
    tone = (0.5 * np.sin(np.arange(8000) * 0.1)).astype(np.float32)
    tap.push(t0 + 0.1, tone, RATE)
    got = []
    for k in range(10):
        block = MicBlock(np.zeros(512, np.float32), t0 + k * 512 / RATE)
        got.append(aligner.far_for(block, tap))
    far = np.concatenate(got)
    first = int(np.flatnonzero(np.abs(far) > 1e-3)[0])
    assert abs(first - round(0.08 * RATE)) <= 2, first
    assert len(forward.drain()) == 1  # what was taken from the tap is passed on
