"""Document reordering before indexing: recursive graph bisection (BP).

Lucene numbers documents in the order they are written, and both the size of a posting list and
the cost of searching it depend on that order: docid gaps are delta-coded, so documents that share
terms compress better when they sit close together, and block-max pruning skips more when each
128-document block of a posting list holds similar documents. Learned sparse vectors of images
share many frequent terms ("man", "dog", "water"), which makes the order matter.

:func:`bp_order` computes an order by recursive graph bisection (Dhulipala et al., KDD 2016): a
group of documents is split in two halves, and documents are swapped between the halves while a
swap lowers the estimated cost of coding the docid gaps of both halves (for each term,
``d * log2(n / (d + 1))`` bits for ``d`` documents of ``n``); then each half is split again.
Every group of a level is refined at once with vectorised numpy, so one iteration costs a few
passes over the postings.

Reordering changes only which internal number a document gets: ranked lists are the same, since
lexret breaks score ties by the docid string, not by Lucene's internal number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from lexret.types import SparseBatch

log = logging.getLogger(__name__)

REORDER_METHODS = ("none", "bp")


@dataclass(frozen=True)
class BPParams:
    """Settings of recursive graph bisection."""

    iterations: int = 8  # swap rounds per level (gains flatten after a handful)
    min_group: int = 16  # groups of at most this many documents are not split further
    max_depth: int = 24


def _log_gap_cost(d: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Estimated bits to code ``d`` docids among ``n`` documents: ``d * log2(n / (d + 1))``."""
    return d * np.log2(n / (d + 1.0))


def log_gap_bits(docs: SparseBatch, order: np.ndarray | None = None) -> float:
    """Bits of all docid gaps if every gap ``g`` costs ``log2(g) + 1`` (a compression proxy).

    ``order`` lists the documents in their new order (position -> row); default: as they are."""
    n = len(docs)
    pos = np.empty(n, dtype=np.int64)
    pos[np.arange(n) if order is None else np.asarray(order)] = np.arange(n)
    doc_of = np.repeat(np.arange(n), np.diff(docs.indptr))
    keys = docs.indices.astype(np.int64) * n + pos[doc_of]
    keys.sort()
    term = keys // n
    p = keys % n
    first = np.ones(keys.size, dtype=bool)
    first[1:] = term[1:] != term[:-1]
    gaps = np.where(first, p + 1, np.diff(p, prepend=0))
    return float(np.sum(np.log2(gaps) + 1.0))


def bp_order(docs: SparseBatch, params: BPParams | None = None) -> np.ndarray:
    """An order of the rows of ``docs`` (position -> row) that clusters documents sharing terms."""
    p = params or BPParams()
    n = len(docs)
    if n <= p.min_group or docs.nnz == 0:
        return np.arange(n)
    # Only terms that occur in at least two documents can shorten a gap.
    df = np.bincount(docs.indices, minlength=docs.dim)
    keep = df[docs.indices] >= 2
    doc_of_all = np.repeat(np.arange(n, dtype=np.int64), np.diff(docs.indptr))
    p_doc = doc_of_all[keep]
    p_term = docs.indices[keep].astype(np.int64)
    if p_doc.size == 0:
        return np.arange(n)
    order = np.arange(n, dtype=np.int64)  # position -> doc
    bounds = np.array([0, n], dtype=np.int64)  # group boundaries in positions
    depth = 0
    while depth < p.max_depth:
        sizes = np.diff(bounds)
        split = sizes > p.min_group
        if not split.any():
            break
        # each group splits at its middle; groups too small to split keep one "half"
        mids = bounds[:-1] + sizes // 2
        new_bounds = np.unique(np.concatenate([bounds, mids[split]]))
        _refine(order, bounds, mids, split, p_doc, p_term, n, p.iterations)
        bounds = new_bounds
        depth += 1
    return order


def _refine(
    order: np.ndarray,
    bounds: np.ndarray,
    mids: np.ndarray,
    split: np.ndarray,
    p_doc: np.ndarray,
    p_term: np.ndarray,
    n: int,
    iterations: int,
) -> None:
    """One level: swap documents between the two halves of every splittable group, in place."""
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    group_of_pos = np.searchsorted(bounds, np.arange(n), side="right") - 1
    active_pos = split[group_of_pos]
    # postings of documents in groups that split at this level, keyed by (group, term)
    doc_group = np.empty(n, dtype=np.int64)
    doc_group[order] = group_of_pos
    doc_active = np.zeros(n, dtype=bool)
    doc_active[order] = active_pos
    sel = doc_active[p_doc]
    pd, pt = p_doc[sel], p_term[sel]
    if pd.size == 0:
        return
    key = doc_group[pd] * (int(pt.max()) + 1) + pt
    _, seg = np.unique(key, return_inverse=True)
    seg = seg.ravel()
    n_seg = int(seg.max()) + 1
    g_of_seg = np.zeros(n_seg, dtype=np.int64)
    g_of_seg[seg] = doc_group[pd]
    n_left = (mids - bounds[:-1]).astype(np.float64)
    n_right = (bounds[1:] - mids).astype(np.float64)
    nl, nr = n_left[g_of_seg], n_right[g_of_seg]
    groups = np.flatnonzero(split)
    for _ in range(iterations):
        pos[order] = np.arange(n)
        is_left_doc = pos < mids[doc_group]
        left_p = is_left_doc[pd]
        d_left = np.bincount(seg, weights=left_p, minlength=n_seg)
        d_right = np.bincount(seg, weights=~left_p, minlength=n_seg)
        base = _log_gap_cost(d_left, nl) + _log_gap_cost(d_right, nr)
        # gain of moving one document across, per (group, term): positive = fewer bits
        l2r = base - _log_gap_cost(np.maximum(d_left - 1, 0), nl) - _log_gap_cost(d_right + 1, nr)
        r2l = base - _log_gap_cost(d_left + 1, nl) - _log_gap_cost(np.maximum(d_right - 1, 0), nr)
        gain_p = np.where(left_p, l2r[seg], r2l[seg])
        gain = np.bincount(pd, weights=gain_p, minlength=n)
        swapped = 0
        # pair the best mover of each left half with the best of its right half, and so on
        a_pos = np.flatnonzero(active_pos)
        a_doc = order[a_pos]
        a_grp = group_of_pos[a_pos]
        a_left = is_left_doc[a_doc]
        srt = np.lexsort((-gain[a_doc], ~a_left, a_grp))
        a_doc, a_grp, a_left = a_doc[srt], a_grp[srt], a_left[srt]
        # rank within (group, side)
        start = np.ones(a_doc.size, dtype=bool)
        start[1:] = (a_grp[1:] != a_grp[:-1]) | (a_left[1:] != a_left[:-1])
        block_start = np.maximum.accumulate(np.where(start, np.arange(a_doc.size), 0))
        rank = np.arange(a_doc.size) - block_start
        half = int(max(n_left[groups].max(), n_right[groups].max()))
        lt = np.full((bounds.size - 1, half), -1, dtype=np.int64)
        rt = np.full((bounds.size - 1, half), -1, dtype=np.int64)
        lt[a_grp[a_left], rank[a_left]] = a_doc[a_left]
        rt[a_grp[~a_left], rank[~a_left]] = a_doc[~a_left]
        both = (lt >= 0) & (rt >= 0)
        pair_gain = np.where(both, gain[np.maximum(lt, 0)] + gain[np.maximum(rt, 0)], -np.inf)
        # gains are sorted descending on both sides, so the swaps worth making are a prefix
        do = pair_gain > 0
        do &= np.cumprod(do, axis=1).astype(bool)
        if not do.any():
            break
        ld, rd = lt[do], rt[do]
        pl, pr = pos[ld], pos[rd]
        order[pl], order[pr] = rd, ld
        swapped = int(do.sum())
        log.debug("bp level: %d swaps", swapped)


def reorder(docs: SparseBatch, method: str, params: BPParams | None = None) -> np.ndarray:
    """The order (position -> row) in which to write ``docs``: ``none`` keeps it, ``bp`` bisects."""
    if method == "none":
        return np.arange(len(docs))
    if method == "bp":
        return bp_order(docs, params)
    raise ValueError(f"unknown reorder method {method!r}; one of {', '.join(REORDER_METHODS)}")
