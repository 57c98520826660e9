"""Synthetic distractors that follow real encoded vectors.

Beyond the real distractor images available, a large-corpus comparison needs more items. Each
synthetic item mixes two random real items (``lam * a + (1 - lam) * b``) and perturbs the weights
multiplicatively, then keeps as many terms as item ``a`` had and rescales to ``a``'s norm: the
distributions of terms per item, term frequencies and vector norms follow the real ones, while no
synthetic item duplicates a real one. Dense vectors get the same mixing (same pair, same ``lam``)
plus Gaussian noise, L2-normalised.

Mixing and re-normalising makes an item *harder* than its parents (the norm of a mix is below
one, so its cosine with a query grows), by an amount that differs between the sparse and the dense
space; Gaussian noise makes a dense item *easier*. Synthetic items are only fair to both systems if
they are exactly as hard as real ones, so :func:`calibrate` sets one knob per space — the share of
sparse terms swapped for terms drawn by document frequency, and the dense noise — until the rate at
which synthetic items outrank a query's own image equals the rate of real distractor images,
measured with held-out real captions.

Generation is deterministic per ``(seed, chunk)``, so chunks can be produced, cached and streamed
independently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from lexret.types import SparseBatch

CALIBRATION_CHUNK = 2**31 - 1  # the chunk number of calibration samples, never one of the corpus's


@dataclass(frozen=True)
class MixParams:
    """How synthetic items are made from real ones."""

    lam_low: float = 0.3  # mixing weight of the first item, drawn from U(lam_low, 1 - lam_low)
    weight_noise: float = 0.15  # sigma of the log-normal factor on each sparse weight
    term_swap: float = 0.0  # share of each sparse item's terms replaced by terms drawn by document frequency
    dense_noise: float = 0.0  # sigma of the Gaussian noise per dense dimension (before normalising)


def synthesize_chunk(
    real_sparse: SparseBatch,
    real_dense: np.ndarray | None,
    n: int,
    *,
    seed: int,
    chunk: int,
    params: MixParams | None = None,
) -> tuple[SparseBatch, np.ndarray | None]:
    """``n`` synthetic items (sparse, and dense when ``real_dense`` is given) for chunk ``chunk``."""
    p = params or MixParams()
    rng = np.random.default_rng([seed, chunk])
    m = len(real_sparse)
    if m < 2:
        raise ValueError("need at least two real items to synthesize distractors")
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m  # never the same item twice
    lam = rng.uniform(p.lam_low, 1.0 - p.lam_low, n)
    counts = real_sparse.terms_per_row()
    vals64 = real_sparse.values.astype(np.float64)
    df_cum = np.cumsum(np.bincount(real_sparse.indices, minlength=real_sparse.dim), dtype=np.float64)
    rows = []
    for i in range(n):
        ia, va = real_sparse.row(a[i])
        ib, vb = real_sparse.row(b[i])
        idx = np.concatenate([ia, ib])
        val = np.concatenate([lam[i] * va, (1.0 - lam[i]) * vb]).astype(np.float64)
        uniq, inv = np.unique(idx, return_inverse=True)
        w = np.zeros(uniq.size)
        np.add.at(w, inv, val)
        w *= rng.lognormal(0.0, p.weight_noise, w.size)
        keep = min(int(counts[a[i]]), w.size)
        top = np.argsort(-w, kind="stable")[:keep]
        w_top, t_top = w[top], uniq[top]
        n_swap = int(rng.binomial(keep, p.term_swap)) if p.term_swap > 0 else 0
        if n_swap:
            drawn = np.searchsorted(df_cum, rng.uniform(0, df_cum[-1], 4 * n_swap + 8), side="right")
            drawn = np.unique(drawn[~np.isin(drawn, t_top)])
            drawn = rng.permutation(drawn)[:n_swap]
            pos = rng.choice(keep, drawn.size, replace=False)
            t_top = t_top.copy()
            t_top[pos] = drawn
            order = np.argsort(t_top, kind="stable")
            t_top, w_top = t_top[order], w_top[order]
        sa = vals64[real_sparse.indptr[a[i]] : real_sparse.indptr[a[i] + 1]]
        norm_a, norm_w = np.linalg.norm(sa), np.linalg.norm(w_top)
        if norm_w > 0:
            w_top *= norm_a / norm_w
        rows.append((t_top, w_top.astype(np.float32)))
    sparse = SparseBatch.from_rows(rows, real_sparse.dim)
    dense = None
    if real_dense is not None:
        d = lam[:, None] * real_dense[a] + (1.0 - lam[:, None]) * real_dense[b]
        d = d + rng.normal(0.0, p.dense_noise, d.shape)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        dense = d.astype(np.float32)
    return sparse, dense


def outrank_rate(queries: Any, own: Any, docs: Any) -> float:
    """Share of (query, doc) pairs in which ``doc`` scores above the query's own item.

    ``queries[i]`` belongs with ``own[i]``; all three are SparseBatch or row-aligned float arrays."""
    if isinstance(queries, SparseBatch):
        q, o, d = queries.to_scipy(), own.to_scipy(), docs.to_scipy()
        s_own = np.asarray(q.multiply(o).sum(axis=1)).ravel()
        scores = (q @ d.T).toarray()
    else:
        s_own = np.einsum("ij,ij->i", queries, own)
        scores = queries @ docs.T
    return float(np.mean(scores > s_own[:, None]))


@dataclass(frozen=True)
class Calibration:
    """Outrank rates of real and synthetic distractors in each space, and the knobs that match them."""

    params: MixParams
    sparse_real: float
    sparse_synthetic: float
    dense_real: float
    dense_synthetic: float
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return {"params": asdict(self.params), **{k: v for k, v in asdict(self).items() if k != "params"}}


def _bisect(rate: Callable[[float], float], target: float, hi: float, steps: int) -> tuple[float, float]:
    """Smallest knob in [0, hi] whose (decreasing) rate is <= target: (knob, rate)."""
    r0 = rate(0.0)
    if r0 <= target:  # already no harder than real items: nothing can make them harder here
        return 0.0, r0
    lo, best = 0.0, (hi, rate(hi))
    for _ in range(steps):
        mid = (lo + best[0]) / 2
        r = rate(mid)
        if r <= target:
            best = (mid, r)
        else:
            lo = mid
    return best


def calibrate(
    sources: tuple[SparseBatch, np.ndarray],
    others: tuple[SparseBatch, np.ndarray],
    queries: tuple[SparseBatch, np.ndarray],
    own: tuple[SparseBatch, np.ndarray],
    *,
    base: MixParams | None = None,
    n: int = 4000,
    seed: int = 0,
    steps: int = 10,
) -> Calibration:
    """Choose ``term_swap`` and ``dense_noise`` so that synthetic items made from ``sources``
    outrank the queries' own images as often as the real ``others`` do, in each space.

    ``queries``/``own`` are captions and their images, held out from ``sources`` and ``others``."""
    base = base or MixParams()
    real_s = outrank_rate(queries[0], own[0], others[0])
    real_d = outrank_rate(queries[1], own[1], others[1])

    def sparse_rate(x: float) -> float:
        params = replace(base, term_swap=x)
        syn, _ = synthesize_chunk(sources[0], None, n, seed=seed, chunk=CALIBRATION_CHUNK, params=params)
        return outrank_rate(queries[0], own[0], syn)

    def dense_rate(x: float) -> float:
        params = replace(base, dense_noise=x)
        _, syn = synthesize_chunk(sources[0], sources[1], n, seed=seed, chunk=CALIBRATION_CHUNK, params=params)
        return outrank_rate(queries[1], own[1], syn)

    swap, syn_s = _bisect(sparse_rate, real_s, 1.0, steps)
    noise, syn_d = _bisect(dense_rate, real_d, 0.5, steps)
    params = replace(base, term_swap=round(swap, 5), dense_noise=round(noise, 5))
    return Calibration(params, real_s, syn_s, real_d, syn_d, len(queries[1]))
