"""The shipped checkpoints: encode a handful of sample images and captions; each caption finds
its own image by brute-force dot product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lexret.data import load_captions
from lexret.encoders import DenseEncoder, SparseEncoder, shipped_checkpoint
from lexret.types import SparseBatch

SAMPLE = Path(__file__).resolve().parents[1] / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"
N = 12


@pytest.fixture(scope="module")
def sample():
    coll = load_captions(SAMPLE, limit=N)
    return [it.image for it in coll.items], coll.captions, coll.caption_owner


@pytest.fixture(scope="module")
def sparse():
    return SparseEncoder.from_pretrained()


def _recall_at(scores: np.ndarray, owner: np.ndarray, k: int) -> float:
    own = scores[np.arange(len(owner)), owner]
    rank = (scores > own[:, None]).sum(1)
    return float(np.mean(rank < k))


def test_shipped_checkpoints_are_small_heads():
    """Each shipped checkpoint (the sparse one is an ensemble: its member folders count) stays under
    50 MiB, and both together under 60 MiB."""
    sizes = {
        kind: sum(f.stat().st_size for f in shipped_checkpoint(kind).rglob("*") if f.is_file())
        for kind in ("sparse", "dense")
    }
    assert max(sizes.values()) < 50 * 2**20 and sum(sizes.values()) < 60 * 2**20


def test_sparse_encoder_finds_own_image(sparse, sample):
    images, captions, owner = sample
    assert sparse.model_id.startswith("lexret-sparse") and len(sparse.vocab) == 30522
    assert (sparse.image_backbone_id, sparse.image_size) == ("efficientnet-lite0", 224)  # config names none
    d = sparse.encode_images(images, batch_size=5)
    q = sparse.encode_texts(captions, batch_size=16)
    assert isinstance(d, SparseBatch) and len(d) == N and len(q) == len(captions)
    assert d.values.dtype == np.float32 and (d.values > 0).all() and (q.values > 0).all()
    assert d.terms_per_row().max() <= sparse.top_k_doc == 48
    assert q.terms_per_row().max() <= sparse.top_k_query == 32
    scores = (q.to_scipy() @ d.to_scipy().T).toarray()
    assert _recall_at(scores, owner, 1) >= 0.6
    assert _recall_at(scores, owner, 3) >= 0.85


def test_sparse_decode_and_pil_input(sparse, sample):
    from PIL import Image

    images, captions, _ = sample
    a = sparse.encode_images([images[0]])
    b = sparse.encode_images([Image.open(images[0])])
    assert np.array_equal(a.indices, b.indices) and np.allclose(a.values, b.values)
    terms = sparse.decode(sparse.encode_texts(["a black dog runs on the grass"]), top=8)[0]
    assert len(terms) == 8 and {"black", "dog", "grass"} <= {t for t, _ in terms}
    assert all(w1 >= w2 for (_, w1), (_, w2) in zip(terms, terms[1:]))


def test_dense_encoder_finds_own_image(sample):
    images, captions, owner = sample
    enc = DenseEncoder.from_pretrained()
    d, q = enc.encode_images(images), enc.encode_texts(captions)
    assert d.shape == (N, enc.dim) and d.dtype == np.float32
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert _recall_at(q @ d.T, owner, 3) >= 0.85


def test_encoding_with_both_models_equals_each_alone(sparse, sample):
    from lexret.encoders import encode_images_both, encode_texts_both

    images, captions, _ = sample
    dense = DenseEncoder.from_pretrained()
    sp, de = encode_images_both(images, sparse, dense, batch_size=5)
    sp1 = sparse.encode_images(images, batch_size=5)
    assert np.array_equal(sp.indptr, sp1.indptr) and np.array_equal(sp.indices, sp1.indices)
    assert np.array_equal(sp.values, sp1.values) and np.array_equal(de, dense.encode_images(images, batch_size=5))
    tq, td = encode_texts_both(captions[:20], sparse, dense, batch_size=8)
    tq1 = sparse.encode_texts(captions[:20], batch_size=8)
    assert np.array_equal(tq.indices, tq1.indices) and np.array_equal(tq.values, tq1.values)
    assert np.array_equal(td, dense.encode_texts(captions[:20], batch_size=8))


def test_encoders_do_not_import_search_stack():
    import subprocess
    import sys

    code = (
        "import sys, lexret.encoders, lexret.commands.encode, lexret.commands.explain, lexret.commands.train;"
        "bad=[m for m in ('torch','pyserini','faiss','transformers') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_encode_and_explain(tmp_path, sample, capsys):
    import json
    import shutil

    from lexret.cli import main
    from lexret.vectors import read_vectors
    from lexret.vocab import default_vocabulary

    images, captions, _ = sample
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(images[0], folder / "a.jpg")
    shutil.copy(images[1], folder / "sub" / "b.jpg")
    out = tmp_path / "docs.jsonl"
    assert main(["encode", "--images", str(folder), "--out", str(out), "--batch-size", "2"]) == 0
    vs = read_vectors(out, default_vocabulary())
    ids, batch = vs.ids, vs.batch
    assert vs.meta["model_id"].startswith("lexret-sparse")
    assert ids == ["a.jpg", "sub/b.jpg"] and batch.terms_per_row().max() <= 64

    texts = tmp_path / "q.jsonl"
    texts.write_text(json.dumps({"id": "q1", "text": captions[0]}) + "\n" + json.dumps({"text": captions[1]}) + "\n")
    qout = tmp_path / "q_vectors.jsonl"
    assert main(["encode", "--texts", str(texts), "--out", str(qout)]) == 0
    first = json.loads(qout.read_text().splitlines()[0])
    assert first["id"] == "q1" and 0 < len(first["vector"]) <= 32

    assert main(["explain", str(images[0]), "--top", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("image:") and len(printed.strip().splitlines()) == 6
    assert main(["explain", "a dog", "--top", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "text"
    assert main(["explain", "missing.jpg"]) == 2
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    (folder / "bad.jpg").write_bytes(b"nope")
    assert main(["encode", "--images", str(folder), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert main(["encode", "--images", str(folder), "--out", str(tmp_path / "y.jsonl"), "--on-error", "skip"]) == 0


def test_cli_eval_end_to_end_with_top_k_override(tmp_path):
    """``lexret eval`` on a few sample images, sparse only, pruned to fewer terms than the model's
    default: the report holds both directions, the pruning it ran with and the costs."""
    import json

    from lexret.cli import main

    out = tmp_path / "report.json"
    args = ["-q", "eval", "--data", str(SAMPLE), "--limit", "8", "--no-dense", "--out", str(out)]
    assert main([*args, "--top-k-image", "8", "--top-k-text", "4", "--heap", "256m"]) == 0
    res = json.loads(out.read_text())["systems"]["sparse-lucene"]
    assert res["top_k"] == {"image": 8, "text": 4}
    assert 0 < res["avg_doc_terms"] <= 8 and 0 < res["avg_query_terms"] <= 4
    assert set(res["t2i"]) == {"R@1", "R@5", "R@10", "MRR@10"} and res["t2i"]["R@10"] >= 50
    assert res["index_bytes"] > 0 and res["search_ms"] > 0
    # the shipped model carries a caption-prior bank: captions are indexed with priors, and the same vectors
    # without them are reported beside (text->image is untouched by priors)
    prior, plain = res["caption_prior"], json.loads(out.read_text())["systems"]["sparse-lucene-no-prior"]
    assert prior["term"] == "[unused0]" and prior["bank_images"] == 1000 and prior["temperature"] > 0
    assert plain["t2i"] == res["t2i"] and plain["avg_caption_document_terms"] <= res["avg_caption_document_terms"]
    assert main([*args, "--top-k-image", "0"]) == 2


def test_prune_of_unpruned_vectors_equals_encoding_at_k(sparse, sample):
    images, captions, _ = sample
    full_t = sparse.encode_texts(captions[:10], top_k=0)
    full_i = sparse.encode_images(images[:4], top_k=0)
    assert full_t.terms_per_row().max() > 8
    for k in (3, 8):
        for full, direct in ((full_t, sparse.encode_texts(captions[:10], top_k=k)),
                             (full_i, sparse.encode_images(images[:4], top_k=k))):  # fmt: skip
            pruned = sparse.prune(full, k)
            assert np.array_equal(pruned.indptr, direct.indptr) and np.array_equal(pruned.indices, direct.indices)
            assert np.allclose(pruned.values, direct.values, rtol=1e-5)
    empty = SparseBatch.empty(2, len(sparse.vocab))
    assert sparse.prune(empty, 4).nnz == 0
