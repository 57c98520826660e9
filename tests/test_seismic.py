"""The approximate Seismic engine: overlap with brute force, folder refusals, the CLI round trip.

The collection mixes zipf-distributed terms with wordpiece suffixes (``##s``) and ``[unused*]``
tokens, so that Seismic's component ids cover every kind of vocabulary entry. Seismic keeps only
part of each posting list (``n_postings``) and skips blocks, so it is not exact: its overlap with
the exact top-10 is reported (printed with ``-s``) and bounded below, and every score it returns
must be the exact score of that document.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.backends.seismic import INDEX_FILE, SeismicBuildParams, SeismicSearchParams
from lexret.cli import main
from lexret.errors import IndexIntegrityError, IndexMismatchError, LexretError
from lexret.index_meta import META_FILE, QuerySpec, read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.metrics import overlap_at_k
from lexret.quantize import DEFAULT_SCALE, Quantizer
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids
from lexret.trec import read_run
from lexret.types import SparseBatch
from lexret.vectors import write_vectors
from lexret.vocab import Vocabulary

pytestmark = pytest.mark.slow

MODEL = "seismic-test/v1"
N_DOCS = 4000
N_QUERIES = 200
K = 10
# few postings per term, so that Seismic really prunes this small collection
BUILD = SeismicBuildParams(n_postings=400)
ACCURATE = SeismicSearchParams(query_cut=40, heap_factor=0.5)
FAST = SeismicSearchParams(query_cut=3, heap_factor=1.0)


def generated(n: int, terms_per_row: int, vocab: Vocabulary, seed: int) -> SparseBatch:
    """``n`` rows of zipf-distributed terms (which ids are frequent: a fixed random permutation),
    plus zero to two ``##`` pieces or ``[unused*]`` tokens on most rows; float weights in (0, 3]."""
    dim = len(vocab)
    perm = np.random.default_rng(0).permutation(dim)  # the same frequent terms for documents and queries
    p = 1.0 / np.arange(1, dim + 1) ** 1.1
    rng = np.random.default_rng(seed)
    draws = perm[rng.choice(dim, size=(n, terms_per_row), p=p / p.sum())]
    special = np.array([i for i, t in enumerate(vocab.tokens) if t.startswith("##") or t.startswith("[unused")])
    special = np.random.default_rng(1).choice(special, 60, replace=False)  # a few dozen, so they recur
    rows = []
    for i in range(n):
        idx = np.unique(np.concatenate([draws[i], rng.choice(special, rng.integers(0, 3), replace=False)]))
        rows.append((idx, np.clip(np.log1p(rng.gamma(1.5, 1.0, idx.size)), 1e-3, 3.0)))
    return SparseBatch.from_rows(rows, dim)


@pytest.fixture(scope="module")
def collection(vocab: Vocabulary):
    return (
        synthetic_ids(N_DOCS, "d"),
        generated(N_DOCS, 40, vocab, 5),
        synthetic_ids(N_QUERIES, "q"),
        generated(N_QUERIES, 20, vocab, 6),
    )


@pytest.fixture(scope="module")
def seismic_index(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary, collection):
    ids, docs, _, _ = collection
    out = tmp_path_factory.mktemp("seismic") / "index"
    config = IndexConfig(threads=1, engine="seismic", seismic=BUILD)
    meta = Indexer(vocab, config).build([(ids[:2500], docs.slice(0, 2500)), (ids[2500:], docs.slice(2500, N_DOCS))],
                                        out, IndexInfo(model_id=MODEL, modality="image"))  # fmt: skip
    return out, meta


@pytest.fixture(scope="module")
def exact(collection):
    ids, docs, qids, queries = collection
    quant = Quantizer(DEFAULT_SCALE)
    return ScipySparseBackend(ids, quant(docs)), quant(queries)


def exact_scores(collection, run) -> dict[str, dict[str, float]]:
    """The exact score of every hit of ``run``."""
    ids, docs, qids, queries = collection
    quant = Quantizer(DEFAULT_SCALE)
    d, q = quant(docs).to_scipy().astype(np.float64), quant(queries).to_scipy().astype(np.float64)
    row = {x: i for i, x in enumerate(ids)}
    qrow = {x: i for i, x in enumerate(qids)}
    return {qid: {doc: float(q[qrow[qid]].multiply(d[row[doc]]).sum()) for doc, _ in hits} for qid, hits in run.items()}


def test_collection_has_special_tokens(collection, vocab: Vocabulary) -> None:
    _, docs, _, queries = collection
    for batch in (docs, queries):
        toks = {vocab.tokens[j] for j in np.unique(batch.indices)}
        assert any(t.startswith("##") for t in toks) and any(t.startswith("[unused") for t in toks)


def test_folder_describes_the_engine(seismic_index, collection, vocab: Vocabulary) -> None:
    path, meta = seismic_index
    ids, docs, _, _ = collection
    assert read_meta(path) == meta
    assert meta["engine"] == "seismic" and meta["seismic"]["n_postings"] == BUILD.n_postings
    assert meta["model_id"] == MODEL and meta["vocab_hash"] == vocab.hash
    assert meta["quantization"]["scale"] == DEFAULT_SCALE and meta["num_docs"] == N_DOCS
    assert set(meta["files"]) == {INDEX_FILE} and meta["index_bytes"] == (path / INDEX_FILE).stat().st_size
    assert (path / "docids.txt").read_text().split() == ids
    with np.load(path / "docvectors.npz") as z:  # the quantized vectors, as a Lucene folder keeps them
        q = Quantizer(DEFAULT_SCALE)(docs)
        assert np.array_equal(z["indptr"], q.indptr) and np.array_equal(z["values"], q.values)
    assert not list(path.parent.glob(".index.*")), "the build left its temporary folder behind"


@pytest.mark.parametrize("params", [ACCURATE, FAST], ids=["accurate", "fast"])
def test_overlap_with_brute_force_is_bounded_below(seismic_index, collection, exact, vocab, params) -> None:
    path, _ = seismic_index
    _, _, qids, queries = collection
    ref, qq = exact
    want = ref.search(qids, qq, K)
    with Searcher(path, vocab, backend="seismic", seismic=params) as s:
        got = s.search(qids, queries, K, progress=False)
    assert got.keys() == want.keys()
    scores = exact_scores(collection, got)
    # every hit carries its exact score, and lists are ranked by score then docid
    for qid, hits in got.items():
        assert all(s == scores[qid][d] for d, s in hits), qid
        assert hits == sorted(hits, key=lambda h: (-h[1], h[0]))
    overlap = overlap_at_k(got, want, K, scores)
    exact_hits = sum(len(h) for h in want.values())
    print(f"\nseismic {params}: overlap@10 with brute force {overlap:.3f} ({N_DOCS} docs, {N_QUERIES} queries)")
    # measured 1.000 (accurate) and 0.88 (fast, 3 query terms); a broken mapping of terms, documents or
    # scores gives near 0
    assert overlap >= (0.97 if params is ACCURATE else 0.6)
    assert sum(len(h) for h in got.values()) >= 0.95 * exact_hits


def test_fewer_query_terms_lose_overlap(seismic_index, collection, exact, vocab) -> None:
    """The knob does something: three query terms find less of the exact top-10 than all of them."""
    path, _ = seismic_index
    _, _, qids, queries = collection
    ref, qq = exact
    want = ref.search(qids, qq, K)
    with Searcher(path, vocab, backend="seismic", seismic=ACCURATE) as s:
        accurate = overlap_at_k(s.search(qids, queries, K, progress=False), want, K)
    with Searcher(path, vocab, backend="seismic", seismic=SeismicSearchParams(query_cut=1, heap_factor=1.0)) as s:
        crude = overlap_at_k(s.search(qids, queries, K, progress=False), want, K)
    assert crude < accurate


def test_scipy_backend_searches_a_seismic_folder_exactly(seismic_index, collection, exact, vocab) -> None:
    path, _ = seismic_index
    _, _, qids, queries = collection
    ref, qq = exact
    got = Searcher(path, vocab, backend="scipy").search(qids[:50], queries.slice(0, 50), K, progress=False)
    assert got == ref.search(qids[:50], qq.slice(0, 50), K)


# ----- refusals -----------------------------------------------------------------------------------


@pytest.fixture
def copy_seismic(tmp_path: Path, seismic_index):
    dst = tmp_path / "copy"
    shutil.copytree(seismic_index[0], dst)
    return dst


def test_refuses_queries_of_another_model_or_scale(seismic_index, vocab) -> None:
    path, _ = seismic_index
    with pytest.raises(IndexMismatchError, match="other/model.*Rebuild the index"):
        Searcher(path, vocab, backend="seismic", expect=QuerySpec(model_id="other/model"))
    with pytest.raises(IndexMismatchError, match="scale 25.0, queries with scale 100"):
        Searcher(path, vocab, backend="seismic", expect=QuerySpec(scale=100.0))
    with pytest.raises(IndexMismatchError, match="vocabulary"):
        Searcher(path, vocab, backend="seismic", expect=QuerySpec(vocab_hash="0" * 16))


def test_backend_must_match_the_engine(seismic_index, copy_index, vocab) -> None:
    path, _ = seismic_index
    with pytest.raises(IndexMismatchError, match="built by seismic.*--backend seismic"):
        Searcher(path, vocab, backend="lucene")
    with pytest.raises(IndexMismatchError, match="built by lucene.*--engine seismic"):
        Searcher(copy_index(), vocab, backend="seismic")


def test_refuses_a_truncated_engine_file(copy_seismic: Path, vocab) -> None:
    f = copy_seismic / INDEX_FILE
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(IndexIntegrityError, match=r"Seismic file index.seismic .*truncated.*--engine seismic"):
        Searcher(copy_seismic, vocab, backend="seismic")


def test_refuses_a_missing_engine_file_or_metadata(copy_seismic: Path, vocab) -> None:
    (copy_seismic / INDEX_FILE).unlink()
    with pytest.raises(IndexIntegrityError, match="missing.*lexret index --engine seismic"):
        Searcher(copy_seismic, vocab, backend="seismic")
    (copy_seismic / META_FILE).unlink()
    with pytest.raises(IndexIntegrityError, match="no lexret.json"):
        Searcher(copy_seismic, vocab, backend="seismic")


def test_refuses_an_unreadable_engine_file_of_the_recorded_size(copy_seismic: Path, vocab) -> None:
    f = copy_seismic / INDEX_FILE
    f.write_bytes(b"\0" * f.stat().st_size)
    # Seismic reads zeros as an index of 2**64 - 1 documents: the count check refuses it
    with pytest.raises(IndexIntegrityError, match="rebuild the index with `lexret index --engine seismic`"):
        Searcher(copy_seismic, vocab, backend="seismic")


def test_refuses_altered_docids(copy_seismic: Path, vocab) -> None:
    p = copy_seismic / "docids.txt"
    p.write_text("\n".join(p.read_text().split()[:-5]) + "\n")
    with pytest.raises(IndexIntegrityError, match="docids.txt"):
        Searcher(copy_seismic, vocab, backend="seismic")


def test_refuses_impacts_beyond_16_bit_floats(tmp_path: Path, vocab) -> None:
    docs = SparseBatch.from_rows([(np.array([5, 9]), np.array([1.0, 3000.0]))], len(vocab))
    config = IndexConfig(scale=1.0, max_impact=5000, threads=1, engine="seismic")
    with pytest.raises(LexretError, match="16-bit floats.*--max-impact 2048"):
        Indexer(vocab, config).build([(["a"], docs)], tmp_path / "big")
    assert not (tmp_path / "big").exists() and not list(tmp_path.iterdir())


def test_reorder_is_refused_for_seismic() -> None:
    with pytest.raises(LexretError, match="Seismic clusters"):
        IndexConfig(engine="seismic", reorder="bp")


# ----- the command line ---------------------------------------------------------------------------


def test_cli_round_trip_writes_a_trec_run(tmp_path: Path, collection, exact, vocab, capfd, caplog) -> None:
    ids, docs, qids, queries = collection
    ref, qq = exact
    write_vectors(tmp_path / "docs.jsonl", ids, docs, vocab, meta={"model_id": MODEL})
    write_vectors(tmp_path / "queries.jsonl", qids, queries, vocab, meta={"model_id": MODEL})
    index, run = tmp_path / "index", tmp_path / "run.trec"
    assert main(["-q", "index", "--engine", "seismic", "--vectors", str(tmp_path / "docs.jsonl"), "--out", str(index),
                 "--threads", "1", "--n-postings", "400", "--summary-energy", "0.5"]) == 0  # fmt: skip
    meta = read_meta(index)
    assert meta["engine"] == "seismic" and meta["seismic"]["summary_energy"] == 0.5 and meta["model_id"] == MODEL
    assert main(["-q", "search", "--backend", "seismic", "--index", str(index), "--queries",
                 str(tmp_path / "queries.jsonl"), "--out", str(run), "--k", "10", "--threads", "1",
                 "--query-cut", "40", "--heap-factor", "0.5"]) == 0  # fmt: skip
    assert "Building the index" not in capfd.readouterr().out  # Seismic's own progress stays off stdout
    got = read_run(run)
    assert set(got) == set(qids)
    assert overlap_at_k(got, ref.search(qids, qq, K), K, exact_scores(collection, got)) >= 0.97
    # the Lucene backend refuses the folder, with the command line's exit code for user errors
    assert main(["-q", "search", "--index", str(index), "--queries", str(tmp_path / "queries.jsonl"),
                 "--out", str(tmp_path / "x.trec")]) == 2  # fmt: skip
    assert "--backend seismic" in caplog.text


# ----- the benchmark ------------------------------------------------------------------------------


def test_bench_seismic_smoke(tmp_path: Path, vocab: Vocabulary) -> None:
    """tools/bench_seismic.py end to end on the packaged sample, with made-up encodings."""
    import json
    import subprocess
    import sys

    from lexret.compare import Encoded
    from lexret.data import load_captions
    from lexret.evaluation import SplitIds

    root = Path(__file__).resolve().parent.parent
    sample = root / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"
    sids = SplitIds.from_collection(load_captions(sample, split="val"))
    rng = np.random.default_rng(0)
    n_img, n_cap = len(sids.image_ids), len(sids.caption_ids)
    Encoded(sids.image_ids, generated(n_img, 30, vocab, 1), rng.normal(size=(n_img, 16)).astype(np.float32)).save(
        tmp_path / "images.npz"
    )
    Encoded([str(i) for i in range(n_cap)], generated(n_cap, 10, vocab, 2),
            rng.normal(size=(n_cap, 16)).astype(np.float32)).save(tmp_path / "texts.npz")  # fmt: skip
    out = tmp_path / "curve.json"
    proc = subprocess.run(
        [sys.executable, str(root / "tools" / "bench_seismic.py"), "--images", str(tmp_path / "images.npz"),
         "--texts", str(tmp_path / "texts.npz"), "--data", str(sample), "--split", "val", "--distractors", "400",
         "--builds", "50:0.1:0.4", "--searches", "3:1.0,20:0.5", "--hnsw-sizes", "500", "--latency-queries", "20",
         "--build-threads", "1", "--work", str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["system"] for r in rows] == ["exact-numba", "hnsw", "seismic", "seismic"]
    assert all(r["corpus_size"] == 500 and r["qps_1t"] > 0 for r in rows)
    assert all(0 <= r["overlap@10"] <= 1 and r["score_mismatches"] == 0 for r in rows[2:])
    assert "overlap@10" in proc.stdout
