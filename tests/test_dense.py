"""FAISS dense backend: exact flat search, HNSW recall, and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexret.backends.dense import FaissBackend, HnswParams, l2_normalize
from lexret.errors import LexretError

DIM = 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    FaissBackend.set_threads(1)  # deterministic HNSW construction, and the machine is shared


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(3000, DIM)).astype(np.float32) * rng.uniform(0.5, 3, (3000, 1)).astype(np.float32)
    queries = rng.normal(size=(100, DIM)).astype(np.float32)
    return [f"doc{i}" for i in range(3000)], docs, [f"q{i}" for i in range(100)], queries


def brute_force(docids, docs, qids, queries, k):
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ d.T.astype(np.float64)
    out = {}
    for i, qid in enumerate(qids):
        order = np.argsort(-sims[i], kind="stable")[:k]
        out[qid] = [(docids[j], float(sims[i, j])) for j in order]
    return out


def test_l2_normalize() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    n = l2_normalize(x)
    assert n.dtype == np.float32
    assert np.allclose(n, [[0.6, 0.8], [0.0, 0.0]])


def test_flat_equals_numpy_cosine(data) -> None:
    docids, docs, qids, queries = data
    be = FaissBackend.build(docids, docs, kind="flat")
    assert be.num_docs == 3000 and be.dim == DIM
    got = be.search(qids, queries, 10, chunk_size=33)
    want = brute_force(docids, docs, qids, queries, 10)
    assert got.keys() == want.keys()
    for q in qids:
        assert [d for d, _ in got[q]] == [d for d, _ in want[q]]
        assert np.allclose([s for _, s in got[q]], [s for _, s in want[q]], atol=1e-5)
        assert all(-1.0001 <= s <= 1.0001 for _, s in got[q])


def test_hnsw_recall_against_flat(data) -> None:
    docids, docs, qids, queries = data
    flat = FaissBackend.build(docids, docs, kind="flat").search(qids, queries, 10)
    hnsw = FaissBackend.build(docids, docs, kind="hnsw", hnsw=HnswParams(m=16, ef_construction=100, ef_search=64))
    approx = hnsw.search(qids, queries, 10)
    recall = np.mean([len({d for d, _ in approx[q]} & {d for d, _ in flat[q]}) / 10 for q in qids])
    assert recall >= 0.95, recall
    assert all(len(approx[q]) == 10 for q in qids)


def test_k_larger_than_collection(data) -> None:
    docids, docs, qids, queries = data
    be = FaissBackend.build(docids[:5], docs[:5])
    run = be.search(qids[:3], queries[:3], 50)
    assert all(sorted(d for d, _ in hits) == sorted(docids[:5]) for hits in run.values())
    assert all([s for _, s in hits] == sorted((s for _, s in hits), reverse=True) for hits in run.values())


def test_save_and_load(tmp_path: Path, data) -> None:
    docids, docs, qids, queries = data
    be = FaissBackend.build(docids[:200], docs[:200])
    be.save(tmp_path / "flat.faiss")
    loaded = FaissBackend.load(tmp_path / "flat.faiss", docids[:200])
    assert loaded.search(qids, queries, 5) == be.search(qids, queries, 5)


def test_dimension_mismatch(data) -> None:
    docids, docs, qids, queries = data
    be = FaissBackend.build(docids[:100], docs[:100])
    with pytest.raises(LexretError, match=f"query dim 16 != index dim {DIM}"):
        be.search(qids[:2], queries[:2, :16], 5)


def test_unknown_kind(data) -> None:
    docids, docs, _, _ = data
    with pytest.raises(LexretError, match="unknown FAISS index kind"):
        FaissBackend.build(docids[:10], docs[:10], kind="ivf")
