"""Inference-free sparse text side (own wordpieces x a learned table) and the posting-length-aware
regularisers (DF-FLOPS, per-document budget) of issue 17."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_color_collection

from lexret.encoders import SparseEncoder
from lexret.errors import LexretError
from lexret.model.backbones import text_tokenizer, word_embeddings
from lexret.model.sparse import SparseLexModel, SparseModelConfig
from lexret.training.config import TrainConfig
from lexret.training.losses import (
    DocFrequency,
    budget_penalty,
    df_flops,
    df_weights,
    flops,
    idf_table,
)
from lexret.training.train import postings_per_query, train
from lexret.vocab import default_vocabulary


def _model(words: list[str]) -> SparseLexModel:
    vocab = default_vocabulary()
    active = torch.tensor(sorted(vocab.tokens.index(w) for w in words))
    cfg = SparseModelConfig(image_layers=1, image_ff=32, decoder_ff=32, decoder_layers=1, inference_free=True)
    return SparseLexModel(cfg, word_embeddings(), active)


def test_query_vector_is_own_tokens_times_table():
    words = ["dog", "beach", "red", "ball"]
    m = _model(words)
    vocab = default_vocabulary()
    col = {int(t): j for j, t in enumerate(m.active.tolist())}
    with torch.no_grad():
        for w, x in zip(words, (0.5, 2.0, -1.0, 3.0)):
            m.query_weights[col[vocab.tokens.index(w)]] = x
    tok = text_tokenizer()
    ids = tok(["the dog and the dog on a beach .", "a red cat"], padding=True, return_tensors="pt")["input_ids"]
    v = m.query_vectors(ids)
    table = torch.relu(m.query_weights.detach())
    want0 = torch.zeros(4)
    for w in ("dog", "beach"):  # 'dog' twice counts once; stopwords and '.' are not active
        j = col[vocab.tokens.index(w)]
        want0[j] = table[j]
    assert torch.equal(v[0], want0)
    # 'red' has a negative raw weight: relu makes it absent; 'cat' is not an active term
    assert torch.count_nonzero(v[1]) == 0


def test_df_weights_grow_with_document_frequency():
    df = torch.tensor([0.0, 0.005, 0.02, 0.05, 0.3])
    w = df_weights(df, alpha=0.02, beta=100.0)
    assert torch.all(w[1:] > w[:-1])
    assert w[2] == pytest.approx(0.5)
    with pytest.raises(LexretError):
        df_weights(df, alpha=0.0, beta=1.0)


def test_df_flops_penalises_frequent_terms_more():
    v = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])  # term 0 in every row, term 1 in half
    w = df_weights((v > 0).float().mean(0), alpha=0.6, beta=20.0)
    assert w[0] > w[1]
    assert df_flops(v, torch.ones(2)) == pytest.approx(float(flops(v)))
    # moving the same mass from the frequent to the rare term lowers the DF-weighted penalty
    shifted = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert df_flops(shifted, w) < df_flops(v, w)


def test_doc_frequency_is_a_running_share():
    df = DocFrequency(3, momentum=0.5)
    first = df.update(torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])).clone()
    assert torch.equal(first, torch.tensor([1.0, 0.5, 0.0]))
    second = df.update(torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]))
    assert torch.allclose(second, torch.tensor([0.5, 0.75, 0.25]))


def test_budget_penalty_only_beyond_the_budget():
    v = torch.tensor([[3.0, 2.0, 0.0, 0.0], [3.0, 2.0, 1.0, 0.5]], requires_grad=True)
    p = budget_penalty(v, 2)
    assert float(p.detach()) == pytest.approx((0.0 + 1.5) / 2)
    p.backward()
    assert torch.equal(v.grad, torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]))
    assert float(budget_penalty(v, 4)) == 0.0


def test_idf_table_rarer_terms_weigh_more():
    # 3 active terms (ids 5, 6, 7 -> 0, 1, 2); term 0 in all 4 texts, term 1 in one, term 2 in none
    to_active = np.full(10, -1)
    to_active[[5, 6, 7]] = [0, 1, 2]
    ids = np.array([[5, 5, 0], [5, 6, 0], [5, 9, 0], [5, 0, 0]])
    idf = idf_table(ids, to_active, 3)
    assert idf[0] < idf[1] < idf[2]
    assert idf[0] == pytest.approx(np.log1p(0.5 / 4.5))


def test_postings_per_query_sums_document_frequencies():
    images = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])  # df = 1, 0.5, 0.5
    queries = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])  # reads 1.0 and 0.5 + 0.5 of the collection
    assert postings_per_query(images, queries, 1000) == pytest.approx(1000.0)


@pytest.fixture(scope="module")
def inference_free_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinyif")
    write_color_collection(root, 10, 8)
    cfg = TrainConfig.from_dict(
        dict(
            kind="sparse",
            data=str(root / "captions.jsonl"),
            cache_dir=str(root / "cache"),
            epochs=2,
            batch_size=4,
            warmup_steps=1,
            flops_warmup_steps=2,
            mlm_batch=4,
            threads=2,
            mlm_warmup_steps=2,
            inference_free=True,
            df_flops=True,
            df_alpha=0.3,
            doc_budget=8,
            w_budget=0.1,
            bottleneck=False,
            w_mlm=0.0,
            w_mlm_identity=0.0,
            top_k_image=8,
            select="last",
            model={"image_layers": 1, "image_ff": 64, "decoder_ff": 64, "decoder_layers": 1},
        )
    )
    out = root / "model"
    metrics = train(cfg, out)
    return out, metrics


def test_inference_free_training_and_encoder(inference_free_run):
    out, metrics = inference_free_run
    assert metrics["best_epoch"] == 2  # select: last
    assert "postings_per_query_1m_est" in metrics["val"]
    enc = SparseEncoder.from_pretrained(out)
    assert enc.inference_free
    texts = ["A red dog , a red ball .", "the of and", ""]
    q = enc.encode_texts(texts)
    assert enc._text is None  # no text network was loaded
    table = enc.query_weights()
    vocab = enc.vocab
    idx, val = q.row(0)
    want = sorted(vocab.tokens.index(w) for w in ("red", "dog", "ball") if table[vocab.tokens.index(w)] > 0)
    assert idx.tolist() == want
    w = table[np.array(want)]
    np.testing.assert_allclose(val, w * enc._scale / np.linalg.norm(w), rtol=1e-5)
    assert q.row(1)[0].size == 0 and q.row(2)[0].size == 0  # stopwords only / empty: no terms
    # the table is the trained (moved) one, initialised from IDF
    state = enc.model.state_dict()
    assert "query_weights" in state
    docs = enc.encode_images([out.parent / "images" / "0.jpg"])
    assert 0 < docs.terms_per_row()[0] <= 8


def test_cross_validation_holds_out_a_fold_of_training_images(inference_free_run):
    from lexret.training.train import prepare_data

    out, _ = inference_free_run
    root = out.parent
    base = dict(kind="sparse", data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"))
    full = prepare_data(TrainConfig.from_dict(base), root / "x")
    cv = prepare_data(TrainConfig.from_dict({**base, "cv_folds": 2, "cv_fold": 1}), root / "x")
    assert (cv.n_train, cv.n_val) == (4, 4)  # the 8 training images; the 2 val images are left out
    held = [1, 3, 5, 7]
    np.testing.assert_array_equal(cv.cache.images[cv.n_train :], full.cache.images[held])
    for j, i in enumerate(held):
        mine = cv.cache.text_ids[cv.cap_index[cv.n_train + j]]
        want = full.cache.text_ids[full.cap_index[i]]
        assert sorted(map(tuple, mine.tolist())) == sorted(map(tuple, want.tolist()))
    assert (cv.cache.caption_owner[: cv.n_train_caps] < cv.n_train).all()  # training captions come first
    # masked copies still belong to the caption they were made from
    orig = full.cache.text_ids[full.cache.mlm_caption]
    lab = full.cache.mlm_labels
    restored = np.where(lab >= 0, lab, full.cache.mlm_ids)
    assert np.array_equal(restored[:, : orig.shape[1]], orig)
    lab_cv = cv.cache.mlm_labels
    restored_cv = np.where(lab_cv >= 0, lab_cv, cv.cache.mlm_ids)
    assert np.array_equal(restored_cv, cv.cache.text_ids[cv.cache.mlm_caption])
    with pytest.raises(LexretError):
        TrainConfig.from_dict({**base, "cv_folds": 2, "cv_fold": 2})


def test_cv_split_tool_names_the_images_a_fold_holds_out(inference_free_run, tmp_path):
    """tools/cv_split.py writes fold F as the images `lexret train --cv-fold F` holds out."""
    import importlib.util

    from lexret.data import load_captions

    out, _ = inference_free_run
    data = out.parent / "captions.jsonl"
    tool_path = Path(__file__).resolve().parent.parent / "tools" / "cv_split.py"
    spec = importlib.util.spec_from_file_location("cv_split", tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--data", str(data), "--folds", "2", "--out", str(tmp_path / "folds.jsonl")]) == 0
    train = load_captions(str(data), split="train").items
    fold1 = load_captions(str(tmp_path / "folds.jsonl"), split="fold1").items
    assert [it.image.resolve() for it in fold1] == [train[i].image.resolve() for i in (1, 3, 5, 7)]
    assert [it.captions for it in fold1] == [train[i].captions for i in (1, 3, 5, 7)]
    with pytest.raises(LexretError):
        tool.fold_rows(str(data), "train", 1)
    # --rest-of: the images a fold's models trained on, as split train (for tools that read those)
    rest = tmp_path / "rest1.jsonl"
    assert tool.main(["--data", str(data), "--folds", "2", "--rest-of", "1", "--out", str(rest)]) == 0
    kept = load_captions(str(rest), split="train").items
    assert [it.image.resolve() for it in kept] == [train[i].image.resolve() for i in range(0, len(train), 2)]
    assert tool.main(["--data", str(data), "--folds", "2", "--rest-of", "2", "--out", str(rest)]) == 2


def test_train_command_checks_its_fold_overrides(tmp_path):
    """`lexret train --cv-fold` outside the config's folds is refused before any training."""
    from lexret.cli import main

    cfg = tmp_path / "cv.yaml"
    cfg.write_text("kind: dense\ncv_folds: 2\n")
    with pytest.raises(LexretError, match="cv_fold"):
        main(["--debug", "train", "--config", str(cfg), "--cv-fold", "2", "--out", str(tmp_path / "x")])
    cfg.write_text("kind: dense\n")
    with pytest.raises(LexretError, match="cv_fold"):
        main(["--debug", "train", "--config", str(cfg), "--cv-fold", "3", "--cv-folds", "3", "--out", str(tmp_path)])
    assert not (tmp_path / "x").exists()


def test_train_command_names_a_folds_model(monkeypatch, tmp_path):
    """`lexret train --cv-fold F` gives the fold's model its own id (indexes and caches stay apart)."""
    import lexret.training.train as train_module
    from lexret.cli import main

    seen = {}

    def fake_train(cfg, out):
        seen["cfg"] = cfg
        return {"val": {"rsum": 1.0}, "best_epoch": 1, "train_minutes": 0.0}

    monkeypatch.setattr(train_module, "train", fake_train)
    cfg = tmp_path / "cv.yaml"
    cfg.write_text("kind: dense\nmodel_id: m\ncv_folds: 3\n")
    assert main(["train", "--config", str(cfg), "--cv-fold", "2", "--distill-from", "d", "--out", str(tmp_path)]) == 0
    assert (seen["cfg"].model_id, seen["cfg"].cv_fold, seen["cfg"].distill_from) == ("m-fold2", 2, "d")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path)]) == 0
    assert seen["cfg"].model_id == "m"


def test_minutes_schedule_decays_with_wall_time():
    from lexret.training.train import _lr_lambda

    now = [100.0]
    cfg = TrainConfig.from_dict({"schedule": "minutes", "max_minutes": 10.0, "warmup_steps": 2})
    f = _lr_lambda(cfg, total=1000, clock=lambda: now[0])
    assert f(0) == pytest.approx(0.5)  # warm-up by steps
    assert f(5) == pytest.approx(1.0)
    now[0] += 300.0  # half of max_minutes
    assert f(6) == pytest.approx(0.5)
    now[0] += 600.0
    assert f(7) == pytest.approx(0.0)


SHIPPED_IF = Path(__file__).resolve().parents[1] / "lexret" / "checkpoints" / "sparse-if"
SAMPLE = Path(__file__).resolve().parents[1] / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"


def test_shipped_inference_free_model_encodes_the_sample():
    from lexret.data import load_captions

    enc = SparseEncoder.from_pretrained(SHIPPED_IF)
    assert enc.inference_free and enc.encoded_documents and enc.model_id == "lexret-sparse-if-lite0-v2-fp16"
    coll = load_captions(SAMPLE, limit=3)
    docs = enc.encode_images([it.image for it in coll.items])
    assert np.all(docs.terms_per_row() > 0) and np.all(docs.terms_per_row() <= 48)
    q = enc.encode_texts(coll.captions)
    assert enc._text is None  # captions never went through a network
    table = enc.query_weights()
    tok = text_tokenizer()
    for i, cap in enumerate(coll.captions):
        own = set(tok(cap, truncation=True, max_length=48)["input_ids"])
        want = sorted(t for t in own if table[t] > 0)
        idx, val = q.row(i)
        assert idx.tolist() == want  # a caption's terms are exactly its own weighted wordpieces
        np.testing.assert_allclose(val, table[idx] * 5.0 / np.linalg.norm(table[idx]), rtol=1e-5)
    # image -> text: captions as documents go through the text network (expanded, up to 32 terms), and
    # each image shares terms with its own captions' documents
    cap_docs = enc.encode_text_documents(coll.captions)
    assert cap_docs.terms_per_row().mean() > q.terms_per_row().mean()
    scores = (docs.to_scipy() @ cap_docs.to_scipy().T).toarray()
    owner = np.repeat(np.arange(len(coll.items)), [len(it.captions) for it in coll.items])
    assert all(scores[i, owner == i].max() > 0 for i in range(len(coll.items)))


def _encoded_documents_config(root: Path) -> TrainConfig:
    """A one-epoch caption_documents: encoder run on the tiny collection (and cache) of ``inference_free_run``."""
    return TrainConfig.from_dict(
        dict(
            kind="sparse", data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), epochs=1, batch_size=4,
            warmup_steps=1, flops_warmup_steps=2, mlm_batch=4, threads=2, mlm_warmup_steps=2, inference_free=True,
            caption_documents="encoder", bottleneck=False, top_k_image=8, select="last",
            model={"image_layers": 1, "image_ff": 64, "decoder_ff": 64, "decoder_layers": 1},
        )
    )  # fmt: skip


def test_encoded_caption_documents_train_both_directions(tmp_path, inference_free_run):
    """caption_documents: encoder trains inference-free caption queries (t2i) beside network-encoded caption
    documents (i2t); validation scores each direction on its own vectors and the checkpoint keeps both."""
    from lexret.model.checkpoint import load_model

    model_dir, _ = inference_free_run
    cfg = _encoded_documents_config(model_dir.parent)
    metrics = train(cfg, tmp_path / "m")
    val = metrics["val"]
    assert val["terms_per_caption_document"] > 0
    assert val["rsum"] == pytest.approx(sum(v for k, v in val.items() if "R@" in k))
    model, saved = load_model(tmp_path / "m")
    assert model.cfg.inference_free and model.cfg.encoded_documents and saved["caption_documents"] == "encoder"


def test_caption_documents_encoder_needs_an_inference_free_model():
    with pytest.raises(LexretError, match="stop_epoch"):
        TrainConfig.from_dict({"kind": "sparse", "epochs": 3, "stop_epoch": 4})
    with pytest.raises(LexretError, match="caption_documents"):
        TrainConfig.from_dict({"kind": "sparse", "caption_documents": "encoder"})
    with pytest.raises(LexretError, match="caption_documents"):
        TrainConfig.from_dict({"kind": "sparse", "inference_free": True, "caption_documents": "both"})


def test_encoded_documents_model_encodes_queries_by_table_and_documents_by_network(tmp_path, inference_free_run):
    """An inference-free model trained with caption_documents: encoder: queries are table lookups (no
    text network), documents go through the network, in the encoder, `lexret encode --as-documents`
    and their fingerprints."""
    model_dir, _ = inference_free_run
    cfg = _encoded_documents_config(model_dir.parent)
    metrics = train(cfg.replace(epochs=2, stop_epoch=1), tmp_path / "m")
    assert metrics["best_epoch"] == 1 and metrics["stopped_early"]  # the first epoch of a 2-epoch schedule
    enc = SparseEncoder.from_pretrained(tmp_path / "m")
    assert enc.inference_free and enc.encoded_documents
    texts = ["a red dog picture", "a blue car picture"]
    queries, docs = enc.encode_texts(texts), enc.encode_text_documents(texts)
    assert [t for t, _ in enc.decode(queries)[0]] and set(queries.row(0)[0].tolist()) <= set(
        enc.tokenizer("a red dog picture")["input_ids"]
    )
    assert not np.array_equal(docs.to_dense(), queries.to_dense())  # expanded by the network
    from lexret.cli import main

    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n")
    assert main(["encode", "--texts", str(src), "--out", str(tmp_path / "q.npz"), "--model", str(tmp_path / "m")]) == 0
    assert main(["encode", "--texts", str(src), "--out", str(tmp_path / "d.npz"), "--model", str(tmp_path / "m"),
                 "--as-documents"]) == 0  # fmt: skip
    from lexret.vectors import read_vectors

    vocab = default_vocabulary()
    got_q, got_d = read_vectors(tmp_path / "q.npz", vocab).batch, read_vectors(tmp_path / "d.npz", vocab).batch
    np.testing.assert_allclose(got_q.to_dense(), queries.to_dense(), rtol=1e-6)
    np.testing.assert_allclose(got_d.to_dense(), docs.to_dense(), rtol=1e-5, atol=1e-6)
    bad = ["encode", "--images", str(model_dir.parent / "images"), "--out", str(tmp_path / "x.npz"), "--as-documents"]
    assert main(bad) != 0 and not (tmp_path / "x.npz").exists()
