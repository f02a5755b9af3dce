"""Moonshine base-en through plain onnxruntime: encoder, merged KV-cache decoder, greedy search.

The moonshine-cpp package ships the model files, but its native library crashes on some
CPUs ("illegal instruction"), so we use only the files and run them here.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from appliance.inference import InferenceSettings
from appliance.modelprep import fast_session
from appliance.models_manifest import ModelError, ModelFile, require
from appliance.voice.asr import AsrEngine, StopFlag, Transcript, TranscriptionAborted, check_audio

SAMPLE_RATE = 16000
START_TOKEN = 1
END_TOKEN = 2
N_SPECIAL = 3  # <unk>, <s>, </s>
# Speech runs at ~3-4 tokens/s; this cap only stops a decoder that has lost its way.
TOKENS_PER_SECOND = 6.5
TOKENS_EXTRA = 10
# The encoder's convolution stack needs ~900 samples to emit one frame; pad shorter clips.
MIN_SAMPLES = SAMPLE_RATE // 10

_BYTE_TOKEN = re.compile(rb"^<0x([0-9A-Fa-f]{2})>$")
_KV_NAME = re.compile(r"^past_key_values\.(\d+)\.(decoder|encoder)\.(key|value)$")


class MoonshineTokenizer:
    """tokenizer.bin: per id, one length byte then that many bytes (SentencePiece pieces,
    '▁' for a space; ids 3..258 are the raw bytes 0x00..0xFF for byte fallback)."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = list(pieces)

    @classmethod
    def from_bytes(cls, data: bytes) -> MoonshineTokenizer:
        pieces: list[bytes] = []
        i = 0
        while i < len(data):
            n = data[i]
            if i + 1 + n > len(data):
                raise ValueError(f"tokenizer entry {len(pieces)} runs past the end of the file")
            pieces.append(data[i + 1 : i + 1 + n])
            i += 1 + n
        if len(pieces) <= N_SPECIAL:
            raise ValueError(f"tokenizer has only {len(pieces)} entries")
        return cls(pieces)

    @classmethod
    def from_file(cls, path: Path) -> MoonshineTokenizer:
        return cls.from_bytes(path.read_bytes())

    def __len__(self) -> int:
        return len(self.pieces)

    def decode(self, ids: Sequence[int]) -> str:
        out = bytearray()
        for t in ids:
            if t < N_SPECIAL or t >= len(self.pieces):
                continue  # specials and the decoder's unused ids carry no text
            piece = self.pieces[t]
            m = _BYTE_TOKEN.match(piece)
            out += bytes([int(m.group(1), 16)]) if m else piece
        return out.decode("utf-8", errors="replace").replace("▁", " ").strip()


def max_tokens_for(audio_s: float) -> int:
    return math.ceil(audio_s * TOKENS_PER_SECOND) + TOKENS_EXTRA


def repetition_cut(tokens: Sequence[int], *, max_period: int = 8) -> int | None:
    """If `tokens` ends in a runaway loop, the length to truncate to (keeping one copy).

    A loop: one token 8+ times in a row, or a 2..max_period-token pattern 4+ times. Lower
    thresholds would clip real speech such as "no, no, no".
    """
    n = len(tokens)
    for period in range(1, max_period + 1):
        need = 8 if period == 1 else 4
        if n < period * need:
            break
        tail = tokens[n - period :]
        reps = 1
        while (reps + 1) * period <= n and tokens[
            n - (reps + 1) * period : n - reps * period
        ] == tail:
            reps += 1
        if reps >= need:
            return n - (reps - 1) * period
    return None


@dataclass(frozen=True)
class _KvLayout:
    layers: int
    heads: int
    head_dim: int


def _kv_layout(decoder: ort.InferenceSession) -> _KvLayout:
    layers: set[int] = set()
    heads = head_dim = 0
    for inp in decoder.get_inputs():
        m = _KV_NAME.match(inp.name)
        if m:
            layers.add(int(m.group(1)))
            heads, head_dim = int(inp.shape[1]), int(inp.shape[3])
    if not layers or sorted(layers) != list(range(len(layers))):
        raise ModelError("asr_decoder: unexpected decoder inputs (no past_key_values.N.*)")
    return _KvLayout(len(layers), heads, head_dim)


class MoonshineAsr(AsrEngine):
    """Greedy Moonshine decoding with a KV cache. Blocking; keeps no per-call state, so
    concurrent calls are safe (a ModelRunner serialises them anyway).

    Cost on the 2-core dev box: encoder ~40 ms for 3 s of audio, then ~6 ms per decoder
    step when loaded through `fast_session` (~45 ms from the .ort file itself, which
    dequantises its int8 weights on every step).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        tokenizer: MoonshineTokenizer,
    ) -> None:
        self._encoder = encoder
        self._decoder = decoder
        self.tokenizer = tokenizer
        self._kv = _kv_layout(decoder)
        # (present output, past input) name pairs: self-attention cache, then cross-attention.
        self._self_kv = self._kv_names("decoder")
        self._cross_kv = self._kv_names("encoder")
        scored = decoder.get_outputs()[0].shape[-1]  # 32768; may be symbolic in other exports
        # Ids past the tokenizer's end are unused padding of the output layer: never pick them.
        self.vocab = min(len(tokenizer), scored) if isinstance(scored, int) else len(tokenizer)
        self.providers: list[str] = list(decoder.get_providers())

    def _kv_names(self, part: str) -> list[tuple[str, str]]:
        return [
            (f"present.{i}.{part}.{k}", f"past_key_values.{i}.{part}.{k}")
            for i in range(self._kv.layers)
            for k in ("key", "value")
        ]

    @classmethod
    def load(
        cls, settings: InferenceSettings, manifest: dict[str, ModelFile], *, check_hash: bool = True
    ) -> MoonshineAsr:
        enc_path = require(manifest, "asr_encoder", check_hash=check_hash)
        dec_path = require(manifest, "asr_decoder", check_hash=check_hash)
        tok_path = require(manifest, "asr_tokenizer", check_hash=check_hash)
        # The shipped .ort files dequantise their int8 weights on every run; the derived ONNX
        # form is folded once at load (decoder ~45 -> ~6 ms per token, see modelprep).
        encoder, _ = fast_session(
            enc_path, manifest["asr_encoder"].sha256, settings, name="asr_encoder"
        )
        decoder, _ = fast_session(
            dec_path, manifest["asr_decoder"].sha256, settings, name="asr_decoder"
        )
        try:
            tokenizer = MoonshineTokenizer.from_file(tok_path)
        except (OSError, ValueError) as e:
            raise ModelError(f"asr_tokenizer: cannot read {tok_path}: {e}") from e
        return cls(encoder, decoder, tokenizer)

    def warm_up(self) -> None:
        """One pass over a second of silence, so the first visitor does not pay for ORT's
        lazy allocations."""
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def encode(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if len(audio) < MIN_SAMPLES:
            audio = np.pad(audio, (0, MIN_SAMPLES - len(audio)))
        (hidden,) = self._encoder.run(["last_hidden_state"], {"input_values": audio[None, :]})
        return np.asarray(hidden, dtype=np.float32)

    def decode(
        self,
        hidden: npt.NDArray[np.float32],
        max_tokens: int,
        should_stop: StopFlag | None = None,
    ) -> list[int]:
        """Greedy search from the start token; returns the generated ids (no start/end)."""
        kv = self._kv
        empty = np.zeros((1, kv.heads, 0, kv.head_dim), dtype=np.float32)
        feeds: dict[str, npt.NDArray[np.generic]] = {"encoder_hidden_states": hidden}
        for _, past in self._self_kv + self._cross_kv:
            feeds[past] = empty
        # First step computes the cross-attention K/V from the encoder output (the
        # non-cache branch); later steps reuse them and only grow the self-attention cache.
        feeds["use_cache_branch"] = np.array([False])
        first_outputs = ["logits"] + [p for p, _ in self._self_kv + self._cross_kv]
        step_outputs = ["logits"] + [p for p, _ in self._self_kv]
        tokens: list[int] = []
        token = START_TOKEN
        for step in range(max_tokens):
            if should_stop is not None and should_stop():
                raise TranscriptionAborted(f"stopped after {len(tokens)} tokens")
            feeds["input_ids"] = np.array([[token]], dtype=np.int64)
            names = first_outputs if step == 0 else step_outputs
            outs = self._decoder.run(names, feeds)
            token = int(np.argmax(outs[0][0, -1, : self.vocab]))
            if token == END_TOKEN:
                break
            tokens.append(token)
            cut = repetition_cut(tokens)
            if cut is not None:
                del tokens[cut:]
                break
            # outs[1:] holds the self-attention presents first (and, on step 0 only, the
            # cross-attention ones after them), so zip stops where the outputs stop.
            for (_, past), value in zip(self._self_kv + self._cross_kv, outs[1:], strict=False):
                feeds[past] = value
            if step == 0:
                feeds["use_cache_branch"] = np.array([True])
        return tokens

    def transcribe(
        self, audio: npt.NDArray[np.float32], should_stop: StopFlag | None = None
    ) -> Transcript:
        t0 = time.perf_counter()
        a = check_audio(audio)
        audio_s = len(a) / SAMPLE_RATE
        if len(a) == 0:
            return Transcript("", 0, 0.0, time.perf_counter() - t0)
        if should_stop is not None and should_stop():
            raise TranscriptionAborted("stopped before encoding")
        hidden = self.encode(a)
        tokens = self.decode(hidden, max_tokens_for(audio_s), should_stop)
        text = self.tokenizer.decode(tokens)
        return Transcript(text, len(tokens), audio_s, time.perf_counter() - t0)
