"""The comparison machinery on a small synthetic corpus: streaming, building, measuring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lexret.backends.dense import HnswParams
from lexret.backends.impact import ImpactParams
from lexret.backends.lucene_two_phase import TwoPhaseParams
from lexret.compare import (
    CompareConfig,
    Corpus,
    Encoded,
    LazyPairScorer,
    build_systems,
    check_against_exact,
    format_records,
    plot,
    postings_per_query,
)
from lexret.measure import SYSTEMS, measure_in_subprocess
from lexret.synthetic import zipf_batch
from lexret.trec import read_run
from lexret.types import SparseBatch


def _encoded(n: int, prefix: str, seed: int, dim: int) -> Encoded:
    dense = np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32)
    return Encoded([f"{prefix}{i}" for i in range(n)], zipf_batch(n, dim, 20, seed=seed), dense)


@pytest.fixture(scope="module")
def corpus_setup(tmp_path_factory, vocab):
    split = _encoded(40, "img", 1, len(vocab))
    real = _encoded(30, "real", 2, len(vocab))
    cfg = CompareConfig(
        sizes=[100], index_threads=1, hnsw=HnswParams(m=8, ef_construction=40, ef_search=32), systems=SYSTEMS,
        shards=2,
    )  # fmt: skip
    cache = tmp_path_factory.mktemp("cache")
    corpus = Corpus(split, real, 100, cfg, cache)
    return split, real, cfg, cache, corpus


def test_corpus_streams_split_then_real_then_synthetic(corpus_setup):
    split, real, cfg, cache, corpus = corpus_setup
    chunks = list(corpus.chunks())
    ids = [i for c in chunks for i in c.ids]
    assert len(corpus) == len(ids) == 140
    assert ids[:40] == split.ids and ids[40:70] == real.ids
    assert all(i.startswith("synthetic-") for i in ids[70:])
    assert corpus.n_real == 30 and corpus.n_synthetic == 70
    assert len(set(ids)) == len(ids)
    # synthetic chunks are cached: a second pass reads the same vectors back
    again = [i for c in Corpus(split, real, 100, cfg, cache).chunks() for i in c.ids]
    assert again == ids
    assert any(p.name.startswith("synthetic-") for p in cache.iterdir())


def test_synthetic_chunks_are_cached_per_source_vectors(corpus_setup):
    """Two models' vectors of the same images (same ids) must not share cached synthetic chunks."""
    split, real, cfg, cache, corpus = corpus_setup
    r = real.sparse
    scaled = Encoded(real.ids, SparseBatch(r.indptr, r.indices, r.values * 3.0, r.dim), real.dense)
    other = Corpus(split, scaled, 100, cfg, cache)
    assert other.source_key != corpus.source_key
    first = next(c for c in other.chunks() if c.ids[0].startswith("synthetic-"))
    mine = next(c for c in corpus.chunks() if c.ids[0].startswith("synthetic-"))
    assert not np.allclose(first.sparse.values[:50], mine.sparse.values[:50])


def test_build_and_measure_every_system(corpus_setup, tmp_path, vocab):
    split, real, cfg, cache, corpus = corpus_setup
    built = build_systems(corpus, vocab, "test-model", cfg, tmp_path / "built")
    assert set(built) == set(SYSTEMS)
    queries = split.sparse.slice(0, 20).top_k(8)
    from lexret.vectors import write_vectors

    q_sparse = tmp_path / "q.npz"
    write_vectors(q_sparse, [f"q{i}" for i in range(20)], queries, vocab, {"model_id": "test-model"})
    q_dense = tmp_path / "qd.npz"
    np.savez(q_dense, ids=np.array([f"q{i}" for i in range(20)]), vectors=split.dense[:20])
    runs = {}
    ballast = np.ones(400 * 2**20 // 8)  # the parent grows by 400 MB: the child's peak must not include it
    for system in SYSTEMS:
        m, run_file = measure_in_subprocess(
            system, built[system]["artifact"], q_sparse if system.startswith("sparse") else q_dense, 10,
            tmp_path / "runs", latency_queries=10,
        )  # fmt: skip
        assert m.num_queries == 20 and 0 < m.peak_rss_bytes < ballast.nbytes
        assert 0 < m.latency_ms_p50 <= m.latency_ms_p95 and m.qps_1thread > 0 and m.qps_2threads > 0
        runs[system] = read_run(run_file)
        # the exact engine counts the postings it adds: every posting of the query's lists; two-phase
        # Lucene the postings of its phase-1 lists, fewer
        all_lists = postings_per_query(built["sparse-lucene"]["artifact"] / "docvectors.npz", queries)
        if system in ("sparse-exact", "sparse-impact"):  # the impact engine's default budget holds every list here
            assert m.postings_per_query == pytest.approx(all_lists) and all_lists > 0
        elif system == "sparse-lucene-2phase":
            assert 0 < m.postings_per_query < all_lists
        else:
            assert m.postings_per_query is None
    # a postings budget bounds what two-phase reads (the first term of a query is kept even past it)
    budget = TwoPhaseParams(prune_ratio=0.0, max_postings=int(all_lists / 3))
    m, _ = measure_in_subprocess(
        "sparse-lucene-2phase", built["sparse-lucene-2phase"]["artifact"], q_sparse, 10, tmp_path / "runs-budget",
        latency_queries=10, two_phase=budget,
    )  # fmt: skip
    assert 0 < m.postings_per_query <= all_lists / 3
    m, run_file = measure_in_subprocess(
        "sparse-impact", built["sparse-impact"]["artifact"], q_sparse, 10, tmp_path / "runs-impact",
        latency_queries=10, impact=ImpactParams(max_postings=int(all_lists / 3)),
    )  # fmt: skip
    assert 0 < m.postings_per_query <= all_lists / 3
    assert runs["sparse-impact"] == runs["sparse-exact"]  # with room for every posting it is exact
    runs["sparse-impact"] = read_run(run_file)
    # exactness: Lucene (one index or 2 shards) and the exact engine equal the scipy brute force on the same corpus
    assert runs["sparse-lucene"] == runs["sparse-scipy"] == runs["sparse-exact"] == runs["sparse-lucene-sharded"]
    assert (built["sparse-lucene-sharded"]["artifact"] / "shard-001").is_dir()
    records = {s: {} for s in SYSTEMS}
    queries_f = split.sparse.slice(0, 20).top_k(8)
    scorer = LazyPairScorer(built["sparse-lucene"]["artifact"] / "docvectors.npz", queries_f,
                            [f"q{i}" for i in range(20)])  # fmt: skip
    check_against_exact(records, runs, scorer, 140)
    exact_systems = ("sparse-lucene", "sparse-exact", "sparse-scipy", "sparse-lucene-sharded", "dense-faiss-flat")
    assert all(records[s]["overlap@10_vs_exact"] == 1.0 for s in exact_systems)
    approximate = ("sparse-seismic", "sparse-lucene-2phase", "sparse-impact")
    assert all(0.5 <= records[s]["overlap@10_vs_exact"] <= 1.0 for s in approximate)
    assert "queries_differing_from_exact" not in records["sparse-seismic"]
    assert records["sparse-lucene"]["queries_differing_from_exact"] == 0
    assert records["sparse-lucene"]["exact_reference"] == "sparse-exact"
    assert records["sparse-lucene-sharded"]["queries_differing_from_exact"] == 0
    assert 0.5 <= records["dense-faiss-hnsw"]["overlap@10_vs_exact"] <= 1.0
    # each query vector is (a pruned copy of) an image in the corpus: it should find that image first
    assert sum(runs["sparse-lucene"][f"q{i}"][0][0] == f"img{i}" for i in range(20)) >= 18
    assert all(runs["dense-faiss-flat"][f"q{i}"][0][0] == f"img{i}" for i in range(20))


def test_format_and_plot(tmp_path):
    recs = []
    for size in (1000, 10000):
        for system, lat in (("sparse-lucene", 1.0), ("dense-faiss-flat", 4.0)):
            recs.append({
                "system": system, "corpus_size": size, "R@1": 10.0, "R@5": 20.0, "R@10": 30.0,
                "index_bytes": size * (10 if system.startswith("sparse") else 100), "build_s": 1.0,
                "peak_rss_bytes": 1e8, "latency_ms_mean": lat, "latency_ms_p50": lat, "latency_ms_p95": lat,
                "qps_1thread": 1000 / lat, "qps_2threads": 2000 / lat, "query_encode_ms": 3.0,
                "overlap@10_vs_exact": 1.0,
                **({"postings_per_query": size * 0.05} if system.startswith("sparse") else {}),
            })  # fmt: skip
    text = format_records(recs)
    assert "throughput (1 thread) 4.00x" in text and "index bytes 0.100x" in text
    plot(recs, tmp_path)
    for name in ("latency_vs_size.png", "index_size_vs_size.png", "recall_vs_latency.png", "qps_vs_size.png",
                 "postings_vs_size.png", "overlap_vs_qps.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 1000
    (tmp_path / "compare.json").write_text(json.dumps([{**r, "distractors_real": 5, "distractors_synthetic": 7}
                                                       for r in recs]))  # fmt: skip
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "compare_table.py"
    md = subprocess.run([sys.executable, str(tool), str(tmp_path / "compare.json")], capture_output=True, text=True,
                        check=True).stdout  # fmt: skip
    assert "| sparse-lucene | 10,000 | 10.00 | 20.00 | 30.00 | 0.1 |" in md
    assert "| 10,000 | 5 / 7 | sparse-lucene | 4.00x | 0.250x | - | 0.100 | - | 30.00 vs 30.00 | 1.000 |" in md


def test_run_differences_counts_queries_with_other_ids_order_or_scores():
    from lexret.compare import run_differences

    a = {"q1": [("d1", 3.0), ("d2", 2.0)], "q2": [("d3", 1.0)], "q3": []}
    assert run_differences(a, dict(a)) == 0
    b = {"q1": [("d2", 2.0), ("d1", 3.0)], "q2": [("d3", 1.5)], "q3": []}
    assert run_differences(a, b) == 2
    assert run_differences(a, {"q1": a["q1"], "q2": a["q2"]}) == 1  # a missing query counts


def test_postings_per_query(tmp_path):
    from lexret.compare import postings_per_query
    from lexret.types import SparseBatch

    docs = SparseBatch.from_dense(np.array([[1, 0, 2, 0], [0, 0, 3, 1], [5, 0, 1, 0]], dtype=np.float32))
    np.savez(tmp_path / "dv.npz", indptr=docs.indptr, indices=docs.indices, values=docs.values)
    q = SparseBatch.from_dense(np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    # df = [2, 0, 3, 1]: query 0 -> 2 + 3, queries 1 and 3 (empty) -> 0, query 2 -> 0 + 1
    assert postings_per_query(tmp_path / "dv.npz", q) == pytest.approx((5 + 0 + 1 + 0) / 4)
    assert postings_per_query(tmp_path / "missing.npz", q) is None


def test_exact_pair_scorer_recomputes_scores_from_the_stored_vectors(small_index, small_queries, vocab):
    from lexret.backends.scipy_sparse import ScipySparseBackend
    from lexret.compare import ExactPairScorer
    from lexret.quantize import Quantizer

    qids, queries = small_queries
    quant = Quantizer(small_index.meta["quantization"]["scale"])
    want = ScipySparseBackend(small_index.ids, quant(small_index.docs)).search(qids, quant(queries), 15)
    scorer = ExactPairScorer(small_index.path / "docvectors.npz", queries, qids)
    for qid, hits in want.items():
        zeroed = [(d, 0.0) for d, _ in hits[::-1]]
        assert scorer.rescore(qid, zeroed) == hits[::-1]
    some = {q: [(d, 0.0) for d, _ in h] for q, h in list(want.items())[:5]}
    assert scorer.exact_scores(some, 3) == {q: dict(h[:3]) for q, h in list(want.items())[:5]}


class _FakeEncoder:
    """What run_compare asks of an encoder once the encodings are cached: ids, vocabulary, query encoding."""

    def __init__(self, model_id: str, vocab) -> None:
        self.model_id, self.vocab, self.config = model_id, vocab, {}
        self.index_model_id = model_id  # the id its documents and indexes carry (SparseEncoder.index_model_id)

    def encode_texts(self, texts):
        return None


@pytest.mark.slow
@pytest.mark.parametrize("ray", [None, pytest.param("local", marks=pytest.mark.ray)])
def test_run_compare_with_shards_adds_an_exact_sharded_row(tmp_path, vocab, request, ray):
    from pathlib import Path

    from lexret.compare import _key, format_records, run_compare
    from lexret.data import Collection, Item

    n = 30
    items = [Item(Path(f"img{i}.jpg"), (f"caption {i}",), key=f"img{i}.jpg") for i in range(n)]
    coll = Collection(Path("captions.jsonl"), items)
    sparse, dense = _FakeEncoder("test-sparse", vocab), _FakeEncoder("test-dense", vocab)
    cache = tmp_path / "cache"
    cache.mkdir()
    # the encodings, cached under the keys compare computes: nothing is encoded
    split = _encoded(n, "img", 3, len(vocab))
    split.ids = [f"img{i}.jpg" for i in range(n)]
    split.save(cache / f"images-{_key('test-sparse', 'test-dense', [str(it.image) for it in items])}.npz")
    caps = Encoded([str(i) for i in range(n)], split.sparse.top_k(8), split.dense)
    caps.save(cache / f"texts-{_key('test-sparse', 'test-dense', coll.captions)}.npz")
    if ray:  # shards built as Ray tasks, searched by Ray actors from the measuring child (it joins this Ray)
        request.getfixturevalue("ray_local")
    cfg = CompareConfig(sizes=[40], index_threads=1, latency_queries=5, shards=2, ray=ray,
                        systems=("sparse-exact", "sparse-lucene", "sparse-lucene-sharded"))  # fmt: skip
    records = run_compare(coll, None, sparse, dense, cfg, tmp_path / "out", cache)
    by = {r["system"]: r for r in records}
    assert set(by) == {"sparse-exact", "sparse-lucene", "sparse-lucene-sharded"}
    sharded = by["sparse-lucene-sharded"]
    assert sharded["corpus_size"] == 70 and sharded["shards"] == 2 and sharded["ray"] == ray
    assert sharded["overlap@10_vs_exact"] == 1.0 and sharded["queries_differing_from_exact"] == 0
    assert sharded["R@10"] == by["sparse-lucene"]["R@10"] and sharded["index_bytes"] > 0
    assert "sparse-lucene-sharded" in format_records(records)
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert [r["system"] for r in saved] == ["sparse-exact", "sparse-lucene", "sparse-lucene-sharded"]
