"""Milvus (embedded, milvus-lite) as a serving backend: same top-k ids and scores as the exact
scipy search over the same quantized vectors; loads resume by id; other models are refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.cli import main
from lexret.quantize import Quantizer
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.trec import read_run
from lexret.types import SparseBatch
from lexret.vectors import write_vectors

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytestmark = pytest.mark.slow

N_DOCS = 2_000
MODEL = "test-model/v1"
SCALE = 25.0


@pytest.fixture(scope="module")
def files(tmp_path_factory, vocab):
    d = tmp_path_factory.mktemp("milvus")
    docs = zipf_batch(N_DOCS, len(vocab), 30, seed=9)
    copies = docs.take(np.arange(0, N_DOCS, 10))  # duplicates: tied scores at every rank
    ids = synthetic_ids(N_DOCS, "doc") + synthetic_ids(len(copies), "copy")
    docs = SparseBatch.concat([docs, copies])
    qids, q = synthetic_ids(50, "q"), zipf_batch(50, len(vocab), 8, seed=9)
    write_vectors(d / "docs.npz", ids, docs, vocab, meta={"model_id": MODEL})
    half = len(ids) // 2
    write_vectors(d / "first-half.npz", ids[:half], docs.slice(0, half), vocab, meta={"model_id": MODEL})
    write_vectors(d / "queries.npz", qids, q, vocab, meta={"model_id": MODEL})
    write_vectors(d / "other.npz", qids, q, vocab, meta={"model_id": "other-model/v9"})
    return {"dir": d, "ids": ids, "docs": docs, "qids": qids, "queries": q}


def _load(files, vectors: str, *extra: str) -> int:
    d = files["dir"]
    return main(["milvus", "load", "--vectors", str(d / vectors), "--uri", str(d / "m.db"), "--collection", "docs",
                 "--scale", str(SCALE), *extra])  # fmt: skip


def test_milvus_search_equals_exact_search_and_refuses_other_models(files, caplog) -> None:
    caplog.set_level(logging.INFO)
    d = files["dir"]
    # an interrupted load (half the documents), then the full file: the stored half is skipped
    assert _load(files, "first-half.npz") == 0
    assert _load(files, "docs.npz") == 0
    assert "inserted 1100 vectors into Milvus collection 'docs'" in caplog.text
    assert "(1100 were there already); it holds 2200" in caplog.text
    search = ["search", "--backend", "milvus", "--uri", str(d / "m.db"), "--collection", "docs", "--k", "10"]
    assert main([*search, "--queries", str(d / "queries.npz"), "--out", str(d / "run.trec")]) == 0
    got = read_run(d / "run.trec")

    qz = Quantizer(SCALE, 1000)
    exact = ScipySparseBackend(files["ids"], qz(files["docs"])).search(files["qids"], qz(files["queries"]), 10)
    assert got == exact
    assert sum(1 for hits in exact.values() for a, b in zip(hits, hits[1:]) if a[1] == b[1]) > 20  # ties ranked

    caplog.clear()
    assert main([*search, "--queries", str(d / "other.npz"), "--out", str(d / "other.trec")]) == 2
    message = caplog.text
    assert "'other-model/v9'" in message and f"'{MODEL}'" in message
    assert "lexret milvus load --vectors DOCS" in message
    assert not (d / "other.trec").exists()


def test_milvus_load_refuses_another_scale_into_the_same_collection(files, caplog) -> None:
    d = files["dir"]
    rc = main(["milvus", "load", "--vectors", str(d / "first-half.npz"), "--uri", str(d / "s.db"),
               "--collection", "c", "--scale", "10"])  # fmt: skip
    assert rc == 0
    assert _load(files, "first-half.npz") == 0  # another file: collection "docs" there does not exist yet
    rc = main(["milvus", "load", "--vectors", str(d / "first-half.npz"), "--uri", str(d / "s.db"),
               "--collection", "c", "--scale", "20"])  # fmt: skip
    assert rc == 2
    assert "holds other vectors" in caplog.text and "--replace" in caplog.text
