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
    # postings, kept sorted by (group, term) from level to level, so that no level needs a sort
    by_term = np.argsort(docs.indices[keep], kind="stable")
    pd = doc_of_all[keep][by_term]
    pt = docs.indices[keep][by_term].astype(np.int64)
    order = np.arange(n, dtype=np.int64)  # position -> doc
    pos = np.arange(n, dtype=np.int64)  # doc -> position
    bounds = np.array([0, n], dtype=np.int64)  # group boundaries in positions
    for _ in range(p.max_depth):
        if pd.size == 0:
            break
        sizes = np.diff(bounds)
        split = sizes > p.min_group
        if not split.any():
            break
        mids = bounds[:-1] + sizes // 2
        group_of_pos = np.repeat(np.arange(sizes.size), sizes)
        pg = group_of_pos[pos[pd]]
        # groups too small to split are final: their postings leave for good
        act = split[pg]
        pd, pt, pg = pd[act], pt[act], pg[act]
        if pd.size:
            _refine(order, pos, mids, bounds, pd, pt, pg, p.iterations)
            pd, pt = _partition(pd, pt, pg, pos[pd] < mids[pg])
        bounds = np.unique(np.concatenate([bounds, mids[split]]))
    return order


def _partition(pd: np.ndarray, pt: np.ndarray, pg: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Postings sorted by (group, term) -> sorted by (child group, term): a stable two-way split of
    each group's block, left child first, in linear time."""
    m = pd.size
    start = np.ones(m, dtype=bool)
    start[1:] = pg[1:] != pg[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(m), 0))
    cl = np.cumsum(left)
    cr = np.cumsum(~left)
    cl0 = cl[first] - left[first]
    cr0 = cr[first] - ~left[first]
    ends = np.flatnonzero(np.append(start[1:], True))
    last = np.repeat(ends, np.diff(np.concatenate([[0], ends + 1])))
    n_left = cl[last] - cl0
    new = np.where(left, first + (cl - cl0 - 1), first + n_left + (cr - cr0 - 1))
    out_d = np.empty_like(pd)
    out_t = np.empty_like(pt)
    out_d[new] = pd
    out_t[new] = pt
    return out_d, out_t


def _refine(
    order: np.ndarray,
    pos: np.ndarray,
    mids: np.ndarray,
    bounds: np.ndarray,
    pd: np.ndarray,
    pt: np.ndarray,
    pg: np.ndarray,
    iterations: int,
) -> None:
    """One level: swap documents between the two halves of every group that splits, in place.

    ``pd``/``pt``/``pg``: document, term and group of the postings of those groups, sorted by
    (group, term)."""
    n = order.size
    change = np.ones(pd.size, dtype=bool)
    change[1:] = (pg[1:] != pg[:-1]) | (pt[1:] != pt[:-1])
    seg = np.cumsum(change) - 1
    n_seg = int(seg[-1]) + 1
    g_of_seg = pg[change]
    n_left = (mids - bounds[:-1]).astype(np.float64)
    n_right = (bounds[1:] - mids).astype(np.float64)
    nl, nr = n_left[g_of_seg], n_right[g_of_seg]
    # the documents of the splitting groups, with their group
    groups = np.unique(pg)
    a_pos = np.concatenate([np.arange(bounds[g], bounds[g + 1]) for g in groups]) if groups.size < 64 else None
    if a_pos is None:
        sizes = np.diff(bounds)
        in_split = np.zeros(sizes.size, dtype=bool)
        in_split[groups] = True
        a_pos = np.flatnonzero(np.repeat(in_split, sizes))
    a_grp = np.searchsorted(bounds, a_pos, side="right") - 1
    half = int(max(n_left[groups].max(), n_right[groups].max()))
    d_all = np.bincount(seg, minlength=n_seg).astype(np.float64)
    for _ in range(iterations):
        left_p = pos[pd] < mids[pg]
        d_left = np.bincount(seg, weights=left_p, minlength=n_seg)
        d_right = d_all - d_left
        base = _log_gap_cost(d_left, nl) + _log_gap_cost(d_right, nr)
        # gain of moving one document across, per (group, term): positive = fewer bits
        l2r = base - _log_gap_cost(np.maximum(d_left - 1, 0), nl) - _log_gap_cost(d_right + 1, nr)
        r2l = base - _log_gap_cost(d_left + 1, nl) - _log_gap_cost(np.maximum(d_right - 1, 0), nr)
        gain = np.bincount(pd, weights=np.where(left_p, l2r[seg], r2l[seg]), minlength=n)
        # pair the best mover of each left half with the best of its right half, and so on
        a_doc = order[a_pos]
        a_left = a_pos < mids[a_grp]
        srt = np.lexsort((-gain[a_doc], ~a_left, a_grp))
        s_doc, s_grp, s_left = a_doc[srt], a_grp[srt], a_left[srt]
        start = np.ones(s_doc.size, dtype=bool)
        start[1:] = (s_grp[1:] != s_grp[:-1]) | (s_left[1:] != s_left[:-1])
        rank = np.arange(s_doc.size) - np.maximum.accumulate(np.where(start, np.arange(s_doc.size), 0))
        lt = np.full((bounds.size - 1, half), -1, dtype=np.int64)
        rt = np.full((bounds.size - 1, half), -1, dtype=np.int64)
        lt[s_grp[s_left], rank[s_left]] = s_doc[s_left]
        rt[s_grp[~s_left], rank[~s_left]] = s_doc[~s_left]
        both = (lt >= 0) & (rt >= 0)
        pair_gain = np.where(both, gain[np.maximum(lt, 0)] + gain[np.maximum(rt, 0)], -np.inf)
        # gains are sorted descending on both sides, so the swaps worth making are a prefix
        do = np.cumprod(pair_gain > 0, axis=1).astype(bool)
        if not do.any():
            break
        ld, rd = lt[do], rt[do]
        pl, pr = pos[ld], pos[rd]
        order[pl], order[pr] = rd, ld
        pos[rd], pos[ld] = pl, pr


def reorder(docs: SparseBatch, method: str, params: BPParams | None = None) -> np.ndarray:
    """The order (position -> row) in which to write ``docs``: ``none`` keeps it, ``bp`` bisects."""
    if method == "none":
        return np.arange(len(docs))
    if method == "bp":
        return bp_order(docs, params)
    raise ValueError(f"unknown reorder method {method!r}; one of {', '.join(REORDER_METHODS)}")
