"""Impact-ordered search within a postings budget (lexret.backends.impact, ImpactOrderedBackend).

With a budget that holds every posting of a query it ranks exactly like the brute force (ids, scores,
tie order); with a smaller one it reads at most the budget, exactly the heaviest contributions
(weight x impact) a threshold can select, returns exact scores of the documents it keeps, and finds
most of the exact top 10; through the Searcher and ``lexret search --backend impact``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexret.backends.exact import ExactBackend, ImpactOrderedBackend, _thresholds
from lexret.backends.impact import ImpactParams
from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.errors import LexretError
from lexret.searcher import Searcher
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary
from tests.test_exact import assert_same_runs, collection, generated, naive_search, reference  # noqa: F401  (fixtures)

UNBOUNDED = ImpactParams(max_postings=10**9)


def skewed(vocab: Vocabulary, n_docs: int, n_queries: int, seed: int):
    """Documents with Zipf-like term frequencies and impacts in 1..255; queries of 3-8 terms drawn from
    the frequent ones (long lists, the case a budget is for), weights 1..60."""
    rng = np.random.default_rng(seed)
    terms = rng.choice(len(vocab), 400, replace=False)
    p = 1.0 / np.arange(1, terms.size + 1)
    p /= p.sum()
    rows = []
    for _ in range(n_docs):
        t = rng.choice(terms, rng.integers(5, 30), replace=False, p=p)
        rows.append((t, rng.integers(1, 256, t.size)))
    docs = SparseBatch.from_rows(rows, len(vocab), dtype=np.int32)
    q = [(t := rng.choice(terms[:60], rng.integers(3, 9), replace=False), rng.integers(1, 61, t.size))
         for _ in range(n_queries)]  # fmt: skip
    queries = SparseBatch.from_rows(q, len(vocab), dtype=np.int32)
    return [f"d{i:05d}" for i in range(n_docs)], docs, [f"q{i}" for i in range(n_queries)], queries


@pytest.fixture(scope="module")
def skewed_collection(vocab: Vocabulary):
    return skewed(vocab, 5000, 60, seed=3)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [10, 1000])
def test_a_budget_holding_every_posting_is_exact(collection, reference, k: int, threads: int) -> None:  # noqa: F811
    ids, docs, qids, queries = collection
    engine = ImpactOrderedBackend(ids, docs, UNBOUNDED)
    assert_same_runs(engine.search(qids, queries, k, threads=threads), reference[k])
    df = np.bincount(docs.indices, minlength=docs.dim)
    assert engine.last_stats.postings == int(df[queries.indices].sum())
    engine.close()


def test_equals_plain_python_reference_with_few_candidates(vocab: Vocabulary) -> None:
    """expansion 1: the k best partial scores are the k best scores when every posting is read."""
    ids, docs, qids, queries = generated(vocab, 600, 40, seed=9, max_weight=2)
    engine = ImpactOrderedBackend(ids, docs, ImpactParams(max_postings=10**9, expansion=1.0), threads=2)
    for k in (1, 10, 1000):
        assert_same_runs(engine.search(qids, queries, k), naive_search(qids, queries, ids, docs, k))
    engine.close()


def test_a_small_budget_reads_at_most_the_budget_and_scores_exactly(skewed_collection) -> None:
    ids, docs, qids, queries = skewed_collection
    exact = ExactBackend(ids, docs)
    want = exact.search(qids, queries, 10)
    all_postings = exact.last_stats.postings_per_query
    budget = int(all_postings / 5)
    engine = ImpactOrderedBackend(ids, docs, ImpactParams(max_postings=budget, expansion=10.0))
    got = engine.search(qids, queries, 10, threads=2)
    assert engine.last_stats.postings_per_query <= budget
    assert engine.last_stats.postings_per_query > 0.5 * budget  # ties of one threshold waste little
    brute = ScipySparseBackend(ids, docs)
    for i, qid in enumerate(qids):  # every returned score is the document's exact score, best first
        hits = got[qid]
        assert len(hits) == 10
        assert hits == sorted(hits, key=lambda h: (-h[1], h[0]))
        row = dict(brute.search([qid], queries.slice(i, i + 1), len(ids))[qid])
        assert all(row[d] == s for d, s in hits)
    overlap = np.mean([len({d for d, _ in got[q]} & {d for d, _ in want[q]}) / 10 for q in qids])
    assert 0.8 <= overlap < 1.0  # approximate, and good: a fifth of the postings finds most of the top 10
    # the exact top 10 tends to sit at the heads of the lists: reading as many postings in document
    # order (the first fifth of each list) finds far fewer of them
    assert overlap > 1.5 * _doc_order_overlap(docs, queries, qids, want, ids, 0.2)
    engine.close()
    exact.close()


def _doc_order_overlap(docs: SparseBatch, queries: SparseBatch, qids, want, ids, share: float) -> float:
    """Overlap with the exact top 10 when only the first ``share`` of the documents is read."""
    first = SparseBatch.from_rows(
        [docs.row(d) if d < share * len(docs) else (np.array([], np.int64), np.array([], np.int32))
         for d in range(len(docs))], docs.dim, dtype=np.int32,
    )  # fmt: skip
    got = ScipySparseBackend(ids, first).search(qids, queries, 10)
    return float(np.mean([len({d for d, _ in got[q]} & {d for d, _ in want[q]}) / 10 for q in qids]))


def test_thresholds_take_the_heaviest_contributions(vocab: Vocabulary) -> None:
    """The postings read are those at or above the smallest threshold that fits the budget, counted over
    every block piece of a list."""
    rng = np.random.default_rng(4)
    sizes = ((200, 100), (70, 50), (40, 0), (0, 0))  # two block pieces per term
    pieces = [[np.sort(rng.integers(1, 50, n))[::-1] for n in two] for two in sizes]
    flat = [x for term in pieces for x in term]
    starts = np.concatenate([[0], np.cumsum([x.size for x in flat])]).astype(np.int64)
    seg = np.array([[starts[2 * t], starts[2 * t + 1], starts[2 * t + 2]] for t in range(4)], dtype=np.int64)
    imps = np.concatenate(flat).astype(np.uint8)
    term_max = np.array([max((x.max() for x in term if x.size), default=0) for term in pieces], dtype=np.int64)
    terms = np.arange(4, dtype=np.int32)
    weights = np.array([3, 7, 20, 5], dtype=np.int64)
    lists = [np.concatenate(term) for term in pieces]
    contrib = np.concatenate([w * x for w, x in zip(weights, lists)])
    for budget in (1, 17, 100, 250, 459, 460, 10_000):
        least = np.zeros(4, dtype=np.int64)
        total = _thresholds(terms, weights, seg, term_max, imps, budget, least)
        tau = min(t for t in range(1, contrib.max() + 2) if (contrib >= t).sum() <= budget)
        counts = [int((x >= m).sum()) for x, m in zip(lists, least)]
        assert counts == [int((w * x >= tau).sum()) for w, x in zip(weights, lists)]
        assert total == sum(counts) <= budget
    least = np.zeros(4, dtype=np.int64)
    assert _thresholds(terms, np.array([0, 7, 0, 5]), seg, term_max, imps, 50, least) <= 50
    assert (imps[:300] >= least[0]).sum() == 0 and least[2] > 255  # a term of weight 0 is not read


def test_params_refuse_bad_values() -> None:
    with pytest.raises(LexretError, match="max postings"):
        ImpactParams(max_postings=0)
    with pytest.raises(LexretError, match="expansion"):
        ImpactParams(expansion=0.5)
    assert ImpactParams(expansion=2.5).candidates(10) == 25


def test_searcher_and_cli_impact_equal_exact_with_room(
    small_index, small_queries, vocab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lexret.cli import main
    from lexret.vectors import write_vectors

    qids, queries = small_queries
    with Searcher(small_index.path, vocab, backend="exact") as s:
        want = s.search(qids, queries, 10, progress=False)
    with Searcher(small_index.path, vocab, backend="impact", impact=UNBOUNDED) as s:
        assert_same_runs(s.search(qids, queries, 10, progress=False), want)
    qfile = tmp_path / "q.npz"
    write_vectors(qfile, qids, queries, vocab, {"model_id": small_index.info.model_id})
    base = ["-q", "search", "--index", str(small_index.path), "--queries", str(qfile)]
    runs = {}
    for backend, extra in (("exact", []), ("impact", ["--impact-postings", "1000000000", "--impact-expansion", "3"])):
        out = tmp_path / f"{backend}.run"
        assert main([*base, "--out", str(out), "--backend", backend, *extra]) == 0
        runs[backend] = out.read_text()
    assert runs["impact"] == runs["exact"]
    assert main([*base, "--out", str(tmp_path / "x.run"), "--backend", "exact", "--impact-postings", "10"]) != 0
    assert "apply to --backend impact only" in caplog.text
