"""Synthetic distractors follow the real vectors they are mixed from."""

from __future__ import annotations

import numpy as np
import pytest

from lexret.distractors import synthesize_chunk
from lexret.synthetic import zipf_batch


@pytest.fixture(scope="module")
def real():
    sparse = zipf_batch(400, 30522, 48, seed=5)
    dense = np.random.default_rng(5).standard_normal((400, 64)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    return sparse, dense


def test_statistics_follow_the_real_items(real):
    sparse, dense = real
    syn, syn_dense = synthesize_chunk(sparse, dense, 2000, seed=1, chunk=0)
    assert len(syn) == 2000 and syn.dim == sparse.dim
    # terms per item and vector norms match the real distribution closely
    assert abs(syn.terms_per_row().mean() - sparse.terms_per_row().mean()) < 0.05 * sparse.terms_per_row().mean()
    real_norms = np.linalg.norm(sparse.to_dense(), axis=1)
    syn_norms = np.linalg.norm(syn.to_dense(), axis=1)
    assert abs(syn_norms.mean() - real_norms.mean()) < 0.05 * real_norms.mean()
    # synthetic terms come from the real vocabulary in use, weights stay positive
    assert set(np.unique(syn.indices)) <= set(np.unique(sparse.indices))
    assert (syn.values > 0).all()
    np.testing.assert_allclose(np.linalg.norm(syn_dense, axis=1), 1.0, rtol=1e-5)


def test_no_synthetic_item_copies_a_real_one(real):
    sparse, dense = real
    syn, _ = synthesize_chunk(sparse, dense, 300, seed=2, chunk=0)
    real_rows = {tuple(sparse.row(i)[0].tolist()) for i in range(len(sparse))}
    copies = sum(tuple(syn.row(i)[0].tolist()) in real_rows for i in range(len(syn)))
    assert copies < 0.05 * len(syn)


def test_chunks_are_deterministic_and_distinct(real):
    sparse, dense = real
    a, ad = synthesize_chunk(sparse, dense, 100, seed=3, chunk=7)
    b, bd = synthesize_chunk(sparse, dense, 100, seed=3, chunk=7)
    c, _ = synthesize_chunk(sparse, dense, 100, seed=3, chunk=8)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
    assert np.array_equal(ad, bd)
    assert not (a.indptr.shape == c.indptr.shape and np.array_equal(a.indices, c.indices))


def test_needs_two_real_items():
    with pytest.raises(ValueError):
        synthesize_chunk(zipf_batch(1, 100, 5, seed=0), None, 10, seed=0, chunk=0)
