"""Caption priors (lexret.document_prior): the inverted softmax as one indexed term per caption."""

from __future__ import annotations

import numpy as np
import pytest

from lexret.document_prior import (
    META_KEY,
    PRIOR_TERM,
    add_query_prior,
    caption_priors,
    prior_meta,
    read_bank,
    with_prior,
    write_bank,
)
from lexret.errors import LexretError
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.searcher import Searcher
from lexret.types import SparseBatch

SCALE = 5.0


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return SCALE * x / np.linalg.norm(x, axis=1, keepdims=True)


def _random_sparse(rng, n: int, dim: int, terms: int) -> np.ndarray:
    x = np.zeros((n, dim), np.float32)
    for i in range(n):
        x[i, rng.choice(np.arange(1000, 1000 + 40), size=terms, replace=False)] = rng.random(terms) + 0.1
    return _unit_rows(x)


def test_prior_is_the_inverted_softmax_over_the_bank(vocab) -> None:
    rng = np.random.default_rng(0)
    dim = len(vocab)
    docs, bank = _random_sparse(rng, 30, dim, 6), _random_sparse(rng, 50, dim, 8)
    t = 0.05
    got = caption_priors(SparseBatch.from_dense(docs), SparseBatch.from_dense(bank), t)
    cos = (docs @ bank.T) / SCALE**2
    want = -t * np.log(np.exp(cos / t).sum(1))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    with pytest.raises(LexretError, match="temperature"):
        caption_priors(SparseBatch.from_dense(docs), SparseBatch.from_dense(bank), 0.0)


def test_prior_term_adds_exactly_the_prior_to_every_score(vocab) -> None:
    rng = np.random.default_rng(1)
    dim = len(vocab)
    docs = SparseBatch.from_dense(_random_sparse(rng, 20, dim, 5))
    queries = SparseBatch.from_dense(_random_sparse(rng, 4, dim, 7))
    priors = rng.normal(-0.3, 0.05, 20)
    term = int(vocab.ids([PRIOR_TERM])[0])
    meta = prior_meta(vocab, SCALE, 0.05, 50, "m")[META_KEY]
    d = with_prior(docs, priors, term, SCALE).to_dense()
    q = add_query_prior(queries, meta).to_dense()
    want = queries.to_dense() @ docs.to_dense().T + SCALE**2 * (priors - priors.min())[None, :]
    np.testing.assert_allclose(q @ d.T, want, rtol=1e-5, atol=1e-5)
    assert (d[:, term] > 0).sum() == 19  # the lowest prior needs no term
    with pytest.raises(LexretError, match="reserved"):
        with_prior(SparseBatch.from_dense(d), priors, term, SCALE)


def test_index_with_priors_makes_every_backend_add_the_query_term(tmp_path, vocab) -> None:
    """The caption index records query_prior; Lucene, exact and scipy searches add the term to every
    query and rank by score + prior, equal to a brute force over the quantized vectors."""
    rng = np.random.default_rng(2)
    dim = len(vocab)
    docs = SparseBatch.from_dense(_random_sparse(rng, 200, dim, 6))
    bank = SparseBatch.from_dense(_random_sparse(rng, 100, dim, 8))
    queries = SparseBatch.from_dense(_random_sparse(rng, 12, dim, 8))
    ids, qids = [f"c{i}" for i in range(200)], [f"q{i}" for i in range(12)]
    pri = caption_priors(docs, bank, 0.05)
    term = int(vocab.ids([PRIOR_TERM])[0])
    out = tmp_path / "captions.index"
    meta = Indexer(vocab, IndexConfig(store_vectors=True)).build(
        [(ids, with_prior(docs, pri, term, SCALE))], out, IndexInfo("m", "text"),
        extra_meta=prior_meta(vocab, SCALE, 0.05, len(bank), "m"),
    )  # fmt: skip
    assert meta[META_KEY]["term"] == PRIOR_TERM
    runs = {}
    for backend in ("lucene", "exact", "scipy"):
        with Searcher(out, vocab, backend=backend) as s:
            runs[backend] = s.search(qids, queries, 10, progress=False)
            qint = s.prepare(queries)
            dint = s.quantizer(with_prior(docs, pri, term, SCALE))
    assert runs["lucene"] == runs["exact"] == runs["scipy"]
    scores = qint.to_dense().astype(np.int64) @ dint.to_dense().astype(np.int64).T
    for i, q in enumerate(qids):
        order = sorted(range(200), key=lambda j: (-scores[i, j], ids[j]))[:10]
        assert [d for d, _ in runs["lucene"][q]] == [ids[j] for j in order]
    # the prior changes rankings (the test can fail)
    plain = tmp_path / "plain.index"
    Indexer(vocab, IndexConfig()).build([(ids, docs)], plain, IndexInfo("m", "text"))
    with Searcher(plain, vocab, backend="lucene") as s:
        without = s.search(qids, queries, 10, progress=False)
    assert without != runs["lucene"]


def test_bank_round_trip(tmp_path, vocab) -> None:
    rng = np.random.default_rng(3)
    bank = SparseBatch.from_dense(_random_sparse(rng, 10, len(vocab), 4))
    assert read_bank(tmp_path) is None
    write_bank(tmp_path, bank, 0.02)
    got, t = read_bank(tmp_path)
    assert t == 0.02 and np.allclose(got.to_dense(), bank.to_dense(), atol=1e-2)
    (tmp_path / "caption_prior_bank.npz").write_bytes(b"junk")
    with pytest.raises(LexretError, match="rebuild"):
        read_bank(tmp_path)
