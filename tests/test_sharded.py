"""Sharded indexes: built in process or as Ray tasks, searched in process or by Ray actors, they
give the run of a single index over the same vectors (ids and scores, ties included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexret.cli import main
from lexret.distributed.cluster import RayUnavailableError, connect
from lexret.distributed.sharded_index import ShardedBuild, build_sharded
from lexret.distributed.sharded_search import ShardedSearcher, merge_runs, open_searcher
from lexret.distributed.sharding import shard_assignment, shard_of
from lexret.errors import IndexMismatchError, InputError
from lexret.index_meta import QuerySpec, read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.trec import read_run
from lexret.types import SparseBatch
from lexret.vectors import write_vectors

pytestmark = pytest.mark.slow

N_DOCS = 5_000
N_DUPLICATES = 500  # copies of other documents under new ids: tied scores across shards
N_SHARDS = 3
MODEL = "test-model/v1"


@pytest.fixture(scope="module")
def corpus(vocab) -> tuple[list[str], SparseBatch]:
    docs = zipf_batch(N_DOCS, len(vocab), 30, seed=5)
    rng = np.random.default_rng(5)
    copies = docs.take(rng.choice(N_DOCS, N_DUPLICATES, replace=False))
    ids = synthetic_ids(N_DOCS, "doc") + synthetic_ids(N_DUPLICATES, "copy")
    return ids, SparseBatch.concat([docs, copies])


@pytest.fixture(scope="module")
def queries(vocab) -> tuple[list[str], SparseBatch]:
    return synthetic_ids(60, "q"), zipf_batch(60, len(vocab), 8, seed=5)


@pytest.fixture(scope="module")
def built(tmp_path_factory, vocab, corpus) -> dict[str, Path]:
    ids, docs = corpus
    root = tmp_path_factory.mktemp("sharded")
    info = IndexInfo(model_id=MODEL, modality="text")
    chunks = [(ids[a : a + 1000], docs.slice(a, a + 1000)) for a in range(0, len(ids), 1000)]
    Indexer(vocab, IndexConfig(threads=1)).build(chunks, root / "single", info)
    build_sharded(chunks, root / "sharded", vocab, ShardedBuild(N_SHARDS), IndexConfig(threads=1), info)
    return {"single": root / "single", "sharded": root / "sharded", "root": root}


def test_shard_of_is_stable_and_spreads_ids() -> None:
    assert shard_of("doc1", 3) == shard_of("doc1", 3)
    assert [shard_of("a", 7), shard_of("image/1000268201_693b08cb0e.jpg", 7)] == [2, 3]  # fixed forever
    counts = np.bincount(shard_assignment(synthetic_ids(3000), 3), minlength=3)
    assert counts.min() > 900


def test_merge_runs_ranks_by_score_then_id() -> None:
    a = {"q": [("b", 5.0), ("d", 3.0)]}
    b = {"q": [("a", 5.0), ("c", 3.0), ("e", 1.0)]}
    assert merge_runs([a, b], 3) == {"q": [("a", 5.0), ("b", 5.0), ("c", 3.0)]}


def test_sharded_layout(built, corpus) -> None:
    meta = read_meta(built["sharded"])
    assert [s["name"] for s in meta["shards"]] == ["shard-000", "shard-001", "shard-002"]
    assert meta["num_docs"] == len(corpus[0]) == sum(s["num_docs"] for s in meta["shards"])
    assert meta["model_id"] == MODEL and meta["sharding"]["count"] == N_SHARDS
    for i, s in enumerate(meta["shards"]):
        shard_ids = (built["sharded"] / s["name"] / "docids.txt").read_text().split()
        assert {shard_of(d, N_SHARDS) for d in shard_ids} == {i}
    assert not [p for p in built["root"].iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("backend", ["lucene", "scipy"])
def test_sharded_search_equals_single_index(built, vocab, queries, backend) -> None:
    qids, q = queries
    with Searcher(built["single"], vocab, backend=backend) as single:
        want = {k: single.search(qids, q, k, progress=False) for k in (10, 100)}
    with ShardedSearcher(built["sharded"], vocab, backend=backend) as sharded:
        got = {k: sharded.search(qids, q, k, chunk_size=25, progress=False) for k in (10, 100)}
    assert got == want
    ties = sum(1 for hits in want[100].values() for a, b in zip(hits, hits[1:]) if a[1] == b[1])
    assert ties > 50  # the duplicated documents make ties that the merge must order as one index does


def test_sharded_refuses_queries_of_another_model(built, vocab) -> None:
    with pytest.raises(IndexMismatchError, match="Rebuild the index"):
        ShardedSearcher(built["sharded"], vocab, expect=QuerySpec(model_id="other/v2"))


def test_failed_shard_build_leaves_nothing(tmp_path, vocab, corpus) -> None:
    ids, docs = corpus
    bad = [(ids[:100], docs.slice(0, 100)), (ids[50:150], docs.slice(50, 150))]  # ids 50..99 twice
    with pytest.raises(InputError, match="occurs twice"):
        build_sharded(bad, tmp_path / "idx", vocab, ShardedBuild(N_SHARDS), IndexConfig(threads=1))
    assert list(tmp_path.iterdir()) == []


def test_ray_sharded_build_and_search_equal_single_index(ray_local, built, vocab, corpus, queries, tmp_path) -> None:
    ids, docs = corpus
    qids, q = queries
    write_vectors(tmp_path / "docs.npz", ids, docs, vocab, meta={"model_id": MODEL})
    write_vectors(tmp_path / "queries.npz", qids, q, vocab, meta={"model_id": MODEL})
    rc = main(["index", "--vectors", str(tmp_path / "docs.npz"), "--out", str(tmp_path / "idx"),
               "--shards", str(N_SHARDS), "--threads", "1", "--ray", "local"])  # fmt: skip
    assert rc == 0
    assert read_meta(tmp_path / "idx")["num_docs"] == len(ids)
    with Searcher(built["single"], vocab) as single:
        want = {k: single.search(qids, q, k, progress=False) for k in (10, 100)}
    with open_searcher(tmp_path / "idx", vocab, ray="local") as sharded:  # one Ray actor (and JVM) per shard
        assert isinstance(sharded, ShardedSearcher) and sharded.ray == "local"
        assert {k: sharded.search(qids, q, k, chunk_size=25, progress=False) for k in (10, 100)} == want
    for index in (built["single"], tmp_path / "idx"):
        args = ["search", "--index", str(index), "--queries", str(tmp_path / "queries.npz"), "--k", "10",
                "--out", str(tmp_path / f"{index.name}.trec"), "--threads", "1"]  # fmt: skip
        assert main(args) == 0
    assert read_run(tmp_path / "idx.trec") == read_run(tmp_path / "single.trec") == want[10]


def test_unreachable_ray_address_is_one_message(capsys, tmp_path, vocab, corpus) -> None:
    with pytest.raises(RayUnavailableError, match="cannot reach a Ray cluster at 127.0.0.1:9"), connect("127.0.0.1:9"):
        pass
    ids, docs = corpus
    write_vectors(tmp_path / "d.npz", ids[:100], docs.slice(0, 100), vocab)
    rc = main(["index", "--vectors", str(tmp_path / "d.npz"), "--out", str(tmp_path / "i"), "--shards", "2",
               "--ray", "127.0.0.1:9"])  # fmt: skip
    assert rc == 2 and not (tmp_path / "i").exists()
    assert "Traceback" not in capsys.readouterr().err
