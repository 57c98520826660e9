"""DF caps on image vectors (``lexret.model.df_cap``) and ``lexret train-queries --df-cap`` (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_query_map import mapped  # noqa: F401  (the tiny model and its map)

from lexret.encoders import SparseEncoder
from lexret.errors import LexretError
from lexret.model.df_cap import DfCap
from lexret.training.config import QueryMapConfig
from lexret.training.query_map import train_query_map


def test_estimate_keeps_each_frequent_terms_heaviest_share():
    # term 3 in all 10 documents (weights 0.1 .. 1.0), term 7 in 2, term 9 in 5
    idx = np.array([3] * 10 + [7, 7] + [9] * 5)
    val = np.concatenate([np.linspace(0.1, 1.0, 10), [0.5, 0.2], np.full(5, 0.3)]).astype(np.float32)
    cap = DfCap.estimate(val, idx, 10, 0.3)
    assert cap.terms.tolist() == [3, 9]  # term 7 (2 of 10) is under the cap: never pruned
    np.testing.assert_allclose(cap.thresholds[0], 0.8)  # the 3rd heaviest of term 3
    keep = cap.keep_mask(idx, val, 12)
    assert keep[:10].sum() == 3 and keep[10:12].all()
    assert keep[12:].all()  # ties at the threshold are kept: term 9's five equal weights stay
    dense = cap.dense(12)
    assert dense[7] == 0 and dense[3] == pytest.approx(0.8)
    np.testing.assert_array_equal(cap.keep_mask(idx, val * 5, 12, scale=5.0), keep)


def test_bad_caps_are_refused(tmp_path):
    with pytest.raises(LexretError, match="share of the images"):
        DfCap.estimate(np.ones(3), np.arange(3), 3, 0.0)
    with pytest.raises(LexretError, match="share of the images"):
        DfCap(np.arange(2), np.ones(2), 1.5)
    with pytest.raises(LexretError, match="one threshold per term"):
        DfCap(np.arange(2), np.ones(3), 0.5)
    with pytest.raises(LexretError, match="df_cap.safetensors is missing"):
        DfCap.load(tmp_path)
    with pytest.raises(LexretError, match="beyond the vocabulary"):
        DfCap(np.array([20]), np.ones(1), 0.5).dense(10)
    c = DfCap(np.array([4, 2]), np.array([0.5, 0.25]), 0.1)
    c.save(tmp_path)
    d = DfCap.load(tmp_path)
    assert d.terms.tolist() == [4, 2] and d.cap == pytest.approx(0.1) and np.allclose(d.thresholds, [0.5, 0.25])


@pytest.fixture(scope="module")
def capped(mapped):  # noqa: F811
    root, base, _, _ = mapped
    qcfg = QueryMapConfig(
        documents=str(base), data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), dev_items=2,
        epochs=1, batch_size=8, top_k_text=4, per_row=6, threads=2, df_cap=0.2,
    )  # fmt: skip
    out = root / "qm-capped"
    return root, base, out, train_query_map(qcfg, out)


def test_a_capped_map_prunes_the_images_and_owns_its_indexes(capped):
    root, base, out, conf = capped
    assert conf["query_map"]["df_cap"] == pytest.approx(0.2) and "-dfcap0.2-" in conf["model_id"]
    enc, ref = SparseEncoder.from_pretrained(out), SparseEncoder.from_pretrained(base)
    assert enc.index_model_id == enc.model_id != ref.model_id  # not the documents' model's vectors any more
    assert "encoder_model_id" not in enc.metadata()
    imgs = [root / "images" / f"{i}.jpg" for i in range(12)]
    a, b = enc.encode_images(imgs), ref.encode_images(imgs)
    assert a.nnz < b.nnz
    cap = DfCap.load(out)
    thr = cap.dense(a.dim) * enc._scale
    for i in range(len(a)):  # each capped row is the reference row without its postings under the thresholds
        ia, va = a.row(i)
        ib, vb = b.row(i)
        keep = vb >= thr[ib]
        assert ia.tolist() == ib[keep].tolist() and np.allclose(va, vb[keep])
    df = np.bincount(a.indices, minlength=a.dim)
    # the 10 training images set the thresholds: no capped term is held by more than 20% of them (+ ties)
    assert df[cap.terms].max() <= max(1, int(0.2 * 10)) + 2
    # caption documents are still the documents' model's
    caps = ["a red dog picture"]
    x, y = enc.encode_text_documents(caps), ref.encode_texts(caps)
    assert x.indices.tolist() == y.indices.tolist()
    assert json.loads((out / "config.json").read_text())["training"]["df_cap"] == pytest.approx(0.2)


def test_train_queries_refuses_a_bad_cap(mapped, tmp_path):  # noqa: F811
    root, base, _, _ = mapped
    with pytest.raises(LexretError, match="df_cap"):
        bad = QueryMapConfig(documents=str(base), data=str(root / "captions.jsonl"), df_cap=2.0)
        train_query_map(bad, tmp_path / "c")
