"""Silero VAD on real audio: Piper speech, silence, low white noise."""

from __future__ import annotations

import numpy as np
import pytest
from voicefixtures import question_16k, vad  # noqa: F401  (fixtures)

from appliance.voice.vad import FRAME, SileroVad, frames


def test_frames_split_and_pad() -> None:
    audio = np.arange(2 * FRAME + 100, dtype=np.float32)
    fs = list(frames(audio))
    assert [len(f) for f in fs] == [FRAME, FRAME]
    assert fs[1][0] == FRAME
    padded = list(frames(audio, pad_last=True))
    assert len(padded) == 3 and padded[2][99] == 2 * FRAME + 99 and padded[2][100] == 0.0


def test_speech_scores_high_in_voiced_part(
    vad: SileroVad,  # noqa: F811
    question_16k: np.ndarray,  # noqa: F811
) -> None:
    # Pad with silence so the clip has a clear unvoiced lead-in and tail.
    pad = np.zeros(16000 // 2, np.float32)
    probs = vad.probs(np.concatenate([pad, question_16k, pad]))
    lead = len(pad) // FRAME
    speech = probs[lead + 5 : lead + len(question_16k) // FRAME - 5]
    assert np.median(speech) > 0.9
    assert np.mean(speech > 0.5) > 0.8
    assert np.max(probs[: lead - 1]) < 0.1  # silence before the speech
    assert np.max(probs[-(lead - 10) :]) < 0.2  # silence after it (the model's hangover decays)


def test_silence_and_low_noise_score_low(vad: SileroVad) -> None:  # noqa: F811
    silence = np.zeros(16000 * 2, np.float32)
    assert np.max(vad.probs(silence)) < 0.05
    vad.reset()
    noise = np.random.default_rng(1).normal(0.0, 0.01, 16000 * 2).astype(np.float32)  # -40 dBFS
    assert np.max(vad.probs(noise)) < 0.2


def test_state_carries_and_reset_forgets(
    vad: SileroVad,  # noqa: F811
    question_16k: np.ndarray,  # noqa: F811
) -> None:
    chunk = question_16k[16000 : 16000 + 8 * FRAME]
    vad.warm_up()  # must leave no state behind
    first = vad.probs(chunk)
    second = vad.probs(chunk)  # continues from the state the first pass left
    vad.reset()
    again = vad.probs(chunk)
    vad.warm_up()
    np.testing.assert_allclose(vad.probs(chunk), first, atol=1e-6)
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert not np.allclose(second[:2], first[:2], atol=1e-3)


def test_wrong_frame_size(vad: SileroVad) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="512 samples"):
        vad.prob(np.zeros(480, np.float32))
