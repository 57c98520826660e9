"""Dense search with FAISS: the only module that imports faiss.

Vectors are L2-normalised float32 and searched by inner product (= cosine): exact with
``IndexFlatIP``, approximate with HNSW (``IndexHNSWFlat``, inner-product metric).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexret.errors import LexretError


def _faiss():
    try:
        import faiss
    except ImportError:
        raise LexretError("faiss is not installed; run `make setup` (faiss-cpu)") from None
    return faiss


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class HnswParams:
    """HNSW graph settings: ``m`` links per node, ``ef_construction`` and ``ef_search`` beam widths."""

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 128


class FaissBackend:
    """A FAISS index over L2-normalised vectors with string ids."""

    def __init__(self, index, docids: Sequence[str]) -> None:
        self.index = index
        self.docids = list(docids)

    @classmethod
    def build(
        cls, docids: Sequence[str], vectors: np.ndarray, *, kind: str = "flat", hnsw: HnswParams | None = None
    ) -> FaissBackend:
        faiss = _faiss()
        x = l2_normalize(vectors)
        if kind == "flat":
            index = faiss.IndexFlatIP(x.shape[1])
        elif kind == "hnsw":
            p = hnsw or HnswParams()
            index = faiss.IndexHNSWFlat(x.shape[1], p.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = p.ef_construction
            index.hnsw.efSearch = p.ef_search
        else:
            raise LexretError(f"unknown FAISS index kind {kind!r}; use flat or hnsw")
        index.add(x)
        return cls(index, docids)

    @property
    def num_docs(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def save(self, path: str | Path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path, docids: Sequence[str]) -> FaissBackend:
        return cls(_faiss().read_index(str(path)), docids)

    @staticmethod
    def set_threads(n: int) -> None:
        _faiss().omp_set_num_threads(max(1, int(n)))

    def search(
        self, qids: Sequence[str], queries: np.ndarray, k: int, *, chunk_size: int = 1024
    ) -> dict[str, list[tuple[str, float]]]:
        q = l2_normalize(queries)
        if q.shape[1] != self.dim:
            raise LexretError(f"query dim {q.shape[1]} != index dim {self.dim}; encode with the same model")
        out: dict[str, list[tuple[str, float]]] = {}
        kk = min(k, self.num_docs)
        for a in range(0, len(qids), chunk_size):
            scores, idx = self.index.search(q[a : a + chunk_size], kk)
            for j in range(idx.shape[0]):
                out[qids[a + j]] = [(self.docids[c], float(s)) for c, s in zip(idx[j], scores[j]) if c >= 0]
        return out
