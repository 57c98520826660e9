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


def test_calibration_matches_the_outrank_rate_of_real_items():
    from lexret.distractors import calibrate, outrank_rate
    from lexret.types import SparseBatch

    rng = np.random.default_rng(0)
    sparse = zipf_batch(700, 30522, 40, seed=9)
    dense = rng.standard_normal((700, 32)).astype(np.float32) + 1.5  # a shared direction, like real embeddings
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    own = (sparse.slice(0, 100), dense[:100])
    # queries: noisy, pruned views of their own items
    q_sparse = SparseBatch.from_scipy(own[0].to_scipy() * 0.6 + sparse.slice(100, 200).to_scipy()).top_k(12)
    q_dense = own[1] + 0.6 * rng.standard_normal(own[1].shape).astype(np.float32)
    others = (sparse.slice(100, 700), dense[100:])
    cal = calibrate(others, others, (q_sparse, q_dense), own, n=2000, seed=1)
    assert cal.sparse_real == outrank_rate(q_sparse, own[0], others[0]) and cal.queries == 100
    assert cal.sparse_real > 0.01 and cal.dense_real > 0.01
    for real, syn, knob in ((cal.sparse_real, cal.sparse_synthetic, cal.params.term_swap),
                            (cal.dense_real, cal.dense_synthetic, cal.params.dense_noise)):  # fmt: skip
        assert syn <= real + 1e-9  # never harder than real items
        if knob > 0:  # the knob was needed: the match is close
            assert syn >= 0.85 * real
    assert cal.to_dict()["params"]["term_swap"] == cal.params.term_swap


def test_outrank_rate_by_hand():
    from lexret.distractors import outrank_rate
    from lexret.types import SparseBatch

    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    own = np.array([[0.5, 0.0], [0.0, 0.9]])
    docs = np.array([[0.6, 0.0], [0.4, 1.0], [0.0, 0.0]])
    # query 0 own score 0.5: beaten by docs 0 (0.6); query 1 own 0.9: beaten by doc 1 (1.0)
    assert outrank_rate(q, own, docs) == 2 / 6
    sq, so, sd = (SparseBatch.from_dense(x.astype(np.float32)) for x in (q, own, docs))
    assert outrank_rate(sq, so, sd) == 2 / 6
