"""Term-presence loss of the image-term scales (``QueryMapConfig.w_presence``) and term precision on
sparse rows (the sweep tool's TP@10 column)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from test_query_map import mapped  # noqa: F401  (the tiny model and its map)

from lexret.errors import LexretError
from lexret.model.term_scales import TermScales
from lexret.training.config import QueryMapConfig
from lexret.training.evaluate import term_precision, term_precision_csr
from lexret.training.losses import presence_ce
from lexret.training.query_map import QueryMapTrainer, image_presence, train_query_map


def test_presence_ce_is_low_when_present_terms_are_heaviest():
    held = torch.tensor([[True, True, True, False]])
    present = torch.tensor([[True, False, False, True]])  # term 3 is a caption word the image does not hold
    good = presence_ce(torch.tensor([[0.9, 0.1, 0.1, 0.0]]), held, present, 0.05)
    bad = presence_ce(torch.tensor([[0.1, 0.9, 0.1, 0.0]]), held, present, 0.05)
    assert float(good) < 1e-3 and float(bad) > 10.0  # 0.8 / 0.05 = 16 nats behind
    # the held terms only, each present one: -log(e^{w0/T} / sum over held e^{w/T})
    w = np.array([0.3, 0.2, 0.1])
    want = -np.log(np.exp(w[0] / 0.1) / np.exp(w / 0.1).sum())
    got = presence_ce(torch.tensor([[0.3, 0.2, 0.1, 5.0]]), held, present, 0.1)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # two present terms: the mean of their -log softmax, so one heavy caption word does not satisfy it
    two = torch.tensor([[True, True, False, False]])
    got = presence_ce(torch.tensor([[0.3, 0.2, 0.1, 0.0]]), held, two, 0.1)
    want = np.mean([-np.log(np.exp(w[k] / 0.1) / np.exp(w / 0.1).sum()) for k in (0, 1)])
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_presence_ce_skips_rows_without_a_choice():
    held = torch.tensor([[True, True], [True, True], [True, False]])
    present = torch.tensor([[True, True], [False, False], [True, False]])  # all present, none, one term
    w = torch.tensor([[0.5, 0.1], [0.5, 0.1], [0.5, 0.0]], requires_grad=True)
    loss = presence_ce(w, held, present, 0.05)
    assert float(loss.detach()) == 0.0
    loss.backward()  # still a graph: a batch without such rows does not break training
    assert w.grad is not None and float(w.grad.abs().sum()) == 0.0


def test_image_presence_unions_an_images_captions():
    X = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]], np.float32))
    P = image_presence(X, np.array([0, 0, 1]), 3)
    assert P.toarray().tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_term_precision_csr_matches_the_dense_definition():
    rng = np.random.default_rng(0)
    W = rng.random((20, 30)) * (rng.random((20, 30)) < 0.5)
    P = rng.random((20, 30)) < 0.3
    content = rng.random(30) < 0.8
    order = [[int(t) for t in np.argsort(-W[i], kind="stable") if W[i, t] > 0] for i in range(20)]
    want = term_precision(order, [set(np.nonzero(P[i])[0].tolist()) for i in range(20)], content, k=5)
    assert term_precision_csr(sp.csr_matrix(W), sp.csr_matrix(P.astype(np.float32)), content, k=5) == pytest.approx(
        want
    )
    assert term_precision_csr(sp.csr_matrix(W), sp.csr_matrix(W > 0), content) == 100.0  # every held term present


def _tiny(n_images: int = 10, n_terms: int = 8):
    """Every image holds terms 0 (heavier, never in its captions) and 1 (lighter, in every caption), and a
    term of its own (2 + i % 6) that its captions name: v7's failure in small, an odd term on top."""
    D = np.zeros((n_images, n_terms), np.float32)
    D[:, 0], D[:, 1] = 0.6, 0.4
    own = 2 + np.arange(n_images) % (n_terms - 2)
    D[np.arange(n_images), own] = 0.5
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n_images), 2)
    X = np.zeros((owner.size, n_terms), np.float32)
    X[:, 1] = 1.0
    X[np.arange(owner.size), own[owner]] = 1.0
    return sp.csr_matrix(X), owner, sp.csr_matrix(D), sp.csr_matrix((X / np.sqrt(2)).astype(np.float32))


def test_presence_loss_sends_gradient_to_the_scales_and_reorders_terms():
    X, owner, D, T = _tiny()
    cfg = QueryMapConfig(image_terms=True, w_presence=1.0, epochs=30, batch_size=8, lr=0.05, threads=1)
    trainer = QueryMapTrainer(cfg, X, owner, D, T, n_train=8)
    loss = trainer._presence_loss(np.arange(16))
    loss.backward()
    assert float(trainer.image_a.grad[0]) > 0 > float(trainer.image_a.grad[1])  # term 0 down, term 1 up
    trainer.image_a.grad = trainer.image_b.grad = None
    content = np.ones(8, bool)
    present = image_presence(X, owner, 10)
    before = term_precision_csr(trainer.documents()[8:], present[8:], content, k=1)
    trainer.fit()
    after = term_precision_csr(trainer.documents()[8:], present[8:], content, k=1)
    a = trainer.image_a.detach().numpy()
    assert before == 0.0 and after == 100.0 and a[1] > a[0]
    assert trainer.history[-1]["presence"] > 0


def test_presence_off_by_default_and_ignores_non_content_terms():
    X, owner, D, T = _tiny()
    cfg = QueryMapConfig(image_terms=True, epochs=1, batch_size=8, threads=1)
    trainer = QueryMapTrainer(cfg, X, owner, D, T, n_train=8)
    trainer.fit()
    assert trainer.history[-1]["presence"] == 0.0
    content = np.ones(8, bool)
    content[0] = False  # the odd term is not a content term: nothing for the loss to rank below term 1
    t = QueryMapTrainer(QueryMapConfig(image_terms=True, w_presence=1.0), X, owner, D, T, n_train=8, content=content)
    loss = t._presence_loss(np.arange(16))
    loss.backward()
    assert float(t.image_a.grad[0]) == 0.0


def test_presence_settings_are_checked(tmp_path):
    for bad, match in (({"w_presence": -1.0}, "loss weights"), ({"presence_temperature": 0.0}, "presence_temperature")):
        cfg = QueryMapConfig(data="captions.jsonl", image_terms=True, **bad)
        with pytest.raises(LexretError, match=match):
            train_query_map(cfg, tmp_path / "out")
    with pytest.raises(LexretError, match="add --image-terms"):  # it would have nothing to train
        train_query_map(QueryMapConfig(data="captions.jsonl", w_presence=1.0), tmp_path / "out")


def test_train_queries_with_presence_writes_a_model(mapped, tmp_path):  # noqa: F811
    """The CLI option reaches the config and the CPU path trains with it end to end."""
    from lexret.cli import build_parser

    root, base, _, _ = mapped
    out = tmp_path / "qm-presence"
    args = build_parser().parse_args([
        "train-queries", "--data", str(root / "captions.jsonl"), "--out", str(out), "--documents", str(base),
        "--cache-dir", str(root / "cache"), "--dev-items", "2", "--epochs", "2", "--image-terms",
        "--w-presence", "3", "--presence-temperature", "0.1", "--threads", "1",
    ])  # fmt: skip
    assert args.func(args) == 0
    conf = json.loads((out / "config.json").read_text())
    assert conf["training"]["w_presence"] == 3.0 and conf["training"]["presence_temperature"] == 0.1
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["presence"] > 0 and TermScales.load(out).terms.size > 0
