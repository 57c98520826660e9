"""`lexret eval` / `lexret compare` with `--ray` and `--shards`: Ray actors encode exactly what in-process
encoding gives (bit for bit, sparse and dense), and a sharded index measures the metrics of one index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lexret.cli import main

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"
N_ITEMS = 20


def _same(a, b) -> None:
    (sa, da), (sb, db) = a, b
    assert len(sa) == len(sb) and sa.dim == sb.dim
    for name in ("indptr", "indices", "values"):
        x, y = getattr(sa, name), getattr(sb, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (da is None) == (db is None)
    if da is not None:
        assert da.dtype == db.dtype == np.float32 and np.array_equal(da, db)


@pytest.fixture(scope="module")
def sample_items():
    from lexret.data import load_captions

    coll = load_captions(SAMPLE, limit=N_ITEMS)
    return [it.image for it in coll.items], coll.captions


def test_part_bounds_start_on_batch_boundaries() -> None:
    from lexret.distributed.encode_both import part_bounds

    assert part_bounds(100, 8, 4) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert part_bounds(5, 8, 4) == [(0, 5)]
    for n, bs, parts in ((1000, 32, 7), (33, 32, 8), (64, 64, 3)):
        bounds = part_bounds(n, bs, parts)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a % bs == 0 and b == c for (a, b), (c, _) in zip(bounds, bounds[1:]))


def test_ray_encoding_equals_in_process_bit_for_bit(ray_local, sample_items) -> None:
    from lexret.distributed.encode_both import RayEncode, RayEncoderPool
    from lexret.encoders import DenseEncoder, SparseEncoder, encode_side

    images, captions = sample_items
    sparse, dense = SparseEncoder.from_pretrained(), DenseEncoder.from_pretrained()
    sparse.top_k_doc, sparse.top_k_query = 40, 20  # eval's --top-k-image/--top-k-text: the actors apply them too
    # batches of 4: 5 image parts and 25 caption parts over 2 actors, taken as they come free
    with RayEncoderPool(sparse, dense, RayEncode("local", workers=2, cpus_per_worker=0.5)) as pool:
        for side, items in (("image", images), ("text", captions)):
            want = encode_side(side, items, sparse, dense, batch_size=4)
            got = pool.encode(side, items, batch_size=4)
            _same(got, want)
            assert got[0].terms_per_row().max() == (40 if side == "image" else 20)
        pool.dense = None  # the sparse model alone (its own encode_images / encode_texts) in the same actors
        _same(pool.encode("image", images, batch_size=8), encode_side("image", images, sparse, batch_size=8))
        _same(pool.encode("text", captions, batch_size=8), encode_side("text", captions, sparse, batch_size=8))


def test_ray_encoding_of_an_inference_free_model_equals_in_process(ray_local, sample_items) -> None:
    from lexret.distributed.encode_both import RayEncode, RayEncoderPool
    from lexret.encoders import CHECKPOINTS, SparseEncoder, encode_side

    _, captions = sample_items
    sparse = SparseEncoder.from_pretrained(CHECKPOINTS / "sparse-if")
    assert sparse.inference_free  # texts need only the tokenizer and the weight table
    sparse.top_k_query = 6
    with RayEncoderPool(sparse, None, RayEncode("local", workers=1, cpus_per_worker=0.5)) as pool:
        got = pool.encode("text", captions, batch_size=16)
    _same(got, encode_side("text", captions, sparse, batch_size=16))
    assert got[0].terms_per_row().max() == 6


def _eval(tmp_path: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    args = ["eval", "--data", str(SAMPLE), "--limit", "12", "--no-dense", "--out", str(out), *extra]
    assert main(args) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def plain_eval(tmp_path_factory) -> dict:
    """The single-index eval the sharded ones must match."""
    return _eval(tmp_path_factory.mktemp("plain"), "plain")["systems"]["sparse-lucene"]


def test_eval_sharded_gives_the_single_index_metrics(tmp_path: Path, plain_eval) -> None:
    plain = plain_eval
    report = _eval(tmp_path, "sharded", "--shards", "3")
    sharded = report["systems"]["sparse-lucene-sharded"]
    assert report["scaleout"] == {"ray": None, "shards": 3, "workers": None}
    assert sharded["shards"] == 3 and sharded["ray"] is None
    for key in ("t2i", "i2t", "rsum", "avg_doc_terms", "avg_query_terms"):
        assert sharded[key] == plain[key], key
    assert plain["t2i"]["R@10"] > 50  # a real ranking, not an empty one


def test_eval_ray_encodes_and_searches_the_shards_on_ray(ray_local, tmp_path: Path, plain_eval) -> None:
    plain = plain_eval
    report = _eval(tmp_path, "ray", "--shards", "2", "--ray", "local", "--workers", "1", "--cpus-per-worker", "0.5")
    sharded = report["systems"]["sparse-lucene-sharded"]
    assert report["scaleout"] == {"ray": "local", "shards": 2, "workers": 1}
    assert sharded["ray"] == "local"
    for key in ("t2i", "i2t", "rsum", "avg_doc_terms", "avg_query_terms", "term_precision@10"):
        assert sharded[key] == plain[key], key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "add --ray"),
        (["--shards", "0"], "--shards must be between 1 and"),
        (["--shards", "13"], "more than the split's 12 images"),
        (["--ray", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    ],
)
def test_eval_refuses_bad_scaleout_flags_in_one_line(tmp_path: Path, caplog, extra, message) -> None:
    out = tmp_path / "r.json"
    assert main(["eval", "--data", str(SAMPLE), "--limit", "12", "--no-dense", "--out", str(out), *extra]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(message in e and "\n" not in e for e in errors), errors
    assert not out.exists()


def test_compare_refuses_a_sharded_system_without_shards(tmp_path: Path, caplog) -> None:
    args = ["compare", "--data", str(SAMPLE), "--distractors", "10", "--out", str(tmp_path / "c"),
            "--systems", "sparse-exact,sparse-lucene-sharded"]  # fmt: skip
    assert main(args) == 2
    assert "sparse-lucene-sharded needs a shard count: add --shards N" in caplog.text
