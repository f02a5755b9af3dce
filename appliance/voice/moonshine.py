"""Moonshine base-en through plain onnxruntime: encoder, merged KV-cache decoder, greedy or
beam search (the beam optionally biased toward the site's words, see bias.py).

The moonshine-cpp package ships the model files, but its native library crashes on some
CPUs ("illegal instruction"), so we use only the files and run them here.

One module (~530 lines): the tokenizer, the cache layout and both searches all follow the one
exported graph (its input/output names, its vocabulary), and change together when it does.
"""

from __future__ import annotations

import functools
import math
import re
import threading
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
from appliance.voice.bias import ROOT, BiasLexicon, BiasTrie

SAMPLE_RATE = 16000
START_TOKEN = 1
END_TOKEN = 2
N_SPECIAL = 3  # <unk>, <s>, </s>
BYTES_END = N_SPECIAL + 256  # ids 3..258: byte fallback; text pieces start here
# Speech runs at ~3-4 tokens/s; this cap only stops a decoder that has lost its way.
TOKENS_PER_SECOND = 6.5
TOKENS_EXTRA = 10
# The encoder's convolution stack needs ~900 samples to emit one frame; pad shorter clips.
MIN_SAMPLES = SAMPLE_RATE // 10

_BYTE_TOKEN = re.compile(rb"^<0x([0-9A-Fa-f]{2})>$")
_SPACE = "▁".encode()  # SentencePiece's mark of a word's first piece
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

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        """Text piece -> id, for the pieces that are text (not specials, not byte tokens)."""
        ids: dict[str, int] = {}
        for i in range(BYTES_END, len(self.pieces)):
            piece = self.pieces[i]
            try:
                ids.setdefault(piece.decode("utf-8"), i)
            except UnicodeDecodeError:
                continue
        return ids

    def encode_word(self, word: str) -> list[int]:
        """One whitespace-free word as the model writes it after a space ("▁" prefix).

        SentencePiece BPE as the Llama-style model was trained with: start from characters
        (unknown ones as UTF-8 byte tokens), then keep merging the adjacent pair whose merged
        piece ranks best, where a piece's rank is its id (the vocabulary is in merge order).
        """
        ids = self._ids
        symbols = ["▁", *word]
        while len(symbols) > 1:
            best = -1
            best_id = len(self.pieces)
            for i in range(len(symbols) - 1):
                j = ids.get(symbols[i] + symbols[i + 1])
                if j is not None and j < best_id:
                    best, best_id = i, j
            if best < 0:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        out: list[int] = []
        for sym in symbols:
            j = ids.get(sym)
            if j is not None:
                out.append(j)
            else:
                out.extend(N_SPECIAL + b for b in sym.encode("utf-8"))
        return out

    def encode(self, text: str) -> list[int]:
        """`text` as token ids, word by word (pieces never span a space)."""
        return [t for word in text.split() for t in self.encode_word(word)]

    def settled(self, ids: Sequence[int], last_words: int = 2) -> tuple[int, ...]:
        """`ids` without their last `last_words` words (a word starts at a "▁" piece): what
        a pass over audio cut while the visitor talked heard well enough to keep, for the
        next pass over the whole utterance to start from. The words at a cut are guesses
        (half a word, or one the rest of the sentence would change); () when that is all."""
        starts = [i for i, t in enumerate(ids) if self._starts_word(t)]
        if len(starts) <= last_words:
            return ()
        return tuple(ids[: starts[-last_words]])

    def _starts_word(self, token: int) -> bool:
        return N_SPECIAL <= token < len(self.pieces) and self.pieces[token].startswith(_SPACE)

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


@dataclass(frozen=True)
class DecodeOptions:
    """How the decoder searches. `DecodeOptions()` is the tuned beam search (below);
    `GREEDY` (beam 1, no bias) is the plain greedy search, token for token as before.

    beam: hypotheses kept per step (all run in one batched decoder call).
    bias_weight: bonus per token that continues a lexicon term, in log-prob units (nats),
        times the term's weight; 0 turns biasing off even when a lexicon is set.
    length_penalty: finished hypotheses compare by score / (tokens + 1)**length_penalty
        (1: mean log-prob per token; 0: the raw sum, which favours short endings).

    Defaults tuned with tools/asr_bias_eval.py on tests/data/understand/tune.toml (386 clips,
    Piper and espeak-ng voices, half at 10 dB SNR): beam 4 beat 2 and 3 on WER and on FAQ
    words inserted wrongly; weight 1.5 kept most of the keyword recall of 2.0 with fewer
    false insertions; length penalty 0.5 sat between 0 (clipped endings) and 1.
    """

    beam: int = 4
    bias_weight: float = 1.5
    length_penalty: float = 0.5

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError(f"beam must be >= 1, got {self.beam}")
        if not (self.bias_weight >= 0 and math.isfinite(self.bias_weight)):
            raise ValueError(f"bias_weight must be finite and >= 0, got {self.bias_weight}")
        if not (self.length_penalty >= 0 and math.isfinite(self.length_penalty)):
            raise ValueError(f"length_penalty must be finite and >= 0, got {self.length_penalty}")


GREEDY = DecodeOptions(beam=1, bias_weight=0.0, length_penalty=1.0)


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]
    score: float  # summed log-probs plus the bias bonus kept (abandoned partial matches repaid)
    normalised: float  # what hypotheses are ranked by: score / (tokens + 1)**length_penalty


@dataclass(frozen=True)
class _Beam:
    tokens: tuple[int, ...]
    score: float
    node: int  # BiasTrie state (ROOT when not biasing)


def _log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - top
    out: npt.NDArray[np.float32] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return out


def _text_key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


class MoonshineAsr(AsrEngine):
    """Moonshine decoding with a KV cache: greedy, or a small beam search with contextual
    biasing toward a lexicon (the site's FAQ words, see bias.py). Blocking. Per call it keeps
    no state; the options and the bias trie are swapped atomically (`set_options`,
    `set_bias`) and each call uses the pair it started with, so concurrent calls are safe (a
    ModelRunner serialises them anyway).

    Cost on the 2-core dev box: encoder ~40 ms for 3 s of audio, then ~6 ms per decoder
    step when loaded through `fast_session` (~45 ms from the .ort file itself, which
    dequantises its int8 weights on every step). A beam of 4 runs its hypotheses as one
    batch of 4 per step (see tools/asr_bias_eval.py for the measured cost).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        tokenizer: MoonshineTokenizer,
        options: DecodeOptions | None = None,
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
        self._lock = threading.Lock()
        # Greedy unless asked: the engine behaves as before until a caller opts in.
        self._options = options or GREEDY
        self._lexicon: BiasLexicon | None = None
        self._trie: BiasTrie | None = None

    def _kv_names(self, part: str) -> list[tuple[str, str]]:
        return [
            (f"present.{i}.{part}.{k}", f"past_key_values.{i}.{part}.{k}")
            for i in range(self._kv.layers)
            for k in ("key", "value")
        ]

    @classmethod
    def load(
        cls,
        settings: InferenceSettings,
        manifest: dict[str, ModelFile],
        *,
        check_hash: bool = True,
        options: DecodeOptions | None = None,
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
        return cls(encoder, decoder, tokenizer, options)

    # --- run-time configuration -----------------------------------------------------------

    @property
    def options(self) -> DecodeOptions:
        return self._options

    @property
    def lexicon(self) -> BiasLexicon | None:
        return self._lexicon

    def compile_bias(self, lexicon: BiasLexicon, weight: float) -> BiasTrie:
        """`lexicon` in this model's tokens, `weight` nats per token (times the term weight)."""
        return BiasTrie.build(lexicon, self.tokenizer, weight)

    def set_bias(self, lexicon: BiasLexicon | None) -> None:
        """Bias later calls toward `lexicon` (None: no biasing). Thread-safe; the trie is built
        before the swap (a few ms for an FAQ), and calls under way finish with the old one."""
        with self._lock:
            weight = self._options.bias_weight
        trie = self.compile_bias(lexicon, weight) if lexicon is not None and weight > 0 else None
        with self._lock:
            if self._options.bias_weight != weight:  # options changed meanwhile: rebuild
                w = self._options.bias_weight
                trie = self.compile_bias(lexicon, w) if lexicon is not None and w > 0 else None
            self._lexicon, self._trie = lexicon, trie

    def set_options(self, options: DecodeOptions) -> None:
        """New search options for later calls (rebuilds the bias trie for a new weight)."""
        with self._lock:
            lexicon = self._lexicon
            keep = self._trie if options.bias_weight == self._options.bias_weight else None
            if lexicon is not None and options.bias_weight > 0 and keep is None:
                keep = self.compile_bias(lexicon, options.bias_weight)
            self._options = options
            self._trie = keep if lexicon is not None and options.bias_weight > 0 else None

    def _current(self) -> tuple[DecodeOptions, BiasTrie | None]:
        with self._lock:
            return self._options, self._trie

    # --- inference ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """One pass over a second of silence, so the first visitor does not pay for ORT's
        lazy allocations (a beam search's batched shapes included)."""
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
        """The best hypothesis under the current options and bias (no start/end ids); with
        the default (greedy) options, the greedy search."""
        options, trie = self._current()
        return list(self.search(hidden, max_tokens, should_stop, options=options, trie=trie)[0])

    def search(
        self,
        hidden: npt.NDArray[np.float32],
        max_tokens: int,
        should_stop: StopFlag | None = None,
        *,
        options: DecodeOptions,
        trie: BiasTrie | None,
        prefix: Sequence[int] = (),
    ) -> list[tuple[int, ...]]:
        """Token ids of the hypotheses, best first: one for greedy search, up to `beam` else.
        Each starts with `prefix` (`transcribe`)."""
        if options.beam == 1 and trie is None:
            return [tuple(self.greedy(hidden, max_tokens, should_stop, prefix))]
        hyps = self.beam_search(
            hidden, max_tokens, should_stop, options.beam, options.length_penalty, trie, prefix
        )
        return [h.tokens for h in hyps]

    def _first_step(self, hidden: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.generic]]:
        kv = self._kv
        empty = np.zeros((1, kv.heads, 0, kv.head_dim), dtype=np.float32)
        feeds: dict[str, npt.NDArray[np.generic]] = {"encoder_hidden_states": hidden}
        for _, past in self._self_kv + self._cross_kv:
            feeds[past] = empty
        # First step computes the cross-attention K/V from the encoder output (the
        # non-cache branch); later steps reuse them and only grow the self-attention cache.
        feeds["use_cache_branch"] = np.array([False])
        return feeds

    def greedy(
        self,
        hidden: npt.NDArray[np.float32],
        max_tokens: int,
        should_stop: StopFlag | None = None,
        prefix: Sequence[int] = (),
    ) -> list[int]:
        """Greedy search from the start token (and `prefix`, read in the first call); returns
        the ids after the start token, `prefix` first (no end id)."""
        feeds = self._first_step(hidden)
        first_outputs = ["logits"] + [p for p, _ in self._self_kv + self._cross_kv]
        step_outputs = ["logits"] + [p for p, _ in self._self_kv]
        tokens = list(prefix)
        for step in range(max(max_tokens - len(tokens), 1)):
            if should_stop is not None and should_stop():
                raise TranscriptionAborted(f"stopped after {len(tokens)} tokens")
            given = [START_TOKEN, *tokens] if step == 0 else tokens[-1:]
            feeds["input_ids"] = np.array([given], dtype=np.int64)
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

    def _read_prefix(
        self, prefix: Sequence[int], logits: npt.NDArray[np.float32], trie: BiasTrie | None
    ) -> _Beam:
        """The beam after `prefix` as if searched: `logits` of the first call, a row per
        position ([start, *prefix]); each prefix token's log-prob, plus its bias bonus."""
        logp = _log_softmax(np.asarray(logits[: len(prefix), : self.vocab], dtype=np.float32))
        score = float(logp[np.arange(len(prefix)), list(prefix)].sum())
        node = ROOT
        if trie is not None:
            for token in prefix:
                node, bonus = trie.step(node, token)
                score += bonus
        return _Beam(tuple(prefix), score, node)

    def beam_search(
        self,
        hidden: npt.NDArray[np.float32],
        max_tokens: int,
        should_stop: StopFlag | None,
        width: int,
        length_penalty: float = 1.0,
        trie: BiasTrie | None = None,
        prefix: Sequence[int] = (),
    ) -> list[Hypothesis]:
        """Beam search, the live hypotheses batched into one decoder call per step; finished
        hypotheses best first (at least one). With `trie`, each step's log-probs get the bias
        bonus of every token (`BiasTrie.row`), and a hypothesis that ends in the middle of a
        lexicon term repays it (`BiasTrie.finish`).

        Ends when `width` hypotheses have finished, or when the best finished one beats every
        live one even if that ended at the next step; loops are cut as in greedy search.
        `prefix` is read in the first call and scored as if searched (its log-probs and bias),
        so hypotheses rank as they would have without it.
        """
        feeds = self._first_step(hidden)
        n_self = len(self._self_kv)
        first_outputs = ["logits"] + [p for p, _ in self._self_kv + self._cross_kv]
        step_outputs = ["logits"] + [p for p, _ in self._self_kv]
        cross: dict[int, list[npt.NDArray[np.float32]]] = {}  # batch size -> tiled cross K/V
        beams = [_Beam(tuple(prefix), 0.0, ROOT)]
        finished: list[Hypothesis] = []
        nothing_first = True

        def finish(tokens: tuple[int, ...], score: float, ended: bool) -> None:
            n = len(tokens) + (1 if ended else 0)
            finished.append(Hypothesis(tokens, score, score / max(n, 1) ** length_penalty))

        for step in range(max(max_tokens - len(prefix), 1)):
            if should_stop is not None and should_stop():
                raise TranscriptionAborted(f"stopped after {step} tokens")
            if step == 0:
                feeds["input_ids"] = np.array([[START_TOKEN, *prefix]], dtype=np.int64)
            else:
                feeds["input_ids"] = np.array([[b.tokens[-1]] for b in beams], dtype=np.int64)
            outs = self._decoder.run(first_outputs if step == 0 else step_outputs, feeds)
            if step == 0:
                cross[1] = [np.asarray(v) for v in outs[1 + n_self :]]
                feeds["use_cache_branch"] = np.array([True])
                if prefix:
                    beams = [self._read_prefix(prefix, outs[0][0], trie)]
            logp = _log_softmax(np.asarray(outs[0][:, -1, : self.vocab], dtype=np.float32))
            if trie is not None:
                logp += np.stack([trie.row(b.node)[: self.vocab] for b in beams])
            if step == 0:
                # Hearing nothing must be the likeliest first step, as greedy search would
                # take it: otherwise the empty hypothesis, scored on one token, outranks every
                # sentence (beam "" with "Hi." second, where greedy heard "Hi").
                nothing_first = int(np.argmax(logp[0])) == END_TOKEN
            total = logp + np.array([b.score for b in beams], dtype=np.float32)[:, None]
            k = min(2 * width, total.size)
            flat = total.ravel()
            picks = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
            picks = picks[np.argsort(-flat[picks], kind="stable")]
            parents: list[int] = []
            live: list[_Beam] = []
            for rank, f in enumerate(picks.tolist()):
                b, token = divmod(f, self.vocab)
                beam, score = beams[b], float(flat[f])
                if token == END_TOKEN:
                    if rank < width and (beam.tokens or nothing_first):
                        finish(beam.tokens, score, ended=True)
                    continue
                tokens = (*beam.tokens, token)
                node = trie.step(beam.node, token)[0] if trie is not None else ROOT
                cut = repetition_cut(tokens)
                if cut is not None or len(tokens) >= max_tokens:
                    repay = trie.finish(node) if trie is not None else 0.0
                    finish(tokens[:cut], score + repay, ended=False)
                else:
                    parents.append(b)
                    live.append(_Beam(tokens, score, node))
                if len(live) == width:
                    break
            if not live or len(finished) >= width:
                break
            if finished:
                best_done = max(h.normalised for h in finished)
                best_live = max(b.score for b in live) / (len(live[0].tokens) + 1) ** length_penalty
                if best_done >= best_live:
                    break
            # Each live hypothesis continues its parent's self-attention cache.
            reorder = parents != list(range(len(beams)))
            index = np.array(parents)
            for (_, past), value in zip(self._self_kv, outs[1 : 1 + n_self], strict=True):
                feeds[past] = np.take(value, index, axis=0) if reorder else value
            if len(live) not in cross:
                cross[len(live)] = [np.repeat(v, len(live), axis=0) for v in cross[1]]
            for (_, past), value in zip(self._cross_kv, cross[len(live)], strict=True):
                feeds[past] = value
            beams = live
        if not finished:
            for b in beams:
                repay = trie.finish(b.node) if trie is not None else 0.0
                finish(b.tokens, b.score + repay, ended=False)
        return sorted(finished, key=lambda h: -h.normalised)

    def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        should_stop: StopFlag | None = None,
        options: DecodeOptions | None = None,
        prefix: Sequence[int] = (),
    ) -> Transcript:
        """Transcribe `audio` with the current search, or with `options` for this call
        (`GREEDY` for a partial that is only shown). `prefix`: token ids every hypothesis
        starts with (what an earlier pass over the start of this audio settled, see
        `MoonshineTokenizer.settled`); the decoder reads them in one call instead of a step
        each, so a long utterance's final pass only searches its last words."""
        t0 = time.perf_counter()
        a = check_audio(audio)
        audio_s = len(a) / SAMPLE_RATE
        if len(a) == 0:
            return Transcript("", 0, 0.0, time.perf_counter() - t0)
        if should_stop is not None and should_stop():
            raise TranscriptionAborted("stopped before encoding")
        current, trie = self._current()
        if options is None:
            options = current
        elif options.bias_weight != current.bias_weight:
            trie = None  # the trie was compiled for the current weight
        hidden = self.encode(a)
        hyps = self.search(
            hidden, max_tokens_for(audio_s), should_stop, options=options, trie=trie, prefix=prefix
        )
        best = self.tokenizer.decode(hyps[0])
        texts = {_text_key(best): best}
        for tokens in hyps[1:]:
            text = self.tokenizer.decode(tokens)
            if _text_key(text):  # an empty hypothesis is no alternative
                texts.setdefault(_text_key(text), text)
        others = list(texts.values())[1:]
        return Transcript(
            best,
            len(hyps[0]),
            audio_s,
            time.perf_counter() - t0,
            alternatives=tuple(others),
            token_ids=hyps[0],
        )
