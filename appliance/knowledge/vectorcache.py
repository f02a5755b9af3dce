"""The site's own texts' embeddings kept on disk between starts.

Why: every start embedded the whole FAQ again (each question and answer, every answer
sentence, the small-talk anchors: ~150 texts, ~0.5 s of CPU on 2 cores, a tenth of a start that
the voice models and the web server also want). The texts rarely change, so their vectors are
kept in one file per model (named after a key of the weights, the graph builder and
onnxruntime's version): a start embeds only what is new, an FAQ save only the entries edited.

The file holds the texts used since this process started (`lookup(..., keep=True)`), so the
texts of an FAQ long since replaced drop out at the next write. It is `.npz` without pickles
(texts as a unicode array, vectors as float32), written atomically; one that cannot be read is
ignored (the vectors are computed again) and one that cannot be written costs only the time.
Visitors' questions are never kept. Thread-safe: the knowledge loads on a worker thread while
an FAQ save may build another on a second one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["VectorCache"]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class VectorCache:
    """Vectors of texts by exact text, for one model (`path` is that model's file)."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._vectors: dict[str, F32] | None = None  # read from the file on first use
        self._used: set[str] = set()

    def lookup(self, texts: Sequence[str], compute: Callable[[Sequence[str]], F32]) -> F32:
        """[len(texts), dim]: each row from the file when it is there, else from `compute`
        (called once, with the missing texts only); the file is rewritten when any was new."""
        with self._lock:
            known = self._load()
            missing = list(dict.fromkeys(t for t in texts if t not in known))
            if missing:
                fresh = np.asarray(compute(missing), dtype=np.float32)
                if fresh.shape != (len(missing), self.dim):
                    raise ValueError(f"computed {fresh.shape} for {len(missing)} texts")
                known.update(zip(missing, fresh, strict=True))
            self.misses += len(missing)
            self.hits += len(texts) - len(missing)
            new_use = not self._used.issuperset(texts)
            self._used.update(texts)
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for i, t in enumerate(texts):
                out[i] = known[t]
            if missing or new_use:
                self._write({t: known[t] for t in self._used})
            return out

    def _load(self) -> dict[str, F32]:
        if self._vectors is None:
            self._vectors = {}
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    texts, vectors = data["texts"], data["vectors"]
                if vectors.shape != (len(texts), self.dim) or vectors.dtype != np.float32:
                    raise ValueError(f"shape {vectors.shape} {vectors.dtype} for {len(texts)}")
                self._vectors = {str(t): v for t, v in zip(texts, vectors, strict=True)}
            except FileNotFoundError:
                pass
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                log.warning("embedding cache %s unreadable (%s); computing again", self.path, e)
        return self._vectors

    def _write(self, vectors: dict[str, F32]) -> None:
        texts = list(vectors)
        matrix = np.stack([vectors[t] for t in texts]) if texts else np.zeros((0, self.dim))
        tmp: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.path.parent, prefix=".vectors-", suffix=".npz", delete=False
            ) as f:
                tmp = Path(f.name)
                np.savez(f, texts=np.array(texts, dtype=str), vectors=matrix.astype(np.float32))
            os.replace(tmp, self.path)  # same directory: atomic
        except OSError as e:
            log.warning("embedding cache %s not written: %s", self.path, e)
            if tmp is not None:
                tmp.unlink(missing_ok=True)
