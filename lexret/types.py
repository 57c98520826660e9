"""The one sparse type that flows from encoder to quantizer to index writer and searcher.

A :class:`SparseBatch` is a CSR matrix of ``n`` rows over ``dim`` vocabulary dimensions, kept as
plain numpy arrays so that it can be produced by any encoder and consumed without scipy or torch.
Term strings appear only at the index boundary (:meth:`SparseBatch.to_dicts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lexret.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import scipy.sparse

    from lexret.vocab import Vocabulary


@dataclass(frozen=True, eq=False)
class SparseBatch:
    """CSR batch: row ``i`` holds ``indices[indptr[i]:indptr[i+1]]`` with their ``values``.

    Within a row, indices are unique and sorted ascending (the constructors guarantee it).
    ``values`` is float32 for model output and int32 once quantized.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    dim: int

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int32)
        values = np.ascontiguousarray(self.values)
        if values.dtype.kind == "f":
            values = values.astype(np.float32, copy=False)
        elif values.dtype.kind in "iu":
            values = values.astype(np.int32, copy=False)
        else:
            raise TypeError(f"values must be float or int, got {values.dtype}")
        if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0:
            raise ValueError("indptr must be 1-d and start at 0")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        if indices.shape != values.shape or indices.ndim != 1 or indptr[-1] != indices.size:
            raise ValueError("indices and values must be 1-d with indptr[-1] entries")
        if indices.size and (indices.min() < 0 or indices.max() >= self.dim):
            raise ValueError(f"indices must lie in [0, {self.dim})")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "values", values)

    # ----- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, n: int, dim: int, dtype: type = np.float32) -> SparseBatch:
        return cls(np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, dtype), dim)

    @classmethod
    def from_scipy(cls, m: scipy.sparse.spmatrix | scipy.sparse.sparray) -> SparseBatch:
        """From any scipy sparse matrix; duplicates are summed and explicit zeros dropped."""
        import scipy.sparse as sp

        csr = sp.csr_matrix(m, copy=True)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        csr.sort_indices()
        return cls(csr.indptr, csr.indices, csr.data, csr.shape[1])

    @classmethod
    def from_dense(cls, x: np.ndarray) -> SparseBatch:
        """From a dense ``(n, dim)`` array; zeros are dropped."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError("from_dense expects a 2-d array")
        rows, cols = np.nonzero(x)
        indptr = np.zeros(x.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=x.shape[0]), out=indptr[1:])
        return cls(indptr, cols, x[rows, cols], x.shape[1])

    @classmethod
    def from_rows(
        cls, rows: Sequence[tuple[np.ndarray, np.ndarray]], dim: int, dtype: type = np.float32
    ) -> SparseBatch:
        """From per-row ``(indices, values)`` pairs; each row is sorted, duplicates summed."""
        indptr = np.zeros(len(rows) + 1, np.int64)
        idx_parts: list[np.ndarray] = []
        val_parts: list[np.ndarray] = []
        for i, (idx, val) in enumerate(rows):
            idx = np.asarray(idx, dtype=np.int64)
            val = np.asarray(val, dtype=dtype)
            if idx.size:
                uniq, inv = np.unique(idx, return_inverse=True)
                summed = np.zeros(uniq.size, dtype=dtype)
                np.add.at(summed, inv, val)
                keep = summed != 0
                idx, val = uniq[keep], summed[keep]
            idx_parts.append(idx)
            val_parts.append(val)
            indptr[i + 1] = indptr[i] + idx.size
        if not rows:
            return cls.empty(0, dim, dtype)
        return cls(indptr, np.concatenate(idx_parts), np.concatenate(val_parts), dim)

    @classmethod
    def from_dicts(
        cls, dicts: Sequence[Mapping[str, float]], vocab: Vocabulary, *, dtype: type = np.float32
    ) -> SparseBatch:
        """From ``{term: weight}`` dicts; every term must be in ``vocab`` (raises ``KeyError``)."""
        rows = [(np.array(vocab.ids(d.keys()), dtype=np.int64), np.array(list(d.values()))) for d in dicts]
        return cls.from_rows(rows, len(vocab), dtype=dtype)

    @staticmethod
    def concat(batches: Iterable[SparseBatch]) -> SparseBatch:
        """Stack batches row-wise (all must share ``dim``)."""
        batches = list(batches)
        if not batches:
            raise ValueError("concat needs at least one batch")
        dim = batches[0].dim
        if any(b.dim != dim for b in batches):
            raise ValueError("cannot concatenate batches of different dim")
        offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
        indptr = np.concatenate([[0]] + [b.indptr[1:] + off for b, off in zip(batches, offsets)])
        return SparseBatch(
            indptr,
            np.concatenate([b.indices for b in batches]),
            np.concatenate([b.values for b in batches]),
            dim,
        )

    # ----- views --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.indptr.size - 1

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @property
    def is_integer(self) -> bool:
        return self.values.dtype.kind == "i"

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` of row ``i``."""
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.values[a:b]

    def terms_per_row(self) -> np.ndarray:
        return np.diff(self.indptr)

    def document_frequency(self) -> np.ndarray:
        """``(dim,)`` how many rows hold each term: the length of its posting list if the rows are documents."""
        return np.bincount(self.indices, minlength=self.dim)

    def postings_per_row(self, document_frequency: np.ndarray) -> np.ndarray:
        """For each row as a query, the postings its terms' lists hold together (the sum of their
        ``document_frequency``): the work of an exhaustive term-at-a-time search."""
        rows = np.repeat(np.arange(len(self)), self.terms_per_row())
        return np.bincount(rows, weights=np.asarray(document_frequency)[self.indices], minlength=len(self))

    def slice(self, start: int, stop: int) -> SparseBatch:
        """Rows ``start:stop`` as a new batch (copies only the selected entries)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)  # an empty selection, as with list slicing
        a, b = self.indptr[start], self.indptr[stop]
        return SparseBatch(self.indptr[start : stop + 1] - a, self.indices[a:b], self.values[a:b], self.dim)

    def take(self, rows: Sequence[int] | np.ndarray) -> SparseBatch:
        return SparseBatch.from_scipy(self.to_scipy()[np.asarray(rows, dtype=np.int64)])

    def to_scipy(self) -> scipy.sparse.csr_matrix:
        import scipy.sparse as sp

        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(len(self), self.dim))

    def to_dense(self) -> np.ndarray:
        return self.to_scipy().toarray()

    def to_dicts(self, vocab: Vocabulary) -> list[dict[str, float | int]]:
        """``{term: weight}`` per row; the term-string view used at the index boundary."""
        if len(vocab) != self.dim:
            raise InputError(f"vocabulary has {len(vocab)} terms but vectors have dim {self.dim}")
        toks = vocab.tokens
        cast = int if self.is_integer else float
        out = []
        for i in range(len(self)):
            idx, val = self.row(i)
            out.append({toks[j]: cast(v) for j, v in zip(idx.tolist(), val.tolist())})
        return out

    # ----- pruning ------------------------------------------------------------------------------

    def top_k(self, k: int) -> SparseBatch:
        """Keep the ``k`` largest-weight entries of each row (ties: lower term id wins)."""
        if k < 1:
            raise ValueError("k must be >= 1")
        counts = self.terms_per_row()
        if counts.size == 0 or counts.max() <= k:
            return self
        keep = np.ones(self.nnz, dtype=bool)
        for i in np.nonzero(counts > k)[0]:
            a, b = self.indptr[i], self.indptr[i + 1]
            # stable sort on -value keeps ascending index order among equal weights
            order = np.argsort(-self.values[a:b], kind="stable")
            drop = order[k:]
            keep[a + drop] = False
        return self._mask(keep)

    def threshold(self, t: float) -> SparseBatch:
        """Drop entries whose weight is ``<= t``."""
        return self._mask(self.values > t)

    def _mask(self, keep: np.ndarray) -> SparseBatch:
        row_of = np.repeat(np.arange(len(self)), self.terms_per_row())
        indptr = np.zeros(len(self) + 1, np.int64)
        np.cumsum(np.bincount(row_of[keep], minlength=len(self)), out=indptr[1:])
        return SparseBatch(indptr, self.indices[keep], self.values[keep], self.dim)

    def __repr__(self) -> str:
        return f"SparseBatch(rows={len(self)}, dim={self.dim}, nnz={self.nnz}, dtype={self.values.dtype})"
