"""A few training steps on CPU on a tiny generated collection; checkpoint round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lexret.encoders import DenseEncoder, SparseEncoder
from lexret.errors import LexretError
from lexret.training.config import TrainConfig
from lexret.training.train import PairSampler, flip_patch_grid, info_nce, prepare_data, same_image_mask, train

WORDS = ["red", "blue", "green", "yellow", "dog", "cat", "ball", "car"]


@pytest.fixture(scope="module")
def tiny_collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    colors = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 230, 30)}
    lines = []
    for i in range(10):
        cname = list(colors)[i % 4]
        arr = np.clip(np.array(colors[cname]) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "images" / f"{i}.jpg")
        caps = [f"a {cname} {WORDS[4 + (i + j) % 4]} picture" for j in range(3)]
        lines.append({"image": f"images/{i}.jpg", "captions": caps, "split": "train" if i < 8 else "val"})
    (root / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def _cfg(root, kind, **kw):
    base = dict(
        kind=kind,
        data=str(root / "captions.jsonl"),
        cache_dir=str(root / "cache"),
        epochs=2,
        batch_size=4,
        warmup_steps=1,
        flops_warmup_steps=2,
        mlm_batch=4,
        threads=2,
    )
    if kind == "sparse":
        base["model"] = {"image_layers": 1, "image_ff": 64, "decoder_ff": 64, "decoder_layers": 1}
    base.update(kw)
    return TrainConfig.from_dict(base)


@pytest.fixture(scope="module")
def sparse_run(tiny_collection):
    cfg = _cfg(tiny_collection, "sparse")
    out = tiny_collection / "sparse"
    data = prepare_data(cfg, out)
    before = {
        k: v.clone()
        for k, v in __import__("lexret.training.train", fromlist=["x"])
        .SparseTrainer(cfg, data)
        .model.state_dict()
        .items()
    }
    metrics = train(cfg, out, data)
    return cfg, out, data, metrics, before


def test_sparse_training_writes_checkpoint(sparse_run):
    cfg, out, data, metrics, _ = sparse_run
    for f in (
        "model.safetensors",
        "config.json",
        "model_id",
        "vocab_hash",
        "metrics.json",
        "curves.png",
        "history.json",
    ):
        assert (out / f).is_file(), f
    assert (out / "model_id").read_text().strip() == "lexret-sparse-lite0-minilm-v1"
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 2 and all(np.isfinite(h["total"]) for h in hist)
    assert {"contrastive", "mlm", "bn_i2t", "bn_t2t", "flops_image", "flops_text"} <= set(hist[0])
    assert "rsum" in metrics["val"] and "term_precision@10" in metrics["val"]
    # heads only: no backbone or embedding matrix in the weights file
    from safetensors.torch import load_file

    keys = load_file(str(out / "model.safetensors")).keys()
    assert not any("E_full" in k or "E_active" in k or "net." in k for k in keys)


def test_checkpoint_round_trip_reproduces_vectors(sparse_run, tiny_collection):
    cfg, out, data, _, _ = sparse_run
    a = SparseEncoder.from_pretrained(out)
    b = SparseEncoder.from_pretrained(out)
    imgs = [tiny_collection / "images" / f"{i}.jpg" for i in range(3)]
    va, vb = a.encode_images(imgs), b.encode_images(imgs)
    assert np.array_equal(va.indices, vb.indices) and np.array_equal(va.values, vb.values)
    ta, tb = a.encode_texts(["a red dog"]), b.encode_texts(["a red dog"])
    assert np.array_equal(ta.values, tb.values) and np.array_equal(ta.indices, tb.indices)
    assert va.values.dtype == np.float32 and (va.values > 0).all()
    assert (va.terms_per_row() <= a.top_k_doc).all() and (ta.terms_per_row() <= a.top_k_query).all()
    # raw-image encoding equals encoding from the training-time cached features
    with torch.no_grad():
        feats = torch.from_numpy(np.asarray(data.cache.images[:3], dtype=np.float32))
        cached, _ = a.model.encode_patches(feats)
    raw = a.model.encode_patches(a._image_features(imgs))[0].detach()
    assert torch.allclose(cached, raw, atol=1e-2)
    assert all(isinstance(t, str) and w > 0 for t, w in a.decode(va, top=5)[0])


def test_training_updates_weights(sparse_run):
    _, out, _, _, before = sparse_run
    from safetensors.torch import load_file

    after = load_file(str(out / "model.safetensors"))
    assert torch.equal(after["active"], before["active"])
    assert not torch.equal(after["image_head.bias"], before["image_head.bias"])


def test_dense_training_and_encoder(tiny_collection):
    cfg = _cfg(tiny_collection, "dense", model={"hidden": 32, "dim": 16})
    out = tiny_collection / "dense"
    metrics = train(cfg, out)
    assert metrics["kind"] == "dense" and metrics["val"]["rsum"] >= 0
    enc = DenseEncoder.from_pretrained(out)
    v = enc.encode_texts(["a red dog", "a blue cat"])
    assert v.shape == (2, 16) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    with pytest.raises(LexretError, match="not a sparse"):
        SparseEncoder.from_pretrained(out)


def test_distillation_from_dense_teacher(tiny_collection, sparse_run):
    from lexret.training.train import DenseTeacher, distill_loss

    teacher_dir = tiny_collection / "teacher"
    train(_cfg(tiny_collection, "dense", epochs=1, model={"hidden": 32, "dim": 16}), teacher_dir)
    cfg = _cfg(tiny_collection, "sparse", epochs=1, distill_from=str(teacher_dir), w_distill=1.0)
    out = tiny_collection / "distilled"
    train(cfg, out)
    hist = json.loads((out / "history.json").read_text())
    assert "distill" in hist[0] and np.isfinite(hist[0]["distill"]) and hist[0]["distill"] >= 0
    # the loss is a KL divergence: zero when student and teacher agree, positive otherwise
    t = torch.randn(4, 4)
    assert float(distill_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(-t, t)) > 0.1
    # the teacher's scores are its own cosine / temperature on the cached features
    data = sparse_run[2]
    teacher = DenseTeacher(teacher_dir, data)
    items, caps = np.array([0, 1]), np.array([data.cap_index[0][0], data.cap_index[1][0]])
    enc = DenseEncoder.from_pretrained(teacher_dir)
    raw = torch.from_numpy(
        enc.encode_images([tiny_collection / "images" / "0.jpg", tiny_collection / "images" / "1.jpg"])
    )
    assert torch.allclose(teacher.img[:2], raw, atol=1e-2)
    logits = teacher.logits(items, caps)
    assert logits.shape == (2, 2)
    assert torch.allclose(logits, teacher.img[:2] @ teacher.txt[torch.from_numpy(caps)].T / teacher.temperature)
    with pytest.raises(LexretError, match="give a dense one"):
        DenseTeacher(sparse_run[1], data)
    with pytest.raises(LexretError, match="not found .*working directory"):
        DenseTeacher(tiny_collection / "no-such-teacher", data)


def test_config_errors(tmp_path):
    with pytest.raises(LexretError, match="unknown option"):
        TrainConfig.from_dict({"kind": "sparse", "epoch": 3})
    with pytest.raises(LexretError, match="kind must be"):
        TrainConfig.from_dict({"kind": "other"})
    with pytest.raises(LexretError, match="needs distill_from"):
        TrainConfig.from_dict({"kind": "sparse", "w_distill": 1.0})
    with pytest.raises(LexretError, match="ema is a decay"):
        TrainConfig.from_dict({"kind": "sparse", "ema": 1.0})
    with pytest.raises(LexretError, match="patch_flip is a probability"):
        TrainConfig.from_dict({"kind": "sparse", "patch_flip": 1.5})
    p = tmp_path / "c.yaml"
    p.write_text("kind: dense\nepochs: 3\n")
    cfg = TrainConfig.from_yaml(p)
    assert cfg.epochs == 3 and cfg.name == "c" and cfg.model_id == "lexret-dense-lite0-minilm-v1"


def test_config_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("kind: sparse\nepochs: 7\nmodel:\n  image_layers: 1\n  image_ff: 64\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "abl.yaml").write_text("base: ../base.yaml\nw_flops_image: 0.0\nmodel:\n  image_ff: 32\n")
    cfg = TrainConfig.from_yaml(tmp_path / "sub" / "abl.yaml")
    assert cfg.epochs == 7 and cfg.w_flops_image == 0.0 and cfg.model == {"image_layers": 1, "image_ff": 32}


def test_flip_patch_grid_mirrors_columns_of_chosen_rows():
    x = torch.arange(2 * 49 * 3, dtype=torch.float32).view(2, 49, 3)
    y = flip_patch_grid(x, torch.tensor([True, False]))
    assert torch.equal(y[1], x[1])
    grid, fgrid = x[0].view(7, 7, 3), y[0].view(7, 7, 3)
    for r in range(7):
        for c in range(7):
            assert torch.equal(fgrid[r, c], grid[r, 6 - c])
    assert torch.equal(flip_patch_grid(y, torch.tensor([True, False])), x)
    with pytest.raises(LexretError, match="square"):
        flip_patch_grid(torch.zeros(1, 50, 3), torch.tensor([True]))


def test_sparse_training_with_ema_and_patch_flip(tiny_collection, tmp_path):
    cfg = _cfg(tiny_collection, "sparse", epochs=1, ema=0.9, patch_flip=0.5, mlm_warmup_steps=2)
    metrics = train(cfg, tmp_path / "ema")
    assert metrics["best_epoch"] == 1 and "rsum" in metrics["val"]
    saved = json.loads((tmp_path / "ema" / "config.json").read_text())
    assert saved["ema"] == 0.9 and saved["patch_flip"] == 0.5


def test_caption_pairs_visit_every_caption_equally(sparse_run):
    _, _, data, _, _ = sparse_run
    owner = data.cache.caption_owner
    train_caps = np.nonzero(owner < data.n_train)[0]
    s = PairSampler(data, "caption", 4, np.random.default_rng(0))
    seen = []
    for _ in range(len(train_caps) // 2):  # 2 epochs of 2 batches of 4 = 16 pairs per 2 epochs
        for items, caps in s.epoch():
            assert len(caps) == 4 and np.array_equal(items, owner[caps])
            seen.extend(caps.tolist())
    counts = np.bincount(seen, minlength=owner.size)[train_caps]
    assert counts.min() >= counts.max() - 1 and counts.sum() == len(seen)
    img = PairSampler(data, "image", 4, np.random.default_rng(0))
    batches = list(img.epoch())
    assert len(batches) == data.n_train // 4
    for items, caps in batches:
        assert len(set(items.tolist())) == 4 and np.array_equal(owner[caps], items)


def test_duplicate_images_are_not_negatives():
    torch.manual_seed(0)
    items = np.array([3, 5, 3, 7])
    same = same_image_mask(items)
    assert same.tolist() == [
        [False, False, True, False], [False, False, False, False], [True, False, False, False],
        [False, False, False, False],
    ]  # fmt: skip
    assert same_image_mask(np.array([1, 2, 3])) is None
    a, b = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), torch.nn.functional.normalize(torch.randn(4, 8))
    t = torch.tensor(0.1)
    # pair 2 (a duplicate of pair 0's image) left out of pair 0's negatives: the loss equals
    # InfoNCE over the batch without the duplicate's column/row, for pair 1 and 3 unchanged
    logits = a @ b.T / t
    masked = info_nce(a, b, t, same)
    row0 = -torch.log_softmax(logits[0, [0, 1, 3]], 0)[0]
    full_row0 = -torch.log_softmax(logits[0], 0)[0]
    assert row0 < full_row0
    parts = torch.nn.functional.cross_entropy(logits.masked_fill(same, -1e4), torch.arange(4), reduction="none")
    assert torch.isclose(parts[0], row0, atol=1e-5) and torch.isclose(parts[1], -torch.log_softmax(logits[1], 0)[1])
    assert masked < info_nce(a, b, t)


def test_sparse_training_on_caption_pairs_with_text_global_token(tiny_collection, tmp_path):
    cfg = _cfg(
        tiny_collection, "sparse", epochs=1, pairs="caption", mlm_warmup_steps=2,
        model={"image_layers": 1, "image_ff": 64, "decoder_ff": 64, "decoder_layers": 1, "text_global_hidden": 16},
    )  # fmt: skip
    metrics = train(cfg, tmp_path / "cap")
    assert metrics["best_epoch"] == 1 and "rsum" in metrics["val"]
    enc = SparseEncoder.from_pretrained(tmp_path / "cap")
    assert enc.model.text_global is not None
    q = enc.encode_texts(["a red dog picture", "a blue cat picture"])
    assert len(q) == 2 and (q.values > 0).all()
    with pytest.raises(LexretError, match="pairs must be"):
        TrainConfig.from_dict({"kind": "sparse", "pairs": "both"})


def test_image_backbone_config(tmp_path):
    from pathlib import Path

    with pytest.raises(LexretError, match="image_backbone: unknown image backbone 'lite2'; known: efficientnet-lite0"):
        TrainConfig.from_dict({"kind": "dense", "image_backbone": "lite2"})
    with pytest.raises(LexretError, match="model.n_patches is 49, but image_backbone efficientnet-lite2 gives 81"):
        TrainConfig.from_dict({"kind": "sparse", "image_backbone": "efficientnet-lite2", "model": {"n_patches": 49}})
    cfg = TrainConfig.from_dict({"kind": "sparse", "image_backbone": "efficientnet-lite2"})
    assert cfg.model_id == "lexret-sparse-lite2-minilm-v1"
    assert TrainConfig.from_dict({"kind": "dense"}).image_backbone == "efficientnet-lite0"
    configs = Path(__file__).resolve().parents[1] / "configs"
    for kind in ("dense", "sparse"):
        c = TrainConfig.from_yaml(configs / f"{kind}_lite2.yaml")
        assert (c.kind, c.image_backbone, c.model_id) == (kind, "efficientnet-lite2", f"lexret-{kind}-lite2-minilm-v1")
        assert (c.distill_from, c.w_distill) == ("", 0.0)  # sparse.yaml's Lite0 teacher is not inherited


@pytest.fixture(scope="module")
def lite2_run(tiny_collection, sparse_run):
    """The sparse model on Lite2 features, in the cache folder the Lite0 run (``sparse_run``) made."""
    folders = list((tiny_collection / "cache").iterdir())
    stamps = {f.name: f.stat().st_mtime_ns for f in folders[0].iterdir()}
    cfg = _cfg(tiny_collection, "sparse", epochs=1, mlm_warmup_steps=2, image_backbone="efficientnet-lite2")
    out = tiny_collection / "sparse-lite2"
    data = prepare_data(cfg, out)
    metrics = train(cfg, out, data)
    return cfg, out, data, metrics, folders, stamps


def test_lite2_features_join_the_shared_cache_folder(lite2_run):
    _, _, data, metrics, folders, stamps = lite2_run
    assert len(folders) == 1 and list(folders[0].parent.iterdir()) == folders  # same key: one folder
    folder = folders[0]
    assert data.cache.folder == folder and data.cache.image_backbone == "efficientnet-lite2"
    lite0 = np.load(folder / "images.npy", mmap_mode="r")
    lite2 = np.load(folder / "images-efficientnet-lite2.npy", mmap_mode="r")
    assert lite0.shape == (10, 49, 1280) and lite2.shape == (10, 81, 1280) and lite2.dtype == np.float16
    assert data.cache.images.shape == (10, 81, 1280)
    assert not list(folder.glob("*.tmp"))
    # the text arrays and Lite0's features were reused, not rewritten
    assert {f: (folder / f).stat().st_mtime_ns for f in stamps} == stamps
    assert metrics["image_backbone"] == "efficientnet-lite2"


def test_lite2_checkpoint_round_trip(lite2_run, tiny_collection):
    from lexret.training.train import DenseTeacher

    _, out, data, _, _, _ = lite2_run
    saved = json.loads((out / "config.json").read_text())
    assert saved["image_backbone"] == "efficientnet-lite2"
    assert (out / "model_id").read_text().strip() == "lexret-sparse-lite2-minilm-v1"
    enc = SparseEncoder.from_pretrained(out)
    assert (enc.image_backbone_id, enc.image_size) == ("efficientnet-lite2", 260)
    assert enc.metadata()["image_backbone"] == "efficientnet-lite2"
    assert enc.model.image_pos.shape[0] == 81
    # an image file encodes to the vector of its cached features (cache order = collection order)
    imgs = [tiny_collection / "images" / f"{i}.jpg" for i in range(3)]
    raw = enc._image_features(imgs)
    assert raw.shape == (3, 81, 1280)
    cached = torch.from_numpy(np.asarray(data.cache.images[:3], dtype=np.float32))
    assert torch.allclose(raw, cached, atol=1e-2)
    from_file = enc.encode_images(imgs).to_scipy().toarray()
    from_cache = enc.encode_image_features(cached).to_scipy().toarray()
    assert from_file.shape == from_cache.shape and (from_file > 0).any()
    assert np.allclose(from_file, from_cache, atol=1e-3)
    # a Lite0 teacher cannot score Lite2 features
    from lexret.encoders import shipped_checkpoint

    with pytest.raises(LexretError, match="trained on efficientnet-lite0 features, this run uses efficientnet-lite2"):
        DenseTeacher(shipped_checkpoint("dense"), data)


def test_checkpoint_without_image_backbone_loads_as_lite0(sparse_run, tmp_path):
    import shutil

    from lexret.model.checkpoint import read_config

    _, out, _, _, _ = sparse_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg.pop("image_backbone")
    (old / "config.json").write_text(json.dumps(cfg))
    assert read_config(old)["image_backbone"] == "efficientnet-lite0"
    enc = SparseEncoder.from_pretrained(old)
    assert (enc.image_backbone_id, enc.image_size) == ("efficientnet-lite0", 224)
    assert enc.model.image_pos.shape[0] == 49
    cfg["image_backbone"] = "efficientnet-lite9"
    (old / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LexretError, match="config.json: image_backbone: unknown image backbone 'efficientnet-lite9'"):
        SparseEncoder.from_pretrained(old)


def test_random_view_is_a_resized_crop_and_reproducible():
    from lexret.training.cache import random_view

    img = Image.fromarray(np.arange(300 * 200 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8))
    a = random_view(img, np.random.default_rng((0, 1, 2)), 64)
    b = random_view(img, np.random.default_rng((0, 1, 2)), 64)
    c = random_view(img, np.random.default_rng((0, 1, 3)), 64)
    assert a.size == (64, 64) and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_augmented_views_are_cached_once_and_used_by_both_kinds(tiny_collection, tmp_path):
    from lexret.training.train import image_batch

    cfg = _cfg(tiny_collection, "sparse", epochs=1, mlm_warmup_steps=2, image_views=2, view_prob=1.0)
    data = prepare_data(cfg, tmp_path / "views")
    assert data.views is not None and data.views.shape == (data.n_train, 2, 49, 1280)
    # views are new pictures, not the cached centre crop
    assert not np.allclose(data.views[:, 0], data.cache.images[: data.n_train])
    files = list(data.cache.folder.glob("views-*.npy"))
    assert [f.name for f in files] == ["views-efficientnet-lite0-v2-s0.npy"]
    stamp = files[0].stat().st_mtime_ns
    again = prepare_data(cfg.replace(seed=1), tmp_path / "views")  # another run's seed reuses them
    assert files[0].stat().st_mtime_ns == stamp and np.array_equal(again.views, data.views)
    assert len(list(data.cache.folder.glob("views-*"))) == 1

    bi = np.array([3, 0, 5, 0])
    got = image_batch(data, bi, cfg, torch.Generator().manual_seed(0)).numpy()
    for r, i in enumerate(bi):  # every row is one of that image's views (view_prob = 1)
        assert any(np.array_equal(got[r], data.views[i, v].astype(np.float32)) for v in range(2))
    off = image_batch(data, bi, cfg.replace(view_prob=0.0), torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(off, data.cache.images[bi].astype(np.float32))

    assert "rsum" in train(cfg, tmp_path / "sparse", data)["val"]
    dense = _cfg(tiny_collection, "dense", model={"hidden": 32, "dim": 16}, image_views=2, view_prob=1.0)
    assert "rsum" in train(dense, tmp_path / "dense", data)["val"]
    with pytest.raises(LexretError, match="image_views"):
        _cfg(tiny_collection, "dense", image_views=-1)


def test_every_config_loads_and_full_cv_configs_keep_the_shipped_recipe():
    """Every YAML under configs/ loads (a renamed option or a broken ``base:`` fails here, not hours
    into a run); the full-budget cross-validation configs differ from the shipped ones only in the
    fold protocol and the model id."""
    from dataclasses import asdict
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(configs.rglob("*.yaml"))
    assert len(paths) >= 10
    loaded = {p.relative_to(configs).as_posix(): TrainConfig.from_yaml(p) for p in paths}
    for kind in ("dense", "sparse"):
        shipped, full = asdict(loaded[f"{kind}.yaml"]), asdict(loaded[f"ablations/cv_{kind}_full.yaml"])
        changed = {k for k in shipped if shipped[k] != full[k]}
        assert changed == {"model_id", "cv_folds", "select", "name"}, changed
        assert (full["cv_folds"], full["select"]) == (5, "last")
        reduced = asdict(loaded[f"ablations/cv_{kind}.yaml"])
        assert reduced["image_views"] == 0 and full["image_views"] == shipped["image_views"] > 0
