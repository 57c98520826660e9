"""Two-phase Lucene search: the heaviest query terms pick candidates, the whole query ranks them.

Phase 1 searches Lucene with the query's heaviest terms only (those weighing at least
``prune_ratio`` times the query's largest weight, and at most ``max_terms`` of them) for
``ceil(k * expansion)`` candidates; with ``max_postings`` it keeps, of those, the terms that score
most per posting read (weight x idf, first) while their posting lists hold at most ``max_postings``
postings together: a bound on phase 1's work that does not grow with the query's frequent terms;
phase 2 scores every candidate exactly with the whole query
from the stored quantized document vectors (``docvectors.npz``) and keeps the top ``k``, ties
broken by docid as Lucene and the brute force do. This is OpenSearch's neural-sparse two-phase
processor (``prune_ratio``, ``expansion_rate``) and Milvus' ``drop_ratio_search`` with refine.

It is approximate: a document that none of the heavy terms ranks among the candidates is lost.
With ``prune_ratio=0`` and no ``max_terms`` or ``max_postings`` phase 1 runs the whole query and the
result equals exact search. Only the Lucene backend is used (no pyserini import here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lexret.errors import LexretError

if TYPE_CHECKING:  # numpy is imported where it is used: the CLI reads the defaults without it
    import numpy as np

    from lexret.types import SparseBatch


@dataclass(frozen=True)
class TwoPhaseParams:
    """How much of the query selects candidates, and how many."""

    # phase 1 keeps terms whose weight is at least prune_ratio x the query's largest weight (0: all;
    # OpenSearch's default is 0.4)
    prune_ratio: float = 0.4
    # phase 1 retrieves ceil(k x expansion) candidates (OpenSearch's expansion_rate, default 5)
    expansion: float = 5.0
    # and keeps at most this many of the heaviest terms (None: no limit)
    max_terms: int | None = None
    # and then, most selective first (weight x idf), the terms whose posting lists hold at most this many
    # postings together (always at least one term; None: no budget)
    max_postings: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.prune_ratio <= 1.0:
            raise LexretError(f"prune ratio {self.prune_ratio} must lie in [0, 1]")
        if not self.expansion >= 1.0:
            raise LexretError(f"expansion {self.expansion} must be at least 1")
        if self.max_terms is not None and self.max_terms < 1:
            raise LexretError(f"max terms {self.max_terms} must be at least 1")
        if self.max_postings is not None and self.max_postings < 1:
            raise LexretError(f"max postings {self.max_postings} must be at least 1")

    def candidates(self, k: int) -> int:
        return math.ceil(k * self.expansion)

    def keep(
        self, idx: np.ndarray, val: np.ndarray, df: np.ndarray | None = None, n_docs: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The phase-1 terms of one query (positive weights only), heaviest first. ``df`` (posting-list
        length of every term id) and ``n_docs`` are needed with ``max_postings``."""
        import numpy as np

        pos = val > 0
        idx, val = idx[pos], val[pos]
        if val.size == 0:
            return idx, val
        order = np.lexsort((idx, -val))  # heaviest first, ties by term id: deterministic
        idx, val = idx[order], val[order]
        n = int(np.count_nonzero(val >= self.prune_ratio * val[0]))
        if self.max_terms is not None:
            n = min(n, self.max_terms)
        idx, val = idx[:n], val[:n]
        if self.max_postings is None:
            return idx, val
        if df is None or n_docs is None:
            raise ValueError("a postings budget needs the posting-list lengths (df) and the document count")
        chosen = within_budget(idx, val, df[idx], n_docs, self.max_postings)
        return idx[chosen], val[chosen]


def within_budget(idx: np.ndarray, val: np.ndarray, lists: np.ndarray, n_docs: int, budget: int) -> np.ndarray:
    """Positions (ascending) of the terms kept under a postings budget: terms in order of weight x idf
    (ties by term id), each taken if its list still fits in ``budget`` with those taken before it; the
    first is always taken, so that no query goes empty."""
    import numpy as np

    lists = np.asarray(lists, dtype=np.int64)
    key = val * np.log(max(n_docs, 1) / np.maximum(lists, 1))
    chosen, total = [], 0
    for j in np.lexsort((idx, -key)).tolist():
        if chosen and total + lists[j] > budget:
            continue
        chosen.append(j)
        total += int(lists[j])
    return np.sort(np.array(chosen, dtype=np.int64))


class TwoPhaseLuceneBackend:
    """Phase 1 through a :class:`~lexret.backends.lucene.LuceneImpactBackend`, phase 2 over the
    quantized document vectors held in memory."""

    def __init__(self, lucene, docids: Sequence[str], docs: SparseBatch, tokens: Sequence[str],
                 params: TwoPhaseParams | None = None) -> None:  # fmt: skip
        if len(docids) != len(docs):
            raise ValueError(f"{len(docids)} ids for {len(docs)} documents")
        import numpy as np

        self.lucene = lucene
        self.params = params or TwoPhaseParams()
        self.tokens = tokens
        self.row_of = {d: i for i, d in enumerate(docids)}
        self.indptr = docs.indptr.astype(np.int64)
        self.indices = docs.indices
        self.values = docs.values  # integer impacts; products are taken in int64
        self.dim = docs.dim
        # posting-list length of every term: what a postings budget is counted in
        self.df = np.bincount(self.indices, minlength=self.dim).astype(np.int64)
        self.n_docs = len(docids)

    def phase1_terms(self, idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The terms (and weights) of one integer query that phase 1 searches with."""
        return self.params.keep(idx, val, self.df, self.n_docs)

    def phase1_queries(self, queries: SparseBatch) -> list[dict[str, int]]:
        toks = self.tokens
        out = []
        for i in range(len(queries)):
            idx, val = self.phase1_terms(*queries.row(i))
            out.append({toks[j]: int(v) for j, v in zip(idx.tolist(), val.tolist())})
        return out

    def rescore(self, query_idx: np.ndarray, query_val: np.ndarray, docids: Sequence[str], k: int):
        """The top ``k`` of ``docids`` by their exact score under the whole query."""
        if not docids:
            return []
        import numpy as np

        rows = np.fromiter((self.row_of[d] for d in docids), dtype=np.int64, count=len(docids))
        dense = np.zeros(self.dim, dtype=np.int64)
        dense[query_idx] = query_val
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lens = ends - starts
        # positions of every candidate's postings in one flat array, candidate after candidate
        offsets = np.cumsum(lens) - lens
        pos = np.repeat(starts - offsets, lens) + np.arange(int(lens.sum()))
        contrib = dense[self.indices[pos]] * self.values[pos]
        # integer sums, exact in float64 far beyond any impact range
        scores = np.bincount(np.repeat(np.arange(len(rows)), lens), weights=contrib, minlength=len(rows))
        ranked = sorted(zip(docids, scores.tolist()), key=lambda t: (-t[1], t[0]))
        return [(d, s) for d, s in ranked[:k] if s > 0]

    def search(
        self, qids: Sequence[str], queries: SparseBatch, k: int, *, threads: int = 1
    ) -> dict[str, list[tuple[str, float]]]:
        """Search integer queries: phase 1 in Lucene, phase 2 here."""
        if len(qids) != len(queries):
            raise ValueError("qids and queries differ in length")
        first = self.lucene.search(qids, self.phase1_queries(queries), self.params.candidates(k), threads=threads)
        out: dict[str, list[tuple[str, float]]] = {}
        for i, qid in enumerate(qids):
            idx, val = queries.row(i)
            out[qid] = self.rescore(idx, val, [d for d, _ in first[qid]], k)
        return out
