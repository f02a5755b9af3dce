"""Shared real-model fixtures for the voice tests (import them explicitly into a test module).

Models load once per test session (cached loaders); the fixtures are thin wrappers.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from appliance.audio.resample import resample
from appliance.demo import read_wav
from appliance.inference import InferenceSettings
from appliance.models_manifest import ModelFile, load_manifest
from appliance.voice.moonshine import MoonshineAsr
from appliance.voice.tts import PiperTts
from appliance.voice.vad import SileroVad

SETTINGS = InferenceSettings(providers="cpu")
QUESTION = "What time does the museum open on Sunday?"


@functools.cache
def manifest() -> dict[str, ModelFile]:
    return load_manifest()


@functools.cache
def load_tts() -> PiperTts:
    """The Piper voice without its sampling noise: Piper draws random noise in the graph, so
    the same sentence sounded different in every test session and a test passed or failed by
    the draw (the echo gate's visitor frames: 3 loud frames one run, 12 the next). With both
    noise scales at 0 a sentence is the same audio every run (the voice's mean rendition)."""
    tts = PiperTts.load(SETTINGS, manifest())
    tts.config = dataclasses.replace(tts.config, noise_scale=0.0, noise_w=0.0)
    return tts


@functools.cache
def load_asr() -> MoonshineAsr:
    return MoonshineAsr.load(SETTINGS, manifest())


@functools.cache
def speech_16k(text: str) -> npt.NDArray[np.float32]:
    """`text` spoken by the Piper voice, resampled to 16 kHz (cached)."""
    audio = load_tts().synthesize(text)
    out = resample(audio, load_tts().sample_rate, 16000)
    out.setflags(write=False)
    return out


def clip_16k(name: str) -> npt.NDArray[np.float32]:
    """A recorded cut from tests/data/asr (live cuts the benches found hard), 16 kHz mono."""
    return read_wav(Path(__file__).parent / "data" / "asr" / name)


@pytest.fixture
def tts() -> PiperTts:
    return load_tts()


@pytest.fixture
def asr() -> MoonshineAsr:
    return load_asr()


@pytest.fixture
def vad() -> SileroVad:
    # Fresh per test: the VAD is stateful and cheap to load.
    return SileroVad.load(SETTINGS, manifest(), check_hash=False)


@pytest.fixture
def question_16k() -> npt.NDArray[np.float32]:
    return speech_16k(QUESTION)
