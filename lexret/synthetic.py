"""Synthetic sparse collections for exactness tests and benchmarks.

Term ids follow a Zipf-like law over the whole vocabulary (so ``##`` wordpieces and ``[unused*]``
tokens occur too), weights follow the shape of ``log(1 + relu)`` model outputs.
"""

from __future__ import annotations

import numpy as np

from lexret.types import SparseBatch


def zipf_batch(
    n: int, dim: int, terms_per_row: int, *, seed: int = 0, exponent: float = 1.1, max_weight: float = 3.0
) -> SparseBatch:
    """``n`` rows of about ``terms_per_row`` distinct terms; float32 weights in (0, max_weight]."""
    rng = np.random.default_rng(seed)
    # a random permutation decides which term ids are frequent, so no id range is favoured
    perm = rng.permutation(dim)
    p = 1.0 / np.arange(1, dim + 1) ** exponent
    p /= p.sum()
    lengths = np.clip(rng.poisson(terms_per_row, n), 1, dim)
    rows = []
    for length in lengths:
        draw = perm[rng.choice(dim, size=int(length * 1.3) + 4, p=p)]
        ids = np.unique(draw)[: int(length)]
        rng.shuffle(ids)
        w = np.log1p(rng.gamma(1.5, 1.0, ids.size)).astype(np.float32)
        rows.append((ids, np.clip(w, 1e-3, max_weight)))
    return SparseBatch.from_rows(rows, dim)


def synthetic_ids(n: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]
