"""Piper (VITS) voice through onnxruntime, phonemes from espeak-ng.

We use the voice files only; the `piper-tts` package is GPL-3.0 and is not used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from appliance.inference import InferenceSettings, create_session
from appliance.models_manifest import ModelError, ModelFile, require
from appliance.voice.phonemes import EspeakPhonemizer, phoneme_ids

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class VoiceConfig:
    """The parts of a Piper voice's .onnx.json that inference needs."""

    sample_rate: int
    espeak_voice: str
    phoneme_id_map: Mapping[str, Sequence[int]]
    noise_scale: float
    length_scale: float
    noise_w: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VoiceConfig:
        try:
            inf = data.get("inference", {})
            id_map = {str(k): [int(i) for i in v] for k, v in data["phoneme_id_map"].items()}
            for needed in ("^", "_", "$"):
                if needed not in id_map:
                    raise ValueError(f"phoneme_id_map lacks {needed!r}")
            if data.get("phoneme_type", "espeak") != "espeak":
                raise ValueError(f"phoneme_type {data['phoneme_type']!r} is not supported")
            return cls(
                sample_rate=int(data["audio"]["sample_rate"]),
                espeak_voice=str(data.get("espeak", {}).get("voice", "en-us")),
                phoneme_id_map=id_map,
                noise_scale=float(inf.get("noise_scale", 0.667)),
                length_scale=float(inf.get("length_scale", 1.0)),
                noise_w=float(inf.get("noise_w", 0.8)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a Piper voice config: {e}") from e

    @classmethod
    def from_file(cls, path: Path) -> VoiceConfig:
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise ModelError(f"tts_config: {path}: {e}") from e


class PiperTts:
    """Text -> float32 mono audio at `sample_rate`. Blocking; run on a worker thread."""

    def __init__(
        self, session: ort.InferenceSession, config: VoiceConfig, phonemizer: EspeakPhonemizer
    ) -> None:
        self._session = session
        self.config = config
        self.sample_rate = config.sample_rate
        self._phonemizer = phonemizer
        self.providers: list[str] = list(session.get_providers())

    @classmethod
    def load(
        cls, settings: InferenceSettings, manifest: dict[str, ModelFile], *, check_hash: bool = True
    ) -> PiperTts:
        model_path = require(manifest, "tts_voice", check_hash=check_hash)
        config = VoiceConfig.from_file(require(manifest, "tts_config", check_hash=check_hash))
        session, _ = create_session(model_path, settings, name="tts_voice")
        return cls(session, config, EspeakPhonemizer(config.espeak_voice))

    def warm_up(self) -> None:
        """Synthesize one short sentence (first run allocates; also proves espeak-ng works)."""
        if len(self.synthesize("Hello.")) == 0:
            raise RuntimeError("tts warm-up produced no audio")

    def phonemize(self, text: str) -> list[str]:
        """IPA phonemes, one string per sentence with its punctuation. Blocking (espeak-ng)."""
        return self._phonemizer.phonemize(text)

    def synthesize_phonemes(self, phonemes: str, *, length_scale: float = 1.0) -> F32:
        """One sentence's phonemes -> audio."""
        if not 0.25 <= length_scale <= 4.0:
            raise ValueError(f"length_scale must be in [0.25, 4], got {length_scale}")
        unknown: list[str] = []
        ids = phoneme_ids(phonemes, self.config.phoneme_id_map, unknown=unknown)
        if unknown:
            log.debug("tts: phonemes not in the voice's map, skipped: %r", "".join(unknown))
        if len(ids) <= 3:  # ^ _ $ only: nothing to say
            return np.zeros(0, dtype=np.float32)
        c = self.config
        feeds = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(
                [c.noise_scale, c.length_scale * length_scale, c.noise_w], dtype=np.float32
            ),
        }
        (out,) = self._session.run(["output"], feeds)
        audio = np.asarray(out, dtype=np.float32).reshape(-1)
        return np.clip(audio, -1.0, 1.0)

    def iter_synthesize(self, text: str, *, length_scale: float = 1.0) -> Iterator[F32]:
        """Audio sentence by sentence, so playback can start after the first one."""
        for sentence in self.phonemize(text):
            yield self.synthesize_phonemes(sentence, length_scale=length_scale)

    def synthesize(self, text: str, *, length_scale: float = 1.0) -> F32:
        """All of `text` as one float32 mono clip (empty for text with nothing to say).

        `length_scale` > 1 speaks slower, < 1 faster (on top of the voice's default)."""
        parts = list(self.iter_synthesize(text, length_scale=length_scale))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
