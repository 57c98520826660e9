"""Exact sparse search by brute force with scipy: the reference for Lucene, and a backend for
small corpora. Scores are exact integer dot products when both sides are quantized.

Ranking matches Lucene's: score descending, ties broken by docid string ascending, and only
documents sharing at least one term with the query (score > 0) are returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lexret.types import SparseBatch


def top_k_with_ties(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns of each row of ``scores`` (positive scores only), ties by ``tie_rank`` ascending.

    Returns ``(cols, vals)`` as lists per row packed into object arrays.
    """
    n, m = scores.shape
    out_cols = np.empty(n, dtype=object)
    out_vals = np.empty(n, dtype=object)
    kk = min(k, m)
    for i in range(n):
        row = scores[i]
        if kk < m:
            part = np.argpartition(-row, kk - 1)[:kk]
            cutoff = row[part].min()
            cand = np.nonzero(row >= cutoff)[0]  # every tie at the boundary competes
        else:
            cand = np.arange(m)
        cand = cand[row[cand] > 0]
        order = np.lexsort((tie_rank[cand], -row[cand]))[:k]
        out_cols[i] = cand[order]
        out_vals[i] = row[cand[order]]
    return out_cols, out_vals


class ScipySparseBackend:
    """Brute-force ``Q @ D.T`` over a document batch held in memory."""

    def __init__(self, docids: Sequence[str], docs: SparseBatch) -> None:
        if len(docids) != len(docs):
            raise ValueError(f"{len(docids)} ids for {len(docs)} documents")
        self.docids = list(docids)
        self.docs = docs
        self._dt = docs.to_scipy().T.tocsr().astype(np.float64)
        # rank of each docid in string order, for Lucene-compatible tie breaking
        order = sorted(range(len(self.docids)), key=self.docids.__getitem__)
        self._tie_rank = np.empty(len(order), dtype=np.int64)
        self._tie_rank[order] = np.arange(len(order))

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    def search(
        self, qids: Sequence[str], queries: SparseBatch, k: int, *, chunk_size: int | None = None
    ) -> dict[str, list[tuple[str, float]]]:
        if len(qids) != len(queries):
            raise ValueError("qids and queries differ in length")
        if queries.dim != self.docs.dim:
            raise ValueError(f"query dim {queries.dim} != document dim {self.docs.dim}")
        out: dict[str, list[tuple[str, float]]] = {}
        q_all = queries.to_scipy().astype(np.float64)
        if chunk_size is None:  # the dense score block is chunk x num_docs: keep it near 256 MB
            chunk_size = int(np.clip(32_000_000 // max(1, self.num_docs), 1, 256))
        for a in range(0, len(qids), chunk_size):
            scores = (q_all[a : a + chunk_size] @ self._dt).toarray()
            cols, vals = top_k_with_ties(scores, k, self._tie_rank)
            for j in range(scores.shape[0]):
                out[qids[a + j]] = [(self.docids[c], float(v)) for c, v in zip(cols[j], vals[j])]
        return out
