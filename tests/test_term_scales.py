"""Learned per-term image scales (``lexret.model.term_scales``) and ``lexret train-queries --image-terms``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_query_map import mapped  # noqa: F401  (the tiny model and its map)

from lexret.encoders import SparseEncoder
from lexret.errors import LexretError
from lexret.model.term_scales import TermScales, apply_per_term
from lexret.training.config import QueryMapConfig
from lexret.training.losses import multi_positive_ce
from lexret.training.query_map import train_query_map
from lexret.types import SparseBatch


def test_apply_per_term_scales_offsets_and_drops():
    b = SparseBatch.from_rows([(np.array([1, 2, 3]), np.array([1.0, 0.5, 0.2])), (np.array([2]), np.array([2.0]))], 5)
    a, off = np.ones(5, np.float32), np.zeros(5, np.float32)
    a[2], off[3] = 2.0, 0.3  # term 2 doubled; term 3 loses 0.3 (its 0.2 posting goes)
    out = apply_per_term(b, a, off)
    assert out.row(0)[0].tolist() == [1, 2] and np.allclose(out.row(0)[1], [1.0, 1.0])
    assert out.row(1)[0].tolist() == [2] and np.allclose(out.row(1)[1], [4.0])
    floor = np.zeros(5, np.float32)
    floor[1] = 2.0  # a DF-cap threshold on the input weight of term 1
    assert apply_per_term(b, None, None, floor).row(0)[0].tolist() == [2, 3]


def test_term_scales_round_trip_and_refusals(tmp_path):
    s = TermScales(np.array([3, 7]), np.array([0.5, 2.0]), np.array([0.0, 0.1]))
    s.save(tmp_path)
    t = TermScales.load(tmp_path)
    a, b = t.dense(10)
    assert a[3] == 0.5 and a[7] == 2.0 and a[0] == 1.0 and b[7] == pytest.approx(0.1) and b[0] == 0.0
    with pytest.raises(LexretError, match="outside the vocabulary"):
        t.dense(5)
    with pytest.raises(LexretError, match="non-negative"):
        TermScales(np.array([1]), np.array([-1.0]), np.array([0.0]))
    with pytest.raises(LexretError, match="one scale and one offset"):
        TermScales(np.array([1, 2]), np.array([1.0]), np.array([0.0]))
    with pytest.raises(LexretError, match="term_scales.safetensors is missing"):
        TermScales.load(tmp_path / "nothing")


def test_digest_tells_transforms_apart():
    a = TermScales(np.array([3, 7]), np.array([1.2, 0.5]), np.array([0.0, 0.1]))
    b = TermScales(np.array([3, 7]), np.array([1.2, 0.5]), np.array([0.0, 0.2]))
    assert a.digest() == TermScales(a.terms, a.scales, a.offsets).digest() != b.digest()


def test_multi_positive_ce_counts_every_right_answer():
    logits = torch.tensor([[2.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    pos = torch.tensor([[True, True, False], [False, False, True]])
    want = -np.log(2 * np.exp(2) / (2 * np.exp(2) + 1)) / 2 - np.log(np.exp(5) / (np.exp(5) + 2)) / 2
    assert float(multi_positive_ce(logits, pos)) == pytest.approx(want, rel=1e-5)


def test_a_map_with_image_terms_owns_its_images(mapped, tmp_path):  # noqa: F811
    root, base, _, _ = mapped
    qcfg = QueryMapConfig(
        documents=str(base), data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), dev_items=2,
        epochs=2, batch_size=8, top_k_text=4, per_row=6, threads=2, image_terms=True, w_image_df=0.5, df_floor=0.02,
    )  # fmt: skip
    out = tmp_path / "qm-terms"
    conf = train_query_map(qcfg, out)
    assert conf["query_map"]["image_terms"] is True and "-imageterms-" in conf["model_id"]
    assert TermScales.load(out).digest() in conf["model_id"]  # the id names the transform of the images
    enc, ref = SparseEncoder.from_pretrained(out), SparseEncoder.from_pretrained(base)
    assert enc.index_model_id == enc.model_id != ref.model_id
    scales = TermScales.load(out)
    assert scales.terms.size > 0  # training moved some terms' scales
    a, b = scales.dense(len(enc.vocab))
    imgs = [root / "images" / f"{i}.jpg" for i in range(6)]
    x, y = enc.encode_images(imgs), ref.encode_images(imgs)
    for i in range(len(x)):  # each row: relu(a v - b * output_scale) of the documents' model's row
        iy, vy = y.row(i)
        w = np.maximum(a[iy] * vy - b[iy] * 5.0, 0)
        ix, vx = x.row(i)
        assert ix.tolist() == iy[w > 0].tolist() and np.allclose(vx, w[w > 0], rtol=1e-5)
    with pytest.raises(LexretError, match="df_floor"):
        train_query_map(
            QueryMapConfig(documents=str(base), data=str(root / "captions.jsonl"), df_floor=1.0), tmp_path / "f"
        )
    with pytest.raises(LexretError, match="loss weights"):
        bad = QueryMapConfig(documents=str(base), data=str(root / "captions.jsonl"), image_terms=True, w_i2t=-1)
        train_query_map(bad, tmp_path / "bad")
