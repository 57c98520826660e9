"""Inference-free query vectors: a learned map from a text's own wordpieces to weighted terms.

A :class:`QueryMap` is a sparse ``(vocab, vocab)`` matrix ``M``: row ``w`` holds the terms (and their
weights) that wordpiece ``w`` of a query contributes. A text's vector is the sum of the rows of its
distinct wordpieces, so encoding a query is a tokenizer call and a few row look-ups, no network:

* a diagonal map is a per-term weight table (the inference-free model ``sparse-if``: each wordpiece
  weighs itself);
* a full map also *expands* a query with terms it does not contain (``puppy`` -> ``dog``), learned
  against a fixed document model's vectors (:mod:`lexret.training.query_map`, ``lexret train-queries``),
  so that the documents, and every index built from them, stay those of that model.

Stored as ``query_map.safetensors`` (CSR: ``indptr``, ``indices``, ``values``) in a checkpoint folder.
No torch here: the map is numpy, for the query path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lexret.errors import LexretError
from lexret.fileio import load_arrays, save_arrays

QUERY_MAP_FILE = "query_map.safetensors"


@dataclass
class QueryMap:
    """CSR rows over the wordpiece vocabulary: row ``w`` is ``indices[indptr[w]:indptr[w+1]]`` with their
    ``values`` (non-negative)."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.indptr = np.asarray(self.indptr, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float32)
        n = self.indptr.size - 1
        if (
            n < 1
            or self.indptr[0] != 0
            or self.indptr[-1] != self.indices.size
            or self.indices.size != self.values.size
            or np.any(np.diff(self.indptr) < 0)
        ):
            raise LexretError("a query map needs CSR arrays: indptr from 0 to nnz, one value per index")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise LexretError(f"a query map's term ids must lie in [0, {n})")
        if self.values.size and float(self.values.min()) < 0:
            raise LexretError("a query map's weights must be non-negative")
        self._lengths = np.diff(self.indptr)

    @property
    def dim(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @classmethod
    def diagonal(cls, weights: np.ndarray) -> QueryMap:
        """Each wordpiece with weight > 0 maps to itself with that weight (a per-term table)."""
        w = np.asarray(weights, dtype=np.float32)
        keep = w > 0
        indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        return cls(indptr, np.nonzero(keep)[0], w[keep])

    @classmethod
    def from_dense(cls, rows: np.ndarray, row_ids: np.ndarray, col_ids: np.ndarray, dim: int, per_row: int = 0):
        """A map from a dense block ``rows (len(row_ids), len(col_ids))``: entry ``[i, j]`` is the weight
        of term ``col_ids[j]`` in wordpiece ``row_ids[i]``'s row. ``per_row > 0`` keeps the heaviest
        ``per_row`` entries of each row; entries <= 0 are dropped."""
        rows = np.asarray(rows, dtype=np.float32)
        row_ids, col_ids = np.asarray(row_ids, dtype=np.int64), np.asarray(col_ids, dtype=np.int64)
        if rows.shape != (row_ids.size, col_ids.size):
            raise LexretError(f"query map block {rows.shape} does not match {row_ids.size} rows x {col_ids.size} terms")
        lengths = np.zeros(dim, np.int64)
        parts_i, parts_v = [], []
        for r, w in zip(rows, row_ids):
            nz = np.nonzero(r > 0)[0]
            if per_row and nz.size > per_row:
                nz = nz[np.argsort(-r[nz], kind="stable")[:per_row]]
            nz = nz[np.argsort(col_ids[nz], kind="stable")]
            parts_i.append(col_ids[nz])
            parts_v.append(r[nz])
            lengths[w] = nz.size
        order = np.argsort(row_ids, kind="stable")
        indices = np.concatenate([parts_i[i] for i in order]) if parts_i else np.zeros(0, np.int64)
        values = np.concatenate([parts_v[i] for i in order]) if parts_v else np.zeros(0, np.float32)
        return cls(np.concatenate([[0], np.cumsum(lengths)]), indices, values)

    def vector(self, wordpieces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(term ids, weights)`` of one text from its wordpiece ids (repeats count once), term ids sorted."""
        ids = np.unique(np.asarray(wordpieces, dtype=np.int64))
        ids = ids[(ids >= 0) & (ids < self.dim)]
        lengths = self._lengths[ids]
        if not lengths.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if int((lengths > 0).sum()) == 1:  # one row: already sorted and unique
            a = int(self.indptr[ids[lengths > 0][0]])
            n = int(lengths[lengths > 0][0])
            return self.indices[a : a + n], self.values[a : a + n]
        take = np.concatenate([np.arange(self.indptr[i], self.indptr[i + 1]) for i in ids[lengths > 0]])
        terms, inv = np.unique(self.indices[take], return_inverse=True)
        return terms, np.bincount(inv, weights=self.values[take]).astype(np.float32)

    def vectors(self, texts: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.vector(t) for t in texts]

    def save(self, folder: Path) -> Path:
        arrays = {
            "indptr": self.indptr,
            "indices": self.indices.astype(np.int32),
            "values": self.values.astype(np.float16),
        }
        return save_arrays(Path(folder) / QUERY_MAP_FILE, arrays)

    @classmethod
    def load(cls, folder: Path) -> QueryMap:
        t = load_arrays(Path(folder) / QUERY_MAP_FILE, {"indptr", "indices", "values"},
                        "the checkpoint's query map (rebuild it with lexret train-queries)")  # fmt: skip
        return cls(t["indptr"], t["indices"], t["values"].astype(np.float32))
