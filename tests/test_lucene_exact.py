"""Exactness: Lucene impact search returns the same ranked lists and scores as brute force.

The reference is an exact dot product over the same quantized vectors, ranked by score descending
with ties broken by docid string ascending. Documents are indexed with two threads (two collection
shards), so Lucene's internal document order differs from both the input order and the docid
string order: equal rankings at tied scores show that ties are broken by docid, not by chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.index_meta import read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import DEFAULT_SCALE, Quantizer
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

pytestmark = pytest.mark.slow

N_DOCS = 20_000
N_QUERIES = 250


def naive_search(
    qids: list[str], queries: SparseBatch, ids: list[str], docs: SparseBatch, k: int
) -> dict[str, list[tuple[str, float]]]:
    """Plain-Python reference: dot products over term dicts, sorted by (-score, docid)."""
    postings: dict[int, list[tuple[int, float]]] = {}
    for d in range(len(docs)):
        for t, w in zip(*(x.tolist() for x in docs.row(d))):
            postings.setdefault(t, []).append((d, w))
    out = {}
    for i, qid in enumerate(qids):
        scores: dict[int, float] = {}
        for t, qw in zip(*(x.tolist() for x in queries.row(i))):
            for d, dw in postings.get(t, ()):
                scores[d] = scores.get(d, 0) + qw * dw
        ranked = sorted(((-s, ids[d]) for d, s in scores.items() if s > 0))[:k]
        out[qid] = [(docid, float(-neg)) for neg, docid in ranked]
    return out


def boundary_ties(run: dict[str, list[tuple[str, float]]], k: int) -> int:
    """Queries whose result list (cut at k + 1) has a tie across position k."""
    return sum(1 for hits in run.values() if len(hits) > k and hits[k - 1][1] == hits[k][1])


def assert_same_runs(got, want) -> None:
    assert got.keys() == want.keys()
    diff = [q for q in want if got[q] != want[q]]
    assert not diff, f"{len(diff)} queries differ, e.g. {diff[0]}: {got[diff[0]][:5]} vs {want[diff[0]][:5]}"


# ----- the reference itself -----------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 37, 1000])
def test_scipy_backend_matches_naive_reference_with_many_ties(k: int) -> None:
    rng = np.random.default_rng(3)
    n, dim = 300, 12
    rows = [(rng.choice(dim, rng.integers(0, 4), replace=False), rng.integers(1, 3, 4)) for _ in range(n)]
    docs = SparseBatch.from_rows([(i, v[: i.size]) for i, v in rows], dim, dtype=np.int32)
    ids = [f"{rng.choice(['a', 'B', 'c-'])}{j}" for j in rng.permutation(n)]
    qrows = [(rng.choice(dim, 2, replace=False), rng.integers(1, 3, 2)) for _ in range(30)]
    queries = SparseBatch.from_rows(qrows, dim)
    qids = [f"q{i}" for i in range(30)]
    want = naive_search(qids, queries, ids, docs, k)
    got = ScipySparseBackend(ids, docs).search(qids, queries, k, chunk_size=7)
    assert_same_runs(got, want)
    if k < 100:
        assert boundary_ties(naive_search(qids, queries, ids, docs, k + 1), k) > 10


# ----- 20,000 documents at the default scale ------------------------------------------------


@pytest.fixture(scope="module")
def zipf_index(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary):
    docs = zipf_batch(N_DOCS, len(vocab), 100, seed=2024)
    ids = synthetic_ids(N_DOCS, "d")  # string order (d10 < d2) differs from input order
    out = tmp_path_factory.mktemp("exact") / "zipf"
    meta = Indexer(vocab, IndexConfig(threads=2)).build([(ids, docs)], out, IndexInfo(model_id="zipf"))
    return out, ids, docs, meta


@pytest.fixture(scope="module")
def zipf_queries(vocab: Vocabulary) -> tuple[list[str], SparseBatch]:
    return synthetic_ids(N_QUERIES, "q"), zipf_batch(N_QUERIES, len(vocab), 20, seed=77)


@pytest.fixture(scope="module")
def zipf_reference(zipf_index, zipf_queries):
    _, ids, docs, _ = zipf_index
    qids, queries = zipf_queries
    quant = Quantizer(DEFAULT_SCALE)
    ref = ScipySparseBackend(ids, quant(docs))
    return {k: ref.search(qids, quant(queries), k) for k in (10, 11, 100, 101)}


def test_zipf_collection_is_large(zipf_index) -> None:
    _, _, docs, meta = zipf_index
    assert meta["num_docs"] == N_DOCS
    assert meta["quantization"]["scale"] == DEFAULT_SCALE
    assert 70 <= docs.terms_per_row().mean() <= 100
    assert meta["empty_docs"] == []


@pytest.mark.parametrize("k", [10, 100])
def test_lucene_equals_brute_force(zipf_index, zipf_queries, zipf_reference, vocab: Vocabulary, k: int) -> None:
    path, _, _, _ = zipf_index
    qids, queries = zipf_queries
    with Searcher(path, vocab, backend="lucene") as s:
        got = s.search(qids, queries, k, progress=False)
    want = zipf_reference[k]
    assert len(want) == N_QUERIES and all(len(h) == k for h in want.values())
    assert_same_runs(got, want)
    # the comparison covers ties: within the lists and across the cut-off
    assert sum(len({s for _, s in h}) < len(h) for h in want.values()) > N_QUERIES // 4
    assert boundary_ties(zipf_reference[k + 1], k) > 0


def test_lucene_multithreaded_batch_equals_brute_force(zipf_index, zipf_queries, zipf_reference, vocab) -> None:
    path, _, _, _ = zipf_index
    qids, queries = zipf_queries
    with Searcher(path, vocab, backend="lucene") as s:
        got = s.search(qids, queries, 10, threads=2, chunk_size=64, progress=False)
    assert_same_runs(got, zipf_reference[10])


def test_searcher_scipy_backend_uses_the_indexed_vectors(zipf_index, zipf_queries, zipf_reference, vocab) -> None:
    path, _, _, _ = zipf_index
    qids, queries = zipf_queries
    s = Searcher(path, vocab, backend="scipy")
    got = s.search(qids[:60], queries.slice(0, 60), 100, progress=False)
    assert_same_runs(got, {q: zipf_reference[100][q] for q in qids[:60]})


# ----- frequent ties: scale 1, a few small integer weights over few terms ----------------------


@pytest.fixture(scope="module")
def tie_index(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary):
    rng = np.random.default_rng(99)
    n = 3000
    terms = np.array(vocab.ids(["dog", "##s", "[unused5]", "cat", "run", "red", "the", "a", "ball", "grass"]))
    rows = []
    for _ in range(n):
        t = rng.choice(terms, rng.integers(1, 4), replace=False)
        rows.append((t, rng.integers(1, 4, t.size).astype(float)))
    # docids of mixed case and length in random order: string order is neither input nor numeric order
    ids = [f"{rng.choice(['A', 'b', 'Z', 'x-'])}{j}" for j in rng.permutation(n)]
    # two documents with no positive weight, in the middle of the collection
    rows.insert(1234, (np.array([terms[0], terms[3]]), np.array([-1.0, -0.5])))
    ids.insert(1234, "empty-negative")
    rows.insert(2000, (np.array([], dtype=np.int64), np.array([])))
    ids.insert(2000, "empty-no-terms")
    docs = SparseBatch.from_rows(rows, len(vocab))
    out = tmp_path_factory.mktemp("ties") / "ties"
    config = IndexConfig(scale=1.0, threads=2)
    chunks = [(ids[:1500], docs.slice(0, 1500)), (ids[1500:], docs.slice(1500, len(ids)))]
    meta = Indexer(vocab, config).build(chunks, out)
    qrows = [(rng.choice(terms, rng.integers(1, 4), replace=False), rng.integers(1, 3, 3)) for _ in range(200)]
    queries = SparseBatch.from_rows([(t, w[: t.size]) for t, w in qrows], len(vocab), dtype=np.int32)
    return out, ids, docs, meta, synthetic_ids(200, "tq"), queries


@pytest.mark.parametrize("k", [10, 100])
def test_lucene_breaks_ties_like_brute_force(tie_index, vocab: Vocabulary, k: int) -> None:
    path, ids, docs, _, qids, queries = tie_index
    qdocs = Quantizer(1.0)(docs)
    want = naive_search(qids, queries, ids, qdocs, k)
    with Searcher(path, vocab, backend="lucene") as s:
        got = s.search(qids, queries, k, progress=False)
    assert_same_runs(got, want)
    assert_same_runs(ScipySparseBackend(ids, qdocs).search(qids, queries, k), want)
    # ties are the rule here, at the cut-off too
    assert boundary_ties(naive_search(qids, queries, ids, qdocs, k + 1), k) > 150


def test_empty_documents_are_reported_not_lost(tie_index, vocab: Vocabulary) -> None:
    path, ids, _, meta, qids, queries = tie_index
    assert meta["num_docs"] == len(ids) == 3002
    assert meta["empty_docs"] == ["empty-negative", "empty-no-terms"]
    assert read_meta(path)["empty_docs"] == ["empty-negative", "empty-no-terms"]
    assert (Path(path) / "docids.txt").read_text().split() == ids
    with Searcher(path, vocab, backend="lucene") as s:
        assert s._lucene.num_docs in (3000, 3002)
        found = {d for hits in s.search(qids, queries, 100, progress=False).values() for d, _ in hits}
    assert not found & {"empty-negative", "empty-no-terms"}
