"""Document reordering: a permutation that clusters documents sharing terms, and an index built in
that order that still ranks exactly like brute force."""

from __future__ import annotations

import numpy as np
import pytest

from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.errors import LexretError
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import Quantizer
from lexret.reorder import BPParams, bp_order, log_gap_bits, reorder
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary


def clustered(n: int, dim: int = 5000, clusters: int = 20, seed: int = 0) -> tuple[SparseBatch, np.ndarray]:
    """Documents drawn from topic clusters, in random order; returns them and their cluster."""
    rng = np.random.default_rng(seed)
    topics = [rng.choice(dim, 60, replace=False) for _ in range(clusters)]
    common = rng.choice(dim, 100, replace=False)
    label = rng.integers(0, clusters, n)
    rows = []
    for c in label:
        t = np.unique(np.concatenate([rng.choice(topics[c], 25, replace=False), rng.choice(common, 10, replace=False)]))
        rows.append((t, rng.uniform(0.1, 2.0, t.size)))
    return SparseBatch.from_rows(rows, dim), label


def naive_log_gap_bits(docs: SparseBatch, order: np.ndarray) -> float:
    pos = {int(d): p for p, d in enumerate(order)}
    lists: dict[int, list[int]] = {}
    for d in range(len(docs)):
        for t in docs.row(d)[0].tolist():
            lists.setdefault(t, []).append(pos[d])
    bits = 0.0
    for ps in lists.values():
        prev = -1
        for p in sorted(ps):
            bits += np.log2(p - prev) + 1
            prev = p
    return bits


def test_log_gap_bits_matches_a_plain_count() -> None:
    docs, _ = clustered(200)
    order = np.random.default_rng(1).permutation(200)
    assert log_gap_bits(docs, order) == pytest.approx(naive_log_gap_bits(docs, order))
    assert log_gap_bits(docs) == pytest.approx(naive_log_gap_bits(docs, np.arange(200)))


def test_bp_is_a_permutation_that_clusters_documents() -> None:
    docs, label = clustered(3000)
    order = bp_order(docs)
    assert np.array_equal(np.sort(order), np.arange(3000))
    before, after = log_gap_bits(docs), log_gap_bits(docs, order)
    assert after < 0.8 * before
    # neighbours in the new order mostly share a topic; in the random input order 1 in 20 do
    same = np.mean(label[order][1:] == label[order][:-1])
    assert same > 0.5
    assert np.mean(label[1:] == label[:-1]) < 0.1


def test_bp_is_deterministic_and_handles_small_and_empty_input() -> None:
    docs, _ = clustered(500, seed=4)
    assert np.array_equal(bp_order(docs), bp_order(docs))
    assert np.array_equal(bp_order(docs.slice(0, 10)), np.arange(10))
    empty = SparseBatch.empty(50, 100)
    assert np.array_equal(bp_order(empty), np.arange(50))
    with_empty = SparseBatch.concat([docs.slice(0, 100), SparseBatch.empty(7, docs.dim), docs.slice(100, 200)])
    order = bp_order(with_empty, BPParams(iterations=3))
    assert np.array_equal(np.sort(order), np.arange(207))


def test_reorder_methods() -> None:
    docs, _ = clustered(100)
    assert np.array_equal(reorder(docs, "none"), np.arange(100))
    with pytest.raises(ValueError, match="unknown reorder method"):
        reorder(docs, "random")
    with pytest.raises(LexretError, match="unknown reorder method"):
        IndexConfig(reorder="random")


@pytest.mark.slow
def test_reordered_index_is_smaller_and_ranks_like_brute_force(tmp_path, vocab: Vocabulary) -> None:
    docs, _ = clustered(4000, dim=len(vocab), clusters=40, seed=7)
    ids = synthetic_ids(len(docs), "d")
    # small windows: the order is computed window by window, and chunks straddle windows
    chunks = [(ids[a : a + 700], docs.slice(a, a + 700)) for a in range(0, len(docs), 700)]
    metas = {}
    for method in ("none", "bp"):
        cfg = IndexConfig(threads=2, reorder=method, reorder_window=1500)
        metas[method] = Indexer(vocab, cfg).build(chunks, tmp_path / method, IndexInfo(model_id="m"))
    assert metas["bp"]["index_bytes"] < metas["none"]["index_bytes"]
    # docids.txt and the stored vectors keep the input order
    assert (tmp_path / "bp" / "docids.txt").read_text().split() == ids
    qids = synthetic_ids(150, "q")
    queries = zipf_batch(150, len(vocab), 15, seed=5)
    queries = SparseBatch.concat([queries, docs.slice(0, 150)])
    qids = qids + synthetic_ids(150, "doc-as-query")
    quant = Quantizer()
    want = ScipySparseBackend(ids, quant(docs)).search(qids, quant(queries), 20)
    for method in ("none", "bp"):
        with Searcher(tmp_path / method, vocab) as s:
            assert s.search(qids, queries, 20, progress=False) == want
        assert Searcher(tmp_path / method, vocab, backend="scipy").search(qids, queries, 20, progress=False) == want
