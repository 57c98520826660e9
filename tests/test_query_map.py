"""Inference-free query maps (``lexret.model.query_map``) and ``lexret train-queries``: queries by a
learned wordpiece -> terms map over a fixed sparse model's documents (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_color_collection

from lexret.encoders import SparseEncoder
from lexret.errors import LexretError
from lexret.model.backbones import text_tokenizer
from lexret.model.query_map import QueryMap
from lexret.training.config import QueryMapConfig, TrainConfig
from lexret.training.query_map import presence, train_query_map
from lexret.training.train import train

V = 30522


def _map() -> QueryMap:
    # wordpiece 10 -> {10: 1.0, 20: 0.5}; wordpiece 11 -> {20: 2.0}; wordpiece 12 -> nothing
    rows = np.array([[1.0, 0.5, 0.0], [0.0, 2.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    return QueryMap.from_dense(rows, np.array([10, 11, 12]), np.array([10, 20, 30]), V)


def test_query_vector_sums_the_rows_of_distinct_wordpieces():
    m = _map()
    assert m.nnz == 3  # the negative and zero entries are not stored
    t, w = m.vector(np.array([101, 10, 11, 11, 102]))  # [CLS]/[SEP] have no rows; 11 twice counts once
    assert t.tolist() == [10, 20] and np.allclose(w, [1.0, 2.5])
    t, w = m.vector(np.array([11]))
    assert t.tolist() == [20] and np.allclose(w, [2.0])
    t, w = m.vector(np.array([12, 5000]))
    assert t.size == 0 and w.size == 0


def test_from_dense_keeps_the_heaviest_per_row_and_round_trips(tmp_path):
    rows = np.array([[3.0, 1.0, 2.0]], np.float32)
    m = QueryMap.from_dense(rows, np.array([7]), np.array([1, 2, 3]), V, per_row=2)
    t, w = m.vector(np.array([7]))
    assert t.tolist() == [1, 3] and np.allclose(w, [3.0, 2.0])
    m.save(tmp_path)
    back = QueryMap.load(tmp_path)
    for a, b in zip(m.vector(np.array([7])), back.vector(np.array([7]))):
        np.testing.assert_allclose(a, b)


def test_diagonal_map_is_a_weight_table():
    table = np.zeros(V, np.float32)
    table[[5, 9]] = [0.5, 2.0]
    m = QueryMap.diagonal(table)
    t, w = m.vector(np.array([9, 5, 4]))
    assert t.tolist() == [5, 9] and np.allclose(w, [0.5, 2.0])


def test_bad_maps_are_refused(tmp_path):
    with pytest.raises(LexretError):
        QueryMap(np.array([0, 2]), np.array([0]), np.array([1.0]))  # indptr does not end at nnz
    with pytest.raises(LexretError):
        QueryMap(np.array([0, 1]), np.array([0]), np.array([-1.0]))  # negative weight
    with pytest.raises(LexretError, match="query map"):
        QueryMap.load(tmp_path)


def test_presence_counts_each_active_wordpiece_once():
    to_active = np.full(V, -1)
    to_active[[10, 11]] = [0, 1]
    x = presence(np.array([[101, 10, 10, 11, 102, 0], [101, 7, 102, 0, 0, 0]]), to_active, 2).toarray()
    assert x.tolist() == [[1.0, 1.0], [0.0, 0.0]]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A tiny sparse model with its own text network, and a query map trained over its documents."""
    root = tmp_path_factory.mktemp("tinyqm")
    write_color_collection(root, 12, 10)
    cfg = TrainConfig.from_dict(
        dict(
            kind="sparse", data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), epochs=1, batch_size=4,
            warmup_steps=1, flops_warmup_steps=2, mlm_batch=4, threads=2, mlm_warmup_steps=2, bottleneck=False,
            w_mlm=0.0, w_mlm_identity=0.0, top_k_image=8, top_k_text=6, select="last",
            model={"image_layers": 1, "image_ff": 64, "decoder_ff": 64, "decoder_layers": 1},
        )
    )  # fmt: skip
    base = root / "base"
    train(cfg, base)
    qcfg = QueryMapConfig(
        documents=str(base), data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), dev_items=2,
        epochs=2, batch_size=8, top_k_text=4, per_row=6, threads=2, model_id="tiny-querymap",
    )  # fmt: skip
    out = root / "qm"
    conf = train_query_map(qcfg, out)
    return root, base, out, conf


def test_train_queries_writes_a_loadable_folder(mapped):
    root, base, out, conf = mapped
    assert conf["query_map"]["documents_model_id"] == SparseEncoder.from_pretrained(base).model_id
    assert conf["top_k_text"] == 4 and conf["top_k_text_documents"] == 6
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert {"map top-16", "teacher", "own words x idf"} <= set(hist[-1]["dev"])
    enc = SparseEncoder.from_pretrained(out)
    assert enc.inference_free and enc.encoded_documents and enc.model_id == "tiny-querymap"
    caps = ["a red dog picture", "a blue car picture"]
    q = enc.encode_texts(caps)
    assert enc._text is None  # queries never went through the text network
    assert np.all(q.terms_per_row() <= 4) and np.all(q.terms_per_row() > 0)
    tok = text_tokenizer()
    for i, cap in enumerate(caps):  # each row is the map's sum over the caption's wordpieces, top-4, scaled
        t, w = enc.query_map.vector(np.array(tok(cap)["input_ids"]))
        top = np.sort(np.argsort(-w, kind="stable")[:4])
        idx, val = q.row(i)
        assert idx.tolist() == t[top].tolist()
        np.testing.assert_allclose(val, w[top] * 5.0 / np.linalg.norm(w[top]), rtol=1e-4)


def test_documents_are_those_of_the_documents_model(mapped):
    root, base, out, _ = mapped
    enc, ref = SparseEncoder.from_pretrained(out), SparseEncoder.from_pretrained(base)
    imgs = [root / "images" / f"{i}.jpg" for i in range(3)]
    a, b = enc.encode_images(imgs), ref.encode_images(imgs)
    assert a.indices.tolist() == b.indices.tolist() and np.allclose(a.values, b.values)
    caps = ["a red dog picture", "a green ball picture"]
    a, b = enc.encode_text_documents(caps), ref.encode_texts(caps)
    assert a.indices.tolist() == b.indices.tolist() and np.allclose(a.values, b.values)


def test_a_moved_or_other_documents_model_is_refused(mapped, tmp_path):
    _, _, out, _ = mapped
    cfg = json.loads((out / "config.json").read_text())
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in out.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    with pytest.raises(LexretError, match="is not at"):
        SparseEncoder.from_pretrained(moved)
    cfg["query_map"]["documents"] = str(out.parent / "base")
    cfg["query_map"]["documents_model_id"] = "another-model"
    (moved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LexretError, match="trained on 'another-model'"):
        SparseEncoder.from_pretrained(moved)


def test_train_queries_refuses_a_table_model_and_a_used_folder(mapped, tmp_path):
    root, base, out, _ = mapped
    with pytest.raises(LexretError, match="not an empty folder"):
        train_query_map(QueryMapConfig(documents=str(base), data=str(root / "captions.jsonl")), out)
    with pytest.raises(LexretError, match="temperature and lr"):
        bad = QueryMapConfig(documents=str(base), data=str(root / "captions.jsonl"), temperature=0)
        train_query_map(bad, tmp_path / "t")
    with pytest.raises(LexretError, match="not a sparse model with its own text network"):
        train_query_map(QueryMapConfig(documents=str(out), data=str(root / "captions.jsonl")), tmp_path / "x")


def test_cli_help_names_train_queries():
    from lexret.cli import build_parser

    text = build_parser().format_help()
    assert "train-queries" in text


def test_an_index_of_the_documents_model_takes_the_map_queries(mapped, tmp_path):
    from lexret.index_meta import QuerySpec
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.searcher import Searcher

    root, base, out, _ = mapped
    ref, enc = SparseEncoder.from_pretrained(base), SparseEncoder.from_pretrained(out)
    assert enc.index_model_id == ref.model_id != enc.model_id
    assert enc.metadata()["model_id"] == ref.model_id and enc.metadata()["encoder_model_id"] == enc.model_id
    ids = [f"img{i}" for i in range(10)]
    docs = ref.encode_images([root / "images" / f"{i}.jpg" for i in range(10)])
    Indexer(ref.vocab, IndexConfig()).build([(ids, docs)], tmp_path / "idx", IndexInfo(ref.model_id, "image"))
    with Searcher(tmp_path / "idx", enc.vocab, backend="lucene", expect=QuerySpec(enc.index_model_id)) as s:
        hits = s.search(["q"], enc.encode_texts(["a red dog picture"]), k=3)
    assert len(hits["q"]) == 3  # built by the documents' model, searched with the map's queries, no rebuild


def test_without_expansion_a_caption_keeps_its_own_words(mapped, tmp_path):
    root, base, _, _ = mapped
    qcfg = QueryMapConfig(
        documents=str(base), data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), dev_items=0,
        epochs=1, batch_size=8, threads=2, expansion=False,
    )  # fmt: skip
    train_query_map(qcfg, tmp_path / "diag")
    m = QueryMap.load(tmp_path / "diag")
    rows = np.repeat(np.arange(m.dim), np.diff(m.indptr))
    assert m.nnz > 0 and np.array_equal(rows, m.indices)  # each wordpiece maps to itself only
    assert (tmp_path / "diag" / "history.json").is_file()


SHIPPED = Path(__file__).resolve().parents[1] / "lexret" / "checkpoints"
SAMPLE = SHIPPED.parent / "resources" / "flickr8k_sample" / "captions.jsonl"


def test_shipped_query_map_model_queries_without_a_network_over_v7_documents():
    from lexret.data import load_captions

    enc = SparseEncoder.from_pretrained(SHIPPED / "sparse-querymap")
    v7 = SparseEncoder.from_pretrained(SHIPPED / "sparse")
    assert enc.inference_free and enc.index_model_id == v7.model_id
    coll = load_captions(SAMPLE, limit=3)
    q = enc.encode_texts(coll.captions)
    assert enc._text is None and np.all(q.terms_per_row() <= 16) and np.all(q.terms_per_row() > 0)
    # the documents are v7's: same image vectors, and each caption query scores its own image above zero
    a, b = enc.encode_images([it.image for it in coll.items]), v7.encode_images([it.image for it in coll.items])
    assert a.indices.tolist() == b.indices.tolist() and np.allclose(a.values, b.values)
    scores = (q.to_scipy() @ a.to_scipy().T).toarray()
    owner = coll.caption_owner
    assert np.all(scores[np.arange(len(owner)), owner] > 0)
    # expansion: the map adds terms the caption does not contain
    tok = text_tokenizer()
    own = set(tok(coll.captions[0])["input_ids"])
    assert set(q.row(0)[0].tolist()) - own


def test_fold_last_moves_a_folds_images_to_the_end():
    import scipy.sparse as sp

    from lexret.training.query_map import fold_last

    D = sp.csr_matrix(np.arange(6, dtype=np.float32)[:, None] + 1)  # image i has weight i + 1
    owner = np.array([0, 0, 1, 2, 3, 4, 5, 5])
    D2, owner2, n_train = fold_last(D, owner, 3, 1)  # fold 1 of 3: images 1 and 4
    assert n_train == 4
    assert D2.toarray().ravel().tolist() == [1, 3, 4, 6, 2, 5]
    np.testing.assert_array_equal(D2.toarray().ravel()[owner2], D.toarray().ravel()[owner])  # same owner images


def test_train_queries_cross_validation_holds_out_a_fold(mapped, tmp_path):
    root, base, _, _ = mapped
    common = dict(documents=str(base), data=str(root / "captions.jsonl"), cache_dir=str(root / "cache"), epochs=1,
                  batch_size=8, top_k_text=4, per_row=6, threads=2)  # fmt: skip
    with pytest.raises(LexretError, match="dev_items to 0"):
        train_query_map(QueryMapConfig(**common, cv_folds=3, cv_fold=1), tmp_path / "a")
    with pytest.raises(LexretError, match="cv_folds"):
        train_query_map(QueryMapConfig(**common, dev_items=0, cv_folds=3, cv_fold=3), tmp_path / "b")
    train_query_map(QueryMapConfig(**common, dev_items=0, cv_folds=3, cv_fold=1), tmp_path / "c")
    hist = json.loads((tmp_path / "c" / "history.json").read_text())
    assert hist[-1]["dev"]["teacher"]["t2i"] > 0  # the fold's 4 of 12 training images were the dev images
    from lexret.cli import main

    assert main(["train-queries", "--data", str(root / "captions.jsonl"), "--out", str(tmp_path / "d"),
                 "--documents", str(base), "--cache-dir", str(root / "cache"), "--epochs", "1", "--cv-folds", "3",
                 "--cv-fold", "2", "--threads", "2"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "d" / "config.json").read_text())["training"]["dev_items"] == 0
