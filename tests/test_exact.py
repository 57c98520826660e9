"""The exact term-at-a-time engine (lexret.backends.exact) ranks exactly like the brute force.

Same ids, same scores, same order at tied scores (docid string ascending, like Lucene), at k=10
and k=1000, one query at a time and in batches, on one and two threads; through the Searcher and
``lexret search --backend exact`` it refuses mismatched queries and damaged index folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexret.backends.exact import ExactBackend
from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.errors import IndexIntegrityError, IndexMismatchError, LexretError
from lexret.index_meta import QuerySpec
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary


def naive_search(qids, queries: SparseBatch, ids, docs: SparseBatch, k: int) -> dict[str, list[tuple[str, float]]]:
    """Plain-Python reference: dot products over term dicts, sorted by (-score, docid)."""
    rows = [dict(zip(*(x.tolist() for x in docs.row(d)))) for d in range(len(docs))]
    out = {}
    for i, qid in enumerate(qids):
        q = dict(zip(*(x.tolist() for x in queries.row(i))))
        scored = [(-sum(w * row.get(t, 0) for t, w in q.items()), ids[d]) for d, row in enumerate(rows)]
        out[qid] = [(docid, float(-neg)) for neg, docid in sorted(s for s in scored if s[0] < 0)[:k]]
    return out


def boundary_ties(run: dict[str, list[tuple[str, float]]], k: int) -> int:
    """Queries whose list (cut at k + 1) has a tie across position k."""
    return sum(1 for hits in run.values() if len(hits) > k and hits[k - 1][1] == hits[k][1])


def assert_same_runs(got, want) -> None:
    assert got.keys() == want.keys()
    diff = [q for q in want if got[q] != want[q]]
    assert not diff, f"{len(diff)} queries differ, e.g. {diff[0]}: {got[diff[0]][:5]} vs {want[diff[0]][:5]}"


def wordpiece_terms(vocab: Vocabulary) -> np.ndarray:
    """Terms of every kind: whole words, ``##`` continuation pieces and ``[unused*]`` tokens."""
    pieces = [t for t in vocab.tokens if t.startswith("##")][:40]
    unused = [t for t in vocab.tokens if t.startswith("[unused")][:20]
    words = ["dog", "cat", "the", "a", "red", "ball", "grass", "run", "man", "water", "bike", "snow"]
    assert len(pieces) == 40 and len(unused) == 20
    return np.array(vocab.ids(words + pieces + unused))


def generated(vocab: Vocabulary, n_docs: int, n_queries: int, seed: int, max_weight: int = 3):
    """Integer documents and queries over ``wordpiece_terms`` with small weights: ties are the rule.
    Docids of mixed case, digits and a non-ASCII letter in random order, so string order is
    neither input nor numeric order; a few documents are empty, one query is empty and one uses a
    term no document has."""
    rng = np.random.default_rng(seed)
    terms = wordpiece_terms(vocab)
    rows = []
    for _ in range(n_docs):
        t = rng.choice(terms[:-1], rng.integers(0, 9), replace=False)  # terms[-1] is in no document
        rows.append((t, rng.integers(1, max_weight + 1, t.size)))
    docs = SparseBatch.from_rows(rows, len(vocab), dtype=np.int32)
    ids = [f"{rng.choice(['A', 'b', 'Z', 'x-', 'é'])}{j}" for j in rng.permutation(n_docs)]
    qrows = [(t := rng.choice(terms, rng.integers(1, 7), replace=False), rng.integers(1, max_weight + 1, t.size))
             for _ in range(n_queries - 2)]  # fmt: skip
    qrows += [(np.array([], dtype=np.int64), np.array([])), (terms[-1:], np.array([2]))]
    queries = SparseBatch.from_rows(qrows, len(vocab), dtype=np.int32)
    return ids, docs, [f"q{i}" for i in range(n_queries)], queries


@pytest.fixture(scope="module")
def collection(vocab: Vocabulary):
    return generated(vocab, 4000, 120, seed=5)


@pytest.fixture(scope="module")
def engine(collection):
    ids, docs, _, _ = collection
    e = ExactBackend(ids, docs)
    yield e
    e.close()


@pytest.fixture(scope="module")
def reference(collection):
    ids, docs, qids, queries = collection
    ref = ScipySparseBackend(ids, docs)
    return {k: ref.search(qids, queries, k) for k in (10, 11, 1000, 1001)}


def test_the_collection_has_ties_empty_documents_and_empty_results(collection, reference) -> None:
    ids, docs, qids, _ = collection
    assert (docs.terms_per_row() == 0).sum() > 100
    assert boundary_ties(reference[11], 10) > 50 and boundary_ties(reference[1001], 1000) > 5
    assert reference[10][qids[-1]] == [] and reference[10][qids[-2]] == []
    assert any(0 < len(h) < 1000 for h in reference[1000].values())  # fewer hits than k


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [10, 1000])
def test_batch_equals_brute_force(engine, collection, reference, k: int, threads: int) -> None:
    _, _, qids, queries = collection
    assert_same_runs(engine.search(qids, queries, k, threads=threads), reference[k])


@pytest.mark.parametrize("k", [10, 1000])
def test_one_query_at_a_time_equals_brute_force(engine, collection, reference, k: int) -> None:
    _, _, qids, queries = collection
    got = {}
    for i, qid in enumerate(qids):
        got.update(engine.search([qid], queries.slice(i, i + 1), k))
    assert_same_runs(got, reference[k])


def test_equals_plain_python_reference(vocab: Vocabulary) -> None:
    ids, docs, qids, queries = generated(vocab, 600, 40, seed=9, max_weight=2)
    with_threads = ExactBackend(ids, docs, threads=2)
    for k in (1, 10, 1000):
        want = naive_search(qids, queries, ids, docs, k)
        assert_same_runs(with_threads.search(qids, queries, k), want)
    with_threads.close()


def test_scores_beyond_int32_use_a_wide_accumulator(vocab: Vocabulary) -> None:
    rng = np.random.default_rng(1)
    terms = rng.choice(len(vocab), 3000, replace=False)
    rows = [(terms, rng.integers(900, 1001, terms.size)) for _ in range(30)]
    rows += [(terms[:5], np.full(5, 7)) for _ in range(30)]  # small scores beside huge ones
    docs = SparseBatch.from_rows(rows, len(vocab), dtype=np.int32)
    ids = [f"d{i}" for i in range(60)]
    queries = SparseBatch.from_rows(
        [(terms, np.full(terms.size, 1000)), (terms[:5], np.full(5, 3))], len(vocab), dtype=np.int32
    )
    got = ExactBackend(ids, docs).search(["big", "small"], queries, 40)
    want = ScipySparseBackend(ids, docs).search(["big", "small"], queries, 40)
    assert_same_runs(got, want)
    assert got["big"][0][1] > np.iinfo(np.int32).max


def test_counts_the_postings_it_adds(engine, collection) -> None:
    _, docs, qids, queries = collection
    df = np.bincount(docs.indices, minlength=docs.dim)
    engine.search(qids, queries, 10, threads=2)
    assert engine.last_stats.queries == len(qids)
    assert engine.last_stats.postings == int(df[queries.indices].sum()) > 0


def test_refuses_what_it_cannot_rank_exactly(engine, collection, vocab: Vocabulary) -> None:
    ids, docs, qids, queries = collection
    with pytest.raises(ValueError, match="integer"):
        engine.search(qids, SparseBatch(queries.indptr, queries.indices, queries.values + 0.5, queries.dim), 10)
    with pytest.raises(ValueError, match="dim"):
        engine.search(["q"], SparseBatch.empty(1, 7, np.int32), 10)
    with pytest.raises(ValueError, match="integer"):
        ExactBackend(ids, SparseBatch(docs.indptr, docs.indices, docs.values.astype(np.float32), docs.dim))
    with pytest.raises(ValueError, match="ids"):
        ExactBackend(ids[:-1], docs)


# ----- through the Searcher, on a Lucene index folder ----------------------------------------


@pytest.fixture(scope="module")
def wordpiece_index(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary):
    """The generated collection indexed at scale 1 with two threads (Lucene's document order is then
    neither input nor docid order)."""
    ids, docs, qids, queries = generated(vocab, 3000, 80, seed=21)
    out = tmp_path_factory.mktemp("exact-index") / "index"
    Indexer(vocab, IndexConfig(scale=1.0, threads=2)).build(
        [(ids[:1700], docs.slice(0, 1700)), (ids[1700:], docs.slice(1700, len(ids)))], out, IndexInfo("gen-model")
    )
    return out, qids, queries


@pytest.mark.slow
@pytest.mark.parametrize("k", [10, 1000])
def test_searcher_exact_equals_lucene_and_scipy(wordpiece_index, vocab: Vocabulary, k: int) -> None:
    path, qids, queries = wordpiece_index
    spec = QuerySpec(model_id="gen-model", scale=1.0)
    runs = {}
    for backend in ("exact", "scipy", "lucene"):
        with Searcher(path, vocab, expect=spec, backend=backend) as s:
            runs[backend] = s.search(qids, queries, k, threads=2, chunk_size=33, progress=False)
    assert_same_runs(runs["exact"], runs["scipy"])
    assert_same_runs(runs["exact"], runs["lucene"])
    assert sum(len({s for _, s in h}) < len(h) for h in runs["exact"].values()) > len(qids) // 2  # ties inside


@pytest.mark.parametrize(
    "spec, needle",
    [
        (QuerySpec(model_id="another-model"), "another-model"),
        (QuerySpec(scale=10.0), "scale 10.0"),
        (QuerySpec(vocab_hash="0" * 16), "query vocabulary"),
    ],
)
def test_searcher_refuses_mismatched_queries(small_index, vocab: Vocabulary, spec: QuerySpec, needle: str) -> None:
    with pytest.raises(IndexMismatchError, match="Rebuild the index") as e:
        Searcher(small_index.path, vocab, expect=spec, backend="exact")
    assert needle in str(e.value)


def _drop_vectors(path: Path) -> None:
    (path / "docvectors.npz").unlink()


def _truncate_vectors(path: Path) -> None:
    f = path / "docvectors.npz"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _float_vectors(path: Path) -> None:
    f = path / "docvectors.npz"
    with np.load(f) as z:
        arrays = dict(z)
    np.savez(f, indptr=arrays["indptr"], indices=arrays["indices"], values=arrays["values"] * 0.5)


def _drop_an_id(path: Path) -> None:
    f = path / "docids.txt"
    f.write_text("\n".join(f.read_text().splitlines()[:-1]) + "\n")


def _drop_meta(path: Path) -> None:
    (path / "lexret.json").unlink()


def _truncate_lucene_file(path: Path) -> None:
    f = max((p for p in path.iterdir() if p.suffix == ".doc"), key=lambda p: p.stat().st_size)
    f.write_bytes(f.read_bytes()[:-10])


@pytest.mark.parametrize(
    "damage, error, needles",
    [
        (_drop_vectors, LexretError, ("keeps no document vectors", "exact backend", "lexret index")),
        (_truncate_vectors, IndexIntegrityError, ("docvectors.npz is unreadable", "lexret index")),
        (_float_vectors, IndexIntegrityError, ("not positive integer impacts", "lexret index")),
        (_drop_an_id, IndexIntegrityError, ("docids.txt", "rebuild the index")),
        (_drop_meta, IndexIntegrityError, ("lexret.json", "lexret index")),
        (_truncate_lucene_file, IndexIntegrityError, ("truncated or altered", "lexret index")),
    ],
)
def test_searcher_refuses_damaged_folders(copy_index, vocab: Vocabulary, damage, error, needles) -> None:
    path = copy_index()
    damage(path)
    with pytest.raises(error) as e:
        Searcher(path, vocab, backend="exact")
    for needle in needles:
        assert needle in str(e.value)


def test_cli_search_backend_exact_writes_the_scipy_run(small_index, small_queries, vocab, tmp_path: Path) -> None:
    from lexret.cli import main
    from lexret.vectors import write_vectors

    qids, queries = small_queries
    qfile = tmp_path / "q.npz"
    write_vectors(qfile, qids, queries, vocab, {"model_id": small_index.info.model_id})
    runs = {}
    for backend in ("exact", "scipy"):
        out = tmp_path / f"{backend}.run"
        args = ["-q", "search", "--index", str(small_index.path), "--queries", str(qfile), "--out", str(out)]
        assert main([*args, "--k", "25", "--backend", backend, "--threads", "2", "--chunk-size", "7"]) == 0
        runs[backend] = out.read_text()
    assert runs["exact"] == runs["scipy"] and len(runs["exact"].splitlines()) > 25 * len(qids) // 2


def test_exact_backend_quantizes_float_queries_like_the_index(small_index, small_queries, vocab) -> None:
    qids, queries = small_queries
    with Searcher(small_index.path, vocab, backend="exact") as s:
        got = s.search(qids, queries, 10, progress=False)
    ids, docs = small_index.ids, small_index.docs
    quant = Quantizer(small_index.meta["quantization"]["scale"])
    assert_same_runs(got, ScipySparseBackend(ids, quant(docs)).search(qids, quant(queries), 10))


def test_stored_vectors_are_narrow_and_read_back_as_they_were(small_index, vocab: Vocabulary) -> None:
    with np.load(small_index.path / "docvectors.npz") as z:
        assert z["indices"].dtype == np.uint16 and z["values"].dtype == np.uint8
    s = Searcher(small_index.path, vocab, backend="exact")
    ids, docs = s.load_docvectors("exact")
    want = Quantizer(small_index.meta["quantization"]["scale"])(small_index.docs)
    assert ids == small_index.ids and docs.values.dtype == np.int32
    assert all(
        np.array_equal(a, b)
        for a, b in zip((docs.indptr, docs.indices, docs.values), (want.indptr, want.indices, want.values))
    )


def test_search_command_lists_the_searcher_backends() -> None:
    from lexret.commands.search import BACKENDS as CLI_BACKENDS
    from lexret.searcher import BACKENDS

    # every Searcher backend, plus milvus, which searches a Milvus collection instead of an index folder
    assert (*BACKENDS, "milvus") == CLI_BACKENDS
