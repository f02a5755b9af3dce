"""Wake word: microWakeWord models through pymicro-wakeword (TFLite, Apache-2.0).

`WakeWordDetector.process(samples)` takes 16 kHz float32 audio in blocks of any size (run it
on the front end's echo-cancelled, noise-suppressed output, never after AGC) and returns True
when the wake word ended in that block. Inside, audio becomes int16 10 ms chunks (what the
feature frontend wants); the model infers every third chunk on 30 ms of features and
averages its last five outputs (~150 ms), which is compared with the threshold.

The library has no debounce: a hit stays above the threshold for up to ~1.4 s ("Hey
Mycroft"). After a detection we reset both the model (its streaming state) and the feature
frontend, and ignore further hits for `refractory_s` of audio (resetting on those too).

Built-in models (`available_models()`): hey_mycroft (the default: no false wake in 44 min of
synthetic speech, babble, music and noise, highest non-wake probability 0.20 against its 0.95
cutoff, `tools/wake_measure.py negatives`; but said alone, near misses such as "hey micro",
"hey my car", "my craft", "hey my friend" do fire it, at any threshold that keeps the real
phrase: a second check on the transcript is the remedy, not the cutoff), okay_nabu
(multilingual, but "okay, no" / "okay, now" trigger it), hey_jarvis (strict: misses many
voices), alexa (Amazon's trademark, would wake visitors' devices). The names are third
parties' marks; the licence grants none.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pymicro_wakeword
from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

from appliance.models_manifest import ModelError, ModelFile, require

__all__ = [
    "WakeSettings",
    "WakeWordDetector",
    "available_models",
    "manifest_id",
    "wake_phrase",
]

F32 = npt.NDArray[np.float32]
RATE = 16000
CHUNK = RATE // 100  # 10 ms: one feature vector
_MODELS_DIR = Path(pymicro_wakeword.__file__).resolve().parent / "models"


def available_models() -> list[str]:
    """The built-in model names, e.g. "hey_mycroft"."""
    return sorted(m.value for m in Model)


def _config_path(model: str) -> Path:
    if model not in available_models():
        raise ValueError(
            f"unknown wake-word model {model!r}; available: {', '.join(available_models())}"
        )
    return _MODELS_DIR / f"{model}.json"


def _config(model: str) -> dict[str, object]:
    path = _config_path(model)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"wake word {model}: cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise ModelError(f"wake word {model}: {path} is not a JSON object")
    return data


@functools.cache
def wake_phrase(model: str) -> str:
    """What to say, for the screen: "Hey Mycroft" for hey_mycroft."""
    return str(_config(model).get("wake_word") or model.replace("_", " ").title())


def manifest_id(model: str) -> str:
    """The model manifest entry of a built-in model's weights ("wake_hey_mycroft")."""
    _config_path(model)
    return f"wake_{model}"


@dataclass(frozen=True)
class WakeSettings:
    """`threshold`: None takes the model's own probability cutoff (0.95 for hey_mycroft).
    `refractory_s`: after a detection, hits within this much audio are ignored."""

    model: str = "hey_mycroft"
    threshold: float | None = None
    refractory_s: float = 2.0

    def __post_init__(self) -> None:
        _config_path(self.model)  # unknown names fail here, with the list of known ones
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.refractory_s < 0:
            raise ValueError(f"refractory_s must be >= 0, got {self.refractory_s}")


def _to_int16(x: F32) -> npt.NDArray[np.int16]:
    out: npt.NDArray[np.int16] = np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)
    return out


class WakeWordDetector:
    """16 kHz float32 audio, any block size -> "the wake word just ended"? Not thread-safe.

    `detections`: hits reported; `suppressed`: hits ignored inside the refractory period
    (each resets the model too). `last_detection_sample`: the audio sample count (since
    creation) at the end of the 10 ms chunk that fired. `peak_probability`: the highest
    averaged probability since the last detection or reset (for tuning and logs).
    """

    def __init__(self, settings: WakeSettings | None = None) -> None:
        self.settings = settings if settings is not None else WakeSettings()
        self.model = self.settings.model
        config = _config(self.model)
        self.phrase = wake_phrase(self.model)
        self._mww = MicroWakeWord.from_config(_config_path(self.model))
        self._features = MicroWakeWordFeatures()
        self.threshold = (
            self.settings.threshold
            if self.settings.threshold is not None
            else float(self._mww.probability_cutoff)
        )
        langs = config.get("trained_languages")
        self.languages = [str(x) for x in langs] if isinstance(langs, list) else []
        self._refractory = round(self.settings.refractory_s * RATE)
        self._carry = np.zeros(0, dtype=np.int16)
        self._quiet_until = 0  # sample count before which hits are ignored
        self.samples = 0
        self.detections = 0
        self.suppressed = 0  # hits inside the refractory period (ignored)
        self.last_detection_sample: int | None = None
        self.peak_probability = 0.0
        self._cpu_ns = 0

    @classmethod
    def load(
        cls,
        settings: WakeSettings,
        manifest: dict[str, ModelFile],
        *,
        check_hash: bool = True,
    ) -> WakeWordDetector:
        """Check the model's weights against the manifest first (size, sha256), as every
        stage does; a missing entry or a mismatch raises ModelError naming the file."""
        path = require(manifest, manifest_id(settings.model), check_hash=check_hash)
        expected = _MODELS_DIR / f"{settings.model}.tflite"
        if path.resolve() != expected.resolve():
            raise ModelError(f"{manifest_id(settings.model)}: manifest points at {path}")
        return cls(settings)

    def reset(self) -> None:
        """Forget the audio so far (model state, features, partial chunk)."""
        self._mww.reset()
        self._features.reset()
        self._carry = np.zeros(0, dtype=np.int16)
        self.peak_probability = 0.0

    def close(self) -> None:
        self._mww.close()

    @property
    def cpu_us_per_10ms(self) -> float:
        chunks = self.samples // CHUNK
        return self._cpu_ns / 1000 / chunks if chunks else 0.0

    def process(self, samples: npt.ArrayLike) -> bool:
        """Feed audio; True if the wake word was detected in it."""
        t0 = time.thread_time_ns()
        a = np.asarray(samples, dtype=np.float32).reshape(-1)
        pcm = np.concatenate((self._carry, _to_int16(a))) if len(self._carry) else _to_int16(a)
        k = len(pcm) // CHUNK * CHUNK
        fired = False
        for i in range(0, k, CHUNK):
            self.samples += CHUNK
            for feature in self._features.process_streaming(pcm[i : i + CHUNK].tobytes()):
                prob = self._mww.process_streaming_prob(feature)
                if prob is None:
                    raise RuntimeError("wake-word detector used after close()")
                self.peak_probability = max(self.peak_probability, prob)
                if prob > self.threshold:
                    if self.samples >= self._quiet_until:
                        fired = True
                        self.detections += 1
                        self.last_detection_sample = self.samples
                        self._quiet_until = self.samples + self._refractory
                    else:
                        self.suppressed += 1
                    # The library keeps firing for ~1 s on the same phrase: start afresh (also
                    # for a hit inside the refractory period, which would otherwise still be
                    # above the threshold when that period ends).
                    self._mww.reset()
                    self._features.reset()
                    self.peak_probability = 0.0
                    break
        self._carry = pcm[k:].copy()
        self._cpu_ns += time.thread_time_ns() - t0
        return fired
