"""Wake word (pymicro-wakeword, hey_mycroft) on synthesised speech: espeak-ng and Piper.

espeak-ng reads "Mycroft" as "mick-roft"; the model was trained on "my-croft", so espeak gets
the phrase spelled "hey my croft". Real models, no mocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from audiosynth import HAVE_ESPEAK, RATE, chords, espeak, pink_noise, set_level
from voicefixtures import load_tts, manifest

from appliance.audio.resample import resample
from appliance.models_manifest import ModelError
from appliance.voice.wake import (
    WakeSettings,
    WakeWordDetector,
    available_models,
    manifest_id,
    wake_phrase,
)

pytestmark = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed")

F32 = np.ndarray
VOICES = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
QUESTION = "where are the toilets?"


def scene(speech: F32, level_dbfs: float = -24.0, seed: int = 0) -> F32:
    """0.5 s of room noise, the speech, 1 s more; noise at -60 dBFS throughout."""
    x = np.concatenate(
        (np.zeros(RATE // 2, np.float32), set_level(speech, level_dbfs), np.zeros(RATE, np.float32))
    )
    return x + pink_noise(len(x), np.random.default_rng(seed)) * np.float32(1e-3)


def count(x: F32, block: int = 512, det: WakeWordDetector | None = None) -> WakeWordDetector:
    d = det if det is not None else WakeWordDetector()
    for i in range(0, len(x), block):
        d.process(x[i : i + block])
    return d


@pytest.mark.parametrize("voice", VOICES)
def test_espeak_voices_saying_the_wake_word_are_detected_once(voice: str) -> None:
    for speed in (140, 175):
        for text in ("hey my croft", f"hey my croft, {QUESTION}"):
            x = scene(espeak(text, voice, speed))
            d = count(x)
            assert d.detections == 1, (voice, speed, text)
            # It fires on the phrase, not on the question after it.
            assert d.last_detection_sample is not None
            assert d.last_detection_sample < RATE // 2 + len(espeak("hey my croft", voice, speed))
            assert d.last_detection_sample > RATE // 2


@pytest.mark.parametrize("voice", VOICES)
def test_the_same_sentence_without_the_wake_word_is_not(voice: str) -> None:
    for speed in (140, 175):
        for text in (QUESTION.capitalize(), f"Hey, {QUESTION}", "Hello, I need some help."):
            d = count(scene(espeak(text, voice, speed)))
            assert d.detections == 0, (voice, speed, text)


def test_piper_voice_saying_the_wake_word_is_detected() -> None:
    tts = load_tts()
    for text in ("Hey Mycroft.", f"Hey Mycroft, {QUESTION}"):
        for length_scale in (0.85, 1.0, 1.25):
            audio = resample(tts.synthesize(text, length_scale=length_scale), tts.sample_rate, RATE)
            assert count(scene(audio)).detections == 1, (text, length_scale)
    audio = resample(tts.synthesize(QUESTION.capitalize()), tts.sample_rate, RATE)
    assert count(scene(audio)).detections == 0


def test_noise_music_and_silence_do_not_wake_it() -> None:
    rng = np.random.default_rng(7)
    d = WakeWordDetector()
    for x in (
        np.zeros(10 * RATE, np.float32),
        pink_noise(20 * RATE, rng) * np.float32(10 ** (-30 / 20)),
        set_level(chords(20.0, rng), -24),
        (rng.standard_normal(5 * RATE) * 0.1).astype(np.float32),
    ):
        count(x, det=d)
    assert d.detections == 0
    assert d.peak_probability < 0.5


def test_a_detection_resets_and_the_refractory_period_suppresses_a_repeat() -> None:
    phrase = espeak("hey my croft", "en-us", 175)
    gap = np.zeros(int(0.3 * RATE), np.float32)
    twice = np.concatenate((phrase, gap, phrase))  # the second one within 2 s of the first
    d = count(scene(twice), det=WakeWordDetector(WakeSettings(refractory_s=2.0)))
    assert d.detections == 1 and d.suppressed == 1
    # Without the refractory period the second phrase fires too, but the first does not
    # fire twice: the model was reset after its hit.
    d0 = count(scene(twice), det=WakeWordDetector(WakeSettings(refractory_s=0.0)))
    assert d0.detections == 2
    # The library alone keeps reporting the first phrase for many inferences.
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    mww, feats = MicroWakeWord.from_builtin(Model.HEY_MYCROFT), MicroWakeWordFeatures()
    pcm = np.clip(np.rint(scene(phrase) * 32767), -32768, 32767).astype(np.int16).tobytes()
    above = sum(
        bool(mww.process_streaming(f))
        for i in range(0, len(pcm) - 319, 320)
        for f in feats.process_streaming(pcm[i : i + 320])
    )
    assert above > 3
    # After the refractory period it fires again.
    later = np.concatenate((phrase, np.zeros(2 * RATE, np.float32), phrase))
    assert count(scene(later)).detections == 2


@pytest.mark.parametrize("block", [160, 480, 512, 1000, 7])
def test_block_size_does_not_change_where_it_fires(block: int) -> None:
    x = scene(espeak("hey my croft", "en-gb-x-rp", 160))
    ref = count(x, block=len(x))
    d = count(x, block=block)
    assert d.detections == ref.detections == 1
    assert d.last_detection_sample == ref.last_detection_sample
    assert d.samples == len(x) // 160 * 160


def test_models_phrases_and_settings() -> None:
    assert available_models() == ["alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"]
    assert wake_phrase("hey_mycroft") == "Hey Mycroft"
    assert wake_phrase("okay_nabu") == "Okay Nabu"
    d = WakeWordDetector()
    assert d.model == "hey_mycroft" and d.threshold == pytest.approx(0.95)
    assert d.phrase == "Hey Mycroft" and d.languages == ["en"]
    assert WakeWordDetector(WakeSettings(model="alexa", threshold=0.6)).threshold == 0.6
    with pytest.raises(ValueError, match=r"unknown wake-word model 'hey_siri'.*hey_mycroft"):
        WakeSettings(model="hey_siri")
    with pytest.raises(ValueError, match="unknown wake-word model"):
        wake_phrase("nope")
    with pytest.raises(ValueError, match="threshold"):
        WakeSettings(threshold=1.5)


def test_load_checks_the_weights_against_the_manifest() -> None:
    m = manifest()
    for name in available_models():
        assert manifest_id(name) in m
    d = WakeWordDetector.load(WakeSettings(), m)
    assert d.model == "hey_mycroft"
    with pytest.raises(ModelError, match="wake_hey_mycroft: no entry"):
        WakeWordDetector.load(WakeSettings(), {})
