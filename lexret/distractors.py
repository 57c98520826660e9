"""Synthetic distractors that follow real encoded vectors.

Beyond the real distractor images available, a large-corpus comparison needs more items. Each
synthetic item mixes two random real items (``lam * a + (1 - lam) * b``) and perturbs the weights
multiplicatively, then keeps as many terms as item ``a`` had and rescales to ``a``'s norm: the
distributions of terms per item, term frequencies and vector norms follow the real ones, while no
synthetic item duplicates a real one. Dense vectors get the same mixing (same pair, same ``lam``)
plus Gaussian noise, L2-normalised.

Generation is deterministic per ``(seed, chunk)``, so chunks can be produced, cached and streamed
independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lexret.types import SparseBatch


@dataclass(frozen=True)
class MixParams:
    """How synthetic items are made from real ones."""

    lam_low: float = 0.3  # mixing weight of the first item, drawn from U(lam_low, 1 - lam_low)
    weight_noise: float = 0.15  # sigma of the log-normal factor on each sparse weight
    dense_noise: float = 0.05  # sigma of the Gaussian noise per dense dimension (before normalising)


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
        w_top = w[top]
        sa = vals64[real_sparse.indptr[a[i]] : real_sparse.indptr[a[i] + 1]]
        norm_a, norm_w = np.linalg.norm(sa), np.linalg.norm(w_top)
        if norm_w > 0:
            w_top *= norm_a / norm_w
        rows.append((uniq[top], w_top.astype(np.float32)))
    sparse = SparseBatch.from_rows(rows, real_sparse.dim)
    dense = None
    if real_dense is not None:
        d = lam[:, None] * real_dense[a] + (1.0 - lam[:, None]) * real_dense[b]
        d = d + rng.normal(0.0, p.dense_noise, d.shape)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        dense = d.astype(np.float32)
    return sparse, dense
