"""Exact sparse search, term at a time, compiled with numba: the only module that imports numba.

The quantized document vectors stored beside an index (``docvectors.npz``) are turned, at load,
into one posting array per term: document numbers (int32) and integer impacts (uint8, int16 or
int32, the narrowest that holds them). A query adds ``weight x impact`` of every posting of its
terms into an integer accumulator over all documents, then one pass over the accumulator keeps
the top ``k`` in a heap and zeroes it for the next query.

Rank safety: documents are numbered by the string order of their ids, so "score descending, then
docid ascending" (Lucene's order, and :mod:`lexret.backends.scipy_sparse`'s) is "score descending,
then document number ascending"; scores are exact integer dot products (int32 accumulator when
the query's largest possible score fits, int64 otherwise). Only documents sharing a term with the
query (score > 0) are returned.

:class:`ImpactOrderedBackend`, the approximate engine of :mod:`lexret.backends.impact`, shares the
posting arrays, the document numbering and the heap: it cuts each list into block pieces held
heaviest first, reads at most a budget of postings per query and rescores its best candidates
exactly with the same tie order.

Batches of queries are split across threads, each with its own accumulator; the kernels release
the GIL, so a plain thread pool runs them in parallel. Kernels are cached on disk
(``cache=True``) and compiled, or loaded from the cache, when a backend is created, so no query
pays for compilation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from lexret.lucene_ids import string_ranks
from lexret.types import SparseBatch

if TYPE_CHECKING:
    from lexret.backends.impact import ImpactParams

log = logging.getLogger(__name__)

INT32_MAX = np.iinfo(np.int32).max
# The top-k pass reads the accumulator in blocks: a block whose largest score cannot enter the heap
# is only zeroed (12% less CPU per query than testing every document, at 1M documents).
SCAN_BLOCK = 64
# The impact engine holds each posting list in pieces of 2**ACC_BLOCK_BITS documents (128k: a 512 KB
# int32 slice of the accumulator, well inside one core's L2 cache) and adds a query's postings block by block.
ACC_BLOCK_BITS = 17
# The impact engine gathers candidates in a buffer of this many times their number, pruned when full
# (2 measured faster than 8 at 1M items).
CANDIDATE_ROOM = 2


# ----- kernels ----------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _build_postings(indptr, indices, values, order, term_ptr, post_docs, post_imps):  # pragma: no cover - jitted
    """Fill the posting arrays: document number ``d`` is row ``order[d]``; lists come out sorted."""
    fill = term_ptr[:-1].copy()
    for d in range(order.size):
        r = order[d]
        for p in range(indptr[r], indptr[r + 1]):
            t = indices[p]
            pos = fill[t]
            post_docs[pos] = d
            post_imps[pos] = values[p]
            fill[t] = pos + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _worse(s_a, d_a, s_b, d_b):  # pragma: no cover - jitted
    """Hit a ranks below hit b: lower score, or the same score and a larger document number."""
    return s_a < s_b or (s_a == s_b and d_a > d_b)


@numba.njit(cache=True, nogil=True)
def _sift_down(hs, hd, i, n):  # pragma: no cover - jitted
    """Restore the heap (worst hit at the root) below position ``i``."""
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _worse(hs[c + 1], hd[c + 1], hs[c], hd[c]):
            c += 1
        if _worse(hs[c], hd[c], hs[i], hd[i]):
            hs[i], hs[c] = hs[c], hs[i]
            hd[i], hd[c] = hd[c], hd[i]
            i = c
        else:
            return


@numba.njit(cache=True, nogil=True, inline="always")
def _heap_push(hs, hd, n, cap, s, d):  # pragma: no cover - jitted
    """Offer hit ``(s, d)`` to a heap of at most ``cap`` hits (worst at the root); returns its new size."""
    if n < cap:
        i = n
        hs[i] = s
        hd[i] = d
        n += 1
        while i > 0:
            parent = (i - 1) // 2
            if _worse(hs[i], hd[i], hs[parent], hd[parent]):
                hs[i], hs[parent] = hs[parent], hs[i]
                hd[i], hd[parent] = hd[parent], hd[i]
                i = parent
            else:
                break
    elif _worse(hs[0], hd[0], s, d):
        hs[0] = s
        hd[0] = d
        _sift_down(hs, hd, 0, n)
    return n


@numba.njit(cache=True, nogil=True)
def _drain(hs, hd, n, out_scores, out_docs):  # pragma: no cover - jitted
    """Empty a heap of ``n`` hits into the output row, best first (the worst is popped first, into the back)."""
    m = n
    while m > 0:
        m -= 1
        out_scores[m] = hs[0]
        out_docs[m] = hd[0]
        hs[0] = hs[m]
        hd[0] = hd[m]
        _sift_down(hs, hd, 0, m)


@numba.njit(cache=True, nogil=True)
def _search_range(q_indptr, q_indices, q_values, first, step, term_ptr, post_docs, post_imps, acc, k,
                  out_docs, out_scores, out_counts, out_postings):  # fmt: skip  # pragma: no cover - jitted
    """Queries ``first, first + step, ...``: accumulate their postings into ``acc``, keep the top ``k``
    (score descending, document number ascending), leave ``acc`` zeroed."""
    n_docs = acc.size
    hs = np.empty(k, dtype=np.int64)
    hd = np.empty(k, dtype=np.int32)
    for q in range(first, q_indptr.size - 1, step):
        touched = 0
        for p in range(q_indptr[q], q_indptr[q + 1]):
            t = q_indices[p]
            w = q_values[p]
            a = term_ptr[t]
            b = term_ptr[t + 1]
            touched += b - a
            for j in range(a, b):
                acc[post_docs[j]] += w * post_imps[j]
        out_postings[q] = touched
        n = 0
        floor = 0  # a new hit must score above this: 0 until the heap is full, then its worst score
        if touched > 0:
            for start in range(0, n_docs, SCAN_BLOCK):
                stop = min(start + SCAN_BLOCK, n_docs)
                top = acc[start]
                for d in range(start + 1, stop):  # a vectorised max: most blocks hold no new hit
                    if acc[d] > top:
                        top = acc[d]
                if top > floor:
                    for d in range(start, stop):
                        s = acc[d]
                        if s > floor:  # documents come in ascending order: a new hit loses every tie
                            n = _heap_push(hs, hd, n, k, s, d)
                            if n == k:
                                floor = hs[0]
                for d in range(start, stop):
                    acc[d] = 0
        out_counts[q] = n
        _drain(hs, hd, n, out_scores[q], out_docs[q])


@numba.njit(cache=True, nogil=True)
def _segment_by_block(term_ptr, post_docs, post_imps, seg):  # pragma: no cover - jitted
    """Split every posting list (in document order) into its pieces of one block of
    ``2**ACC_BLOCK_BITS`` documents each and sort each piece by impact, heaviest first (stable: equal
    impacts stay in document order). ``seg[t, b]`` is where term ``t``'s piece of block ``b`` starts,
    ``seg[t, -1]`` where its list ends."""
    n_blocks = seg.shape[1] - 1
    for t in range(term_ptr.size - 1):
        p = term_ptr[t]
        e = term_ptr[t + 1]
        for b in range(n_blocks):
            seg[t, b] = p
            stop = (b + 1) << ACC_BLOCK_BITS
            while p < e and post_docs[p] < stop:
                p += 1
        seg[t, n_blocks] = e
        for b in range(n_blocks):
            lo = seg[t, b]
            hi = seg[t, b + 1]
            if hi - lo > 1:
                perm = np.argsort(-post_imps[lo:hi].astype(np.int64), kind="mergesort")
                post_docs[lo:hi] = post_docs[lo:hi][perm]
                post_imps[lo:hi] = post_imps[lo:hi][perm]


@numba.njit(cache=True, nogil=True, inline="always")
def _heavy_count(post_imps, a, b, least):  # pragma: no cover - jitted
    """Postings of the impact-ordered list ``[a, b)`` whose impact is at least ``least``."""
    lo = a
    hi = b
    while lo < hi:
        mid = (lo + hi) // 2
        if post_imps[mid] >= least:
            lo = mid + 1
        else:
            hi = mid
    return lo - a


@numba.njit(cache=True, nogil=True)
def _count_at_least(seg, t, post_imps, least):  # pragma: no cover - jitted
    """Postings of term ``t`` (over all its block pieces) whose impact is at least ``least``."""
    n = 0
    for b in range(seg.shape[1] - 1):
        n += _heavy_count(post_imps, seg[t, b], seg[t, b + 1], least)
    return n


@numba.njit(cache=True, nogil=True)
def _thresholds(q_terms, q_weights, seg, term_max, post_imps, budget, out_least):  # pragma: no cover - jitted
    """The least impact read of each query term (``out_least``): every posting whose contribution
    (weight x impact) is at least the smallest threshold that keeps the total within ``budget`` (all
    postings when they fit; none of a term of weight 0). Returns the postings to read."""
    none = np.iinfo(np.int64).max
    total = 0
    top = 0
    for i in range(q_terms.size):
        t = q_terms[i]
        out_least[i] = 1 if q_weights[i] > 0 else none
        if q_weights[i] > 0:
            total += seg[t, -1] - seg[t, 0]
            top = max(top, q_weights[i] * term_max[t])
    if total <= budget:
        return total
    lo = 1  # the answer lies in [lo, hi]: at hi = top + 1 no posting qualifies
    hi = top + 1
    while lo < hi:
        tau = (lo + hi) // 2
        count = 0
        for i in range(q_terms.size):
            if q_weights[i] > 0:
                count += _count_at_least(seg, q_terms[i], post_imps, (tau + q_weights[i] - 1) // q_weights[i])
        if count <= budget:
            hi = tau
        else:
            lo = tau + 1
    total = 0
    for i in range(q_terms.size):
        if q_weights[i] > 0:
            out_least[i] = (lo + q_weights[i] - 1) // q_weights[i]
            total += _count_at_least(seg, q_terms[i], post_imps, out_least[i])
    return total


@numba.njit(cache=True, nogil=True)
def _prune_candidates(cs, cd, n, keep):  # pragma: no cover - jitted
    """Keep the ``keep`` best of the ``n`` candidates (partial score descending, then document number
    ascending) at the front of ``cs`` / ``cd``, in no order; returns ``(keep, the score a new candidate
    needs)``."""
    tied = np.partition(cs[:n], n - keep)[n - keep]  # the keep-th best score
    better = cs[:n] > tied
    s_b = cs[:n][better]
    d_b = cd[:n][better]
    tie_docs = np.sort(cd[:n][cs[:n] == tied])[: keep - s_b.size]
    m = s_b.size
    cs[:m] = s_b
    cd[:m] = d_b
    cs[m:keep] = tied
    cd[m:keep] = tie_docs
    return keep, tied


@numba.njit(cache=True, nogil=True)
def _search_budget_range(q_indptr, q_indices, q_values, first, step, seg, term_max, post_docs, post_imps, doc_rows,
                         fwd_indptr, fwd_indices, fwd_values, budget, n_cand, acc, q_dense, k,
                         out_docs, out_scores, out_counts, out_postings):  # fmt: skip  # pragma: no cover - jitted
    """Queries ``first, first + step, ...`` over posting lists cut into blocks of ``2**ACC_BLOCK_BITS``
    documents, each piece heaviest first: read the heaviest postings within ``budget``, block by block
    (the accumulator's writes stay within a cache-sized slice), keep the ``n_cand`` best documents by
    that partial score, score those exactly from the forward index (document number ``d`` is row
    ``doc_rows[d]``) and keep the top ``k``. Leaves ``acc`` and ``q_dense`` zeroed."""
    n_blocks = seg.shape[1] - 1
    cs = np.empty(CANDIDATE_ROOM * n_cand, dtype=np.int64)  # pruned to the n_cand best when full
    cd = np.empty(CANDIDATE_ROOM * n_cand, dtype=np.int32)
    hs = np.empty(k, dtype=np.int64)
    hd = np.empty(k, dtype=np.int32)
    for q in range(first, q_indptr.size - 1, step):
        qa = q_indptr[q]
        qb = q_indptr[q + 1]
        terms = q_indices[qa:qb]
        weights = q_values[qa:qb]
        least = np.empty(qb - qa, dtype=np.int64)
        lengths = np.empty(qb - qa, dtype=np.int64)
        out_postings[q] = _thresholds(terms, weights, seg, term_max, post_imps, budget, least)
        nc = 0
        floor = 1  # a document joins the candidates at this partial score or above (raised as they fill)
        for b in range(n_blocks):
            in_block = 0
            for i in range(terms.size):
                w = weights[i]
                a = seg[terms[i], b]
                n = _heavy_count(post_imps, a, seg[terms[i], b + 1], least[i])
                lengths[i] = n
                in_block += n
                for j in range(a, a + n):
                    acc[post_docs[j]] += w * post_imps[j]
            if in_block == 0:
                continue
            lo = b << ACC_BLOCK_BITS
            hi = min(lo + (1 << ACC_BLOCK_BITS), acc.size)
            if SCAN_BLOCK * in_block >= hi - lo:  # dense block: scan the slice, skipping groups below the floor
                for start in range(lo, hi, SCAN_BLOCK):
                    stop = min(start + SCAN_BLOCK, hi)
                    top = acc[start]
                    for d in range(start + 1, stop):
                        if acc[d] > top:
                            top = acc[d]
                    if top >= floor:
                        for d in range(start, stop):
                            s = acc[d]
                            if s >= floor:
                                cs[nc] = s
                                cd[nc] = d
                                nc += 1
                                if nc == cs.size:
                                    nc, floor = _prune_candidates(cs, cd, nc, n_cand)
                    for d in range(start, stop):
                        acc[d] = 0
            else:  # sparse block: visit the documents read
                for i in range(terms.size):
                    a = seg[terms[i], b]
                    for j in range(a, a + lengths[i]):
                        d = post_docs[j]
                        s = acc[d]
                        if s == 0:  # already offered (a document appears once per term it was read in)
                            continue
                        acc[d] = 0
                        if s >= floor:
                            cs[nc] = s
                            cd[nc] = d
                            nc += 1
                            if nc == cs.size:
                                nc, floor = _prune_candidates(cs, cd, nc, n_cand)
        if nc > n_cand:
            nc, floor = _prune_candidates(cs, cd, nc, n_cand)
        for i in range(terms.size):
            q_dense[terms[i]] = weights[i]
        n = 0
        for j in range(nc):
            d = cd[j]
            r = doc_rows[d]
            s = 0
            for p in range(fwd_indptr[r], fwd_indptr[r + 1]):
                s += q_dense[fwd_indices[p]] * fwd_values[p]
            n = _heap_push(hs, hd, n, k, s, d)
        for i in range(terms.size):
            q_dense[terms[i]] = 0
        out_counts[q] = n
        _drain(hs, hd, n, out_scores[q], out_docs[q])


# ----- backend ----------------------------------------------------------------------------------


@dataclass
class SearchStats:
    """Work done by the last :meth:`ExactBackend.search` call."""

    queries: int = 0
    postings: int = 0  # postings added into the accumulator, all queries together

    @property
    def postings_per_query(self) -> float:
        return self.postings / self.queries if self.queries else 0.0


def _impact_dtype(max_value: int) -> type:
    for dt in (np.uint8, np.int16, np.int32):
        if max_value <= np.iinfo(dt).max:
            return dt
    raise ValueError(f"impacts up to {max_value} do not fit in int32")


class ExactBackend:
    """Exact term-at-a-time search over integer document vectors held in memory.

    ``threads`` is the default number of threads a batch is split across.
    """

    def __init__(self, docids: Sequence[str], docs: SparseBatch, *, threads: int = 1) -> None:
        if len(docids) != len(docs):
            raise ValueError(f"{len(docids)} ids for {len(docs)} documents")
        if not docs.is_integer:
            raise ValueError("the exact backend needs quantized (integer) document vectors")
        if docs.nnz and docs.values.min() < 1:
            raise ValueError("document impacts must be positive integers")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        t0 = time.perf_counter()
        self.docids = list(docids)
        self.dim = docs.dim
        self.threads = threads
        ranks = string_ranks(self.docids)
        order = np.empty(len(ranks), dtype=np.int64)
        order[ranks] = np.arange(len(ranks))
        self._order = order  # document number -> position in ``docids``
        df = np.bincount(docs.indices, minlength=docs.dim)
        self.term_ptr = np.zeros(docs.dim + 1, dtype=np.int64)
        np.cumsum(df, out=self.term_ptr[1:])
        max_impact = int(docs.values.max()) if docs.nnz else 1
        self.post_docs = np.empty(docs.nnz, dtype=np.int32)
        self.post_imps = np.empty(docs.nnz, dtype=_impact_dtype(max_impact))
        _build_postings(docs.indptr, docs.indices, docs.values, order, self.term_ptr, self.post_docs, self.post_imps)
        # the largest impact of each term bounds a query's score: it picks the accumulator's width
        self._term_max = np.zeros(docs.dim, dtype=np.int64)
        if docs.nnz:
            np.maximum.at(self._term_max, docs.indices, docs.values)
        self._accs: dict[tuple[type, int], np.ndarray] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.last_stats = SearchStats()
        self._prepare(docs)
        self._warm_up()
        log.info("%s: %d documents, %d postings, ready in %.1fs", type(self).__name__, len(docs), docs.nnz,
                 time.perf_counter() - t0)  # fmt: skip

    def _prepare(self, docs: SparseBatch) -> None:
        """What a subclass builds from the documents after the posting arrays, before the warm-up."""

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def nbytes(self) -> int:
        """Memory held by the posting arrays."""
        return self.post_docs.nbytes + self.post_imps.nbytes + self.term_ptr.nbytes

    def _warm_up(self) -> None:
        """Compile the search kernels (or load them from numba's cache) before the first query."""
        empty = SparseBatch.empty(1, self.dim, np.int32)
        for acc_type in (np.int32, np.int64):
            self._run(empty, 1, 1, acc_type)

    def _acc(self, acc_type: type, slot: int) -> np.ndarray:
        key = (acc_type, slot)
        if key not in self._accs:
            self._accs[key] = np.zeros(self.num_docs, dtype=acc_type)
        return self._accs[key]

    def _run(self, queries: SparseBatch, k: int, threads: int, acc_type: type):
        nq = len(queries)
        kk = max(1, min(k, self.num_docs))
        docs = np.zeros((nq, kk), dtype=np.int32)  # past counts[i]: 0, a valid row to map
        scores = np.empty((nq, kk), dtype=np.int64)
        counts = np.zeros(nq, dtype=np.int64)
        postings = np.zeros(nq, dtype=np.int64)
        q_values = queries.values.astype(np.int64)
        threads = max(1, min(threads, nq))

        def part(first: int) -> None:
            self._kernel(queries.indptr, queries.indices, q_values, first, threads, acc_type, kk, docs, scores, counts,
                         postings)  # fmt: skip

        if threads == 1:
            part(0)
        else:
            if self._pool is None or self._pool._max_workers < threads:
                if self._pool is not None:
                    self._pool.shutdown()
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="lexret-exact")
            for f in [self._pool.submit(part, i) for i in range(threads)]:
                f.result()
        return docs, scores, counts, postings

    def _kernel(self, q_indptr, q_indices, q_values, first, step, acc_type, k, docs, scores, counts, postings) -> None:
        """Search queries ``first, first + step, ...`` on the calling thread (slot ``first``)."""
        _search_range(q_indptr, q_indices, q_values, first, step, self.term_ptr, self.post_docs, self.post_imps,
                      self._acc(acc_type, first), k, docs, scores, counts, postings)  # fmt: skip

    def search_arrays(
        self, queries: SparseBatch, k: int, *, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` per query as arrays: ``(rows, scores, counts)``; row ``i`` holds ``counts[i]``
        hits, ``rows`` are positions in ``docids``."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if queries.dim != self.dim:
            raise ValueError(f"query dim {queries.dim} != document dim {self.dim}")
        if not queries.is_integer:
            raise ValueError("the exact backend needs quantized (integer) query weights")
        if queries.nnz and queries.values.min() < 0:
            raise ValueError("query weights must not be negative")
        bound = np.bincount(
            np.repeat(np.arange(len(queries)), queries.terms_per_row()),
            weights=queries.values.astype(np.float64) * self._term_max[queries.indices], minlength=len(queries),
        )  # fmt: skip
        acc_type = np.int32 if not bound.size or bound.max() <= INT32_MAX else np.int64
        docs, scores, counts, postings = self._run(queries, k, threads or self.threads, acc_type)
        self.last_stats = SearchStats(len(queries), int(postings.sum()))
        return self._order[docs], scores, counts

    def search(
        self, qids: Sequence[str], queries: SparseBatch, k: int, *, threads: int | None = None
    ) -> dict[str, list[tuple[str, float]]]:
        """``{qid: [(docid, score), ...]}``, best first (score descending, docid ascending)."""
        if len(qids) != len(queries):
            raise ValueError("qids and queries differ in length")
        rows, scores, counts = self.search_arrays(queries, k, threads=threads)
        ids = self.docids
        return {
            qid: [(ids[r], float(s)) for r, s in zip(rows[i, : counts[i]].tolist(), scores[i, : counts[i]].tolist())]
            for i, qid in enumerate(qids)
        }

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class ImpactOrderedBackend(ExactBackend):
    """Approximate search that reads at most a budget of postings per query
    (:mod:`lexret.backends.impact`: what it does and its parameters).

    Every posting list is cut into pieces of one block of ``2**ACC_BLOCK_BITS`` documents, each piece
    heaviest impact first; a query reads, across its terms, the postings
    that add most to a score (weight x impact at least a threshold chosen per query so that at most
    ``params.max_postings`` are read), keeps the ``ceil(k x params.expansion)`` documents with the
    highest partial scores and ranks them by their exact scores from the document vectors. With a
    budget that holds all of a query's postings the result equals :class:`ExactBackend`'s.
    """

    def __init__(
        self, docids: Sequence[str], docs: SparseBatch, params: ImpactParams | None = None, *, threads: int = 1
    ) -> None:
        from lexret.backends.impact import ImpactParams

        self.params = params or ImpactParams()
        super().__init__(docids, docs, threads=threads)

    def _prepare(self, docs: SparseBatch) -> None:
        n_blocks = ((self.num_docs - 1) >> ACC_BLOCK_BITS) + 1 if self.num_docs else 0
        self._seg = np.zeros((docs.dim, n_blocks + 1), dtype=np.int64)
        _segment_by_block(self.term_ptr, self.post_docs, self.post_imps, self._seg)
        # the forward index of the exact second phase: document number d is row self._order[d]
        self._fwd_indptr = np.ascontiguousarray(docs.indptr, dtype=np.int64)
        self._fwd_indices = np.ascontiguousarray(docs.indices, dtype=np.uint16 if docs.dim <= 1 << 16 else np.int32)
        self._fwd_values = np.ascontiguousarray(docs.values, dtype=self.post_imps.dtype)
        self._scratch: dict[int, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        """Memory held by the posting arrays and the forward index."""
        fwd = self._fwd_indptr.nbytes + self._fwd_indices.nbytes + self._fwd_values.nbytes
        return super().nbytes + self._seg.nbytes + fwd

    def _q_dense(self, slot: int) -> np.ndarray:
        """One thread's query weights by term id (zero between queries)."""
        if slot not in self._scratch:
            self._scratch[slot] = np.zeros(self.dim, np.int64)
        return self._scratch[slot]

    def _kernel(self, q_indptr, q_indices, q_values, first, step, acc_type, k, docs, scores, counts, postings) -> None:
        n_cand = max(k, min(self.params.candidates(k), self.num_docs))
        _search_budget_range(q_indptr, q_indices, q_values, first, step, self._seg, self._term_max, self.post_docs,
                             self.post_imps, self._order, self._fwd_indptr, self._fwd_indices, self._fwd_values,
                             self.params.max_postings, n_cand, self._acc(acc_type, first), self._q_dense(first), k,
                             docs, scores, counts, postings)  # fmt: skip
