"""Two-phase Lucene search: which query terms phase 1 keeps, exact rescoring, and equality with exact
search when nothing is cut."""

from __future__ import annotations

import numpy as np
import pytest

from lexret.backends.lucene_two_phase import TwoPhaseParams
from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.cli import main
from lexret.errors import LexretError
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.trec import read_run
from lexret.types import SparseBatch
from lexret.vectors import write_vectors
from lexret.vocab import Vocabulary

TERMS = ["dog", "cat", "##ing", "[unused3]", "grass", "red", "##s", "ball", "[unused0]", "man"]


# ----- phase 1's terms (no Lucene) ---------------------------------------------------------------


def test_keep_heaviest_terms_by_ratio_then_count() -> None:
    idx = np.array([5, 9, 2, 7, 11, 3])
    val = np.array([10, 4, 10, 6, 0, 3])
    got = TwoPhaseParams(prune_ratio=0.5).keep(idx, val)
    assert got[0].tolist() == [2, 5, 7] and got[1].tolist() == [10, 10, 6]  # ties by term id; 4 < 0.5 x 10
    assert TwoPhaseParams(prune_ratio=0.0).keep(idx, val)[0].tolist() == [2, 5, 7, 9, 3]  # zero weights never
    assert TwoPhaseParams(prune_ratio=0.0, max_terms=2).keep(idx, val)[0].tolist() == [2, 5]
    assert TwoPhaseParams(prune_ratio=1.0).keep(idx, val)[0].tolist() == [2, 5]
    assert TwoPhaseParams().keep(np.array([], int), np.array([], int))[0].size == 0


def test_postings_budget_takes_the_most_selective_terms_that_fit() -> None:
    idx = np.array([1, 2, 3, 4])
    val = np.array([8, 8, 4, 2])
    df = np.zeros(10, np.int64)
    df[[1, 2, 3, 4]] = [900, 50, 10, 300]  # of 1000 documents
    # weight x idf: term 2 (8 x 3.0), term 3 (4 x 4.6), term 4 (2 x 1.2), term 1 (8 x 0.1)
    got = TwoPhaseParams(prune_ratio=0.0, max_postings=100).keep(idx, val, df, 1000)
    assert got[0].tolist() == [2, 3] and got[1].tolist() == [8, 4]  # heaviest first; 4 and 1 do not fit
    # a list too long is skipped, a later one that fits is still taken
    assert TwoPhaseParams(prune_ratio=0.0, max_postings=400).keep(idx, val, df, 1000)[0].tolist() == [2, 3, 4]
    assert TwoPhaseParams(prune_ratio=0.0, max_postings=5).keep(idx, val, df, 1000)[0].tolist() == [2]  # never empty
    assert TwoPhaseParams(prune_ratio=0.0, max_postings=10**6).keep(idx, val, df, 1000)[0].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="posting-list lengths"):
        TwoPhaseParams(max_postings=100).keep(idx, val)


@pytest.mark.parametrize(
    "kwargs", [{"prune_ratio": -0.1}, {"prune_ratio": 1.5}, {"expansion": 0.5}, {"max_terms": 0}, {"max_postings": 0}]
)
def test_params_refuse_values_out_of_range(kwargs) -> None:
    with pytest.raises(LexretError, match="must"):
        TwoPhaseParams(**kwargs)


def test_candidates_round_up() -> None:
    assert TwoPhaseParams(expansion=1.5).candidates(7) == 11 and TwoPhaseParams(expansion=1).candidates(10) == 10


# ----- against exact search ----------------------------------------------------------------------


def collection(vocab: Vocabulary, n: int = 1200, seed: int = 3) -> tuple[list[str], SparseBatch]:
    """Awkward ids, word pieces and unused tokens, small integer weights at scale 1: many ties."""
    rng = np.random.default_rng(seed)
    prefixes = ["Ä", "a", "B", "x/", "zz"]
    ids = [f"{prefixes[rng.integers(len(prefixes))]}-{j}" for j in rng.permutation(n)]
    terms = np.array(vocab.ids(TERMS))
    rows = []
    for _ in range(n):
        t = np.sort(rng.choice(terms, rng.integers(1, 6), replace=False))
        rows.append((t, rng.integers(1, 5, t.size).astype(float)))
    return ids, SparseBatch.from_rows(rows, len(vocab))


def queries(vocab: Vocabulary, n: int = 40, seed: int = 9) -> tuple[list[str], SparseBatch]:
    rng = np.random.default_rng(seed)
    terms = np.array(vocab.ids(TERMS))
    rows = []
    for _ in range(n):
        t = np.sort(rng.choice(terms, rng.integers(2, 8), replace=False))
        rows.append((t, rng.integers(1, 9, t.size).astype(float)))
    return [f"q{i}" for i in range(n)], SparseBatch.from_rows(rows, len(vocab))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary) -> dict:
    ids, docs = collection(vocab)
    root = tmp_path_factory.mktemp("two-phase")
    Indexer(vocab, IndexConfig(scale=1.0, threads=2)).build([(ids, docs)], root / "ix", IndexInfo("m"))
    qids, q = queries(vocab)
    return {"root": root, "ix": root / "ix", "ids": ids, "docs": docs, "qids": qids, "q": q,
            "exact": ScipySparseBackend(ids, Quantizer(1.0)(docs))}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("k", [10, 1000])
@pytest.mark.parametrize("expansion", [1.0, 5.0])
def test_without_a_cut_it_equals_exact_search(built: dict, vocab: Vocabulary, k: int, expansion: float) -> None:
    want = built["exact"].search(built["qids"], built["q"], k)
    params = TwoPhaseParams(prune_ratio=0.0, expansion=expansion)
    with Searcher(built["ix"], vocab, backend="lucene-2phase", two_phase=params) as s:
        got = s.search(built["qids"], built["q"], k, progress=False)
    assert got == want
    assert all(len({sc for _, sc in h}) < len(h) for h in want.values())  # ties at every k


@pytest.mark.slow
def test_with_a_cut_scores_are_exact_and_ranked_like_exact_search(built: dict, vocab: Vocabulary) -> None:
    k = 10
    exact_all = built["exact"].search(built["qids"], built["q"], len(built["ids"]))
    params = TwoPhaseParams(prune_ratio=0.6, expansion=2.0)
    with Searcher(built["ix"], vocab, backend="lucene-2phase", two_phase=params) as s:
        got = s.search(built["qids"], built["q"], k, progress=False)
    overlap = []
    for qid, hits in got.items():
        exact_score = dict(exact_all[qid])
        assert all(exact_score[d] == sc for d, sc in hits)  # phase 2 scores with the whole query
        assert hits == sorted(hits, key=lambda t: (-t[1], t[0]))
        kth = exact_all[qid][k - 1][1]
        overlap.append(sum(sc >= kth for _, sc in hits) / k)  # tie-aware overlap with the exact top-k
    # the cut loses some documents on this collection, and phase 1's candidates keep most
    assert 0.5 <= np.mean(overlap) < 1.0


@pytest.mark.slow
def test_postings_budget_searches_the_chosen_terms_and_rescores_exactly(built: dict, vocab: Vocabulary) -> None:
    k, budget = 10, 700
    docs_q = Quantizer(1.0)(built["docs"])
    df = np.bincount(docs_q.indices, minlength=docs_q.dim)
    params = TwoPhaseParams(prune_ratio=0.0, expansion=3.0, max_postings=budget)
    exact = built["exact"]
    with Searcher(built["ix"], vocab, backend="lucene-2phase", two_phase=params) as s:
        got = s.search(built["qids"], built["q"], k, progress=False)
        assert s._two_phase.df.tolist() == df.tolist()
    cut = 0
    for i, qid in enumerate(built["qids"]):
        idx, val = built["q"].row(i)
        kept = params.keep(idx, val.astype(np.int64), df, len(built["ids"]))[0]
        assert df[kept].sum() <= budget or kept.size == 1
        cut += kept.size < idx.size
        # the reference: candidates by the kept terms alone, ranked again by the whole query
        mask = np.isin(idx, kept)
        part = SparseBatch.from_rows([(idx[mask], val[mask])], built["q"].dim)
        cands = [d for d, _ in exact.search([qid], part, params.candidates(k))[qid]]
        whole = dict(exact.search([qid], built["q"].slice(i, i + 1), len(built["ids"]))[qid])
        want = sorted(((d, whole[d]) for d in cands if d in whole), key=lambda t: (-t[1], t[0]))[:k]
        assert got[qid] == want
    assert cut > 10  # the budget cut most queries on this collection


@pytest.mark.slow
def test_cli_lucene_2phase_without_cut_equals_scipy(built: dict, vocab: Vocabulary, tmp_path) -> None:
    qfile = tmp_path / "q.jsonl"
    write_vectors(qfile, built["qids"], built["q"], vocab)
    base = ["-q", "search", "--index", str(built["ix"]), "--queries", str(qfile), "--k", "10", "--threads", "1"]
    assert main([*base, "--out", str(tmp_path / "exact.run"), "--backend", "scipy"]) == 0
    two = [*base, "--out", str(tmp_path / "two.run"), "--backend", "lucene-2phase", "--prune-ratio", "0"]
    assert main([*two, "--expansion", "1"]) == 0
    assert read_run(tmp_path / "two.run") == read_run(tmp_path / "exact.run")
    assert main([*base, "--out", str(tmp_path / "x.run"), "--prune-ratio", "0.3"]) == 2  # lucene alone
    assert main([*two, "--expansion", "0.5"]) == 2
    assert main([*two, "--max-postings", "0"]) == 2
    assert main([*base, "--out", str(tmp_path / "x.run"), "--max-postings", "100"]) == 2  # lucene alone
    assert main([*two, "--max-postings", "100000000", "--expansion", "1"]) == 0  # a budget nothing exceeds: exact
    assert read_run(tmp_path / "two.run") == read_run(tmp_path / "exact.run")


@pytest.mark.slow
def test_refuses_a_folder_without_vectors(vocab: Vocabulary, tmp_path) -> None:
    ids, docs = collection(vocab, n=50)
    Indexer(vocab, IndexConfig(scale=1.0, threads=1, store_vectors=False)).build([(ids, docs)], tmp_path / "ix")
    with pytest.raises(LexretError, match="lucene-2phase backend needs; rebuild it with `lexret index`"):
        Searcher(tmp_path / "ix", vocab, backend="lucene-2phase")
