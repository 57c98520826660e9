"""Backbone feature cache: computed once by ``lexret train`` so that training only runs the heads.

For a list of items it stores, under ``cache_dir/<key>/``:

* ``images.npy``  ``(N, 49, 1280)`` float16 EfficientNet-Lite0 patch features, and for any other
  image backbone ``images-<backbone id>.npy`` ``(N, grid * grid, 1280)`` (Lite2: 81 patches),
  computed on demand the first time a run asks for that backbone,
* ``text_states.npy`` ``(C, L, 384)`` float16 MiniLM token states of every caption (zero padded),
  ``text_ids.npy`` ``(C, L)`` int32 wordpiece ids (0 = padding),
* ``mlm_states.npy`` / ``mlm_ids.npy`` / ``mlm_labels.npy``: token states of masked copies of some
  captions (MiniLM sees ``[MASK]``), with the original ids at masked positions (``-100`` elsewhere),
* on demand (``image_views`` in the training config), ``views-<backbone id>-v<V>-s<seed>.npy``
  ``(n, V, patches, 1280)``: features of V augmented views (random resized crop, random mirror) of
  the first ``n`` (training) images, so frozen-backbone training still sees varied pictures.

The text arrays do not depend on the image backbone: one folder per item list serves every image
backbone. The backbones round their outputs to float16 at inference too (see
:mod:`lexret.model.backbones`), so vectors computed from raw inputs equal those computed from cached
features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from lexret.data import Item, load_image, preprocess_image
from lexret.errors import LexretError
from lexret.model.backbones import (
    DEFAULT_IMAGE_BACKBONE,
    TEXT_MAX_LEN,
    ImageBackbone,
    TextBackbone,
    image_backbone_spec,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL import Image

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: EfficientNet-Lite pixel normalisation


def cache_key(items: list[Item], mlm_per_item: int, mlm_prob: float, seed: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{mlm_per_item}|{mlm_prob}|{seed}|{TEXT_MAX_LEN}".encode())
    for it in items:
        h.update(str(it.image).encode())
        for c in it.captions:
            h.update(b"\x00" + c.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def images_file(image_backbone: str) -> str:
    """Name of the image-feature file of a backbone in a cache folder: Lite0 keeps ``images.npy`` (so
    caches from before the backbone was selectable stay valid), others ``images-<id>.npy``."""
    spec = image_backbone_spec(image_backbone)
    return "images.npy" if spec.id == DEFAULT_IMAGE_BACKBONE else f"images-{spec.id}.npy"


class FeatureCache:
    """Memory-mapped cached features for a fixed item list and one image backbone (see module docstring)."""

    def __init__(self, folder: Path, image_backbone: str = DEFAULT_IMAGE_BACKBONE) -> None:
        self.folder = folder
        meta = json.loads((folder / "meta.json").read_text())
        self.meta = meta
        spec = image_backbone_spec(image_backbone)
        self.image_backbone = spec.id
        self.images = np.load(folder / images_file(spec.id), mmap_mode="r")
        want = (int(meta["n_items"]), spec.n_patches, spec.channels)
        if self.images.shape != want:
            raise LexretError(
                f"{folder / images_file(spec.id)} holds features of shape {self.images.shape}, expected {want} "
                f"for {spec.id}; delete the file to recompute it"
            )
        self.text_states = np.load(folder / "text_states.npy", mmap_mode="r")
        self.text_ids = np.load(folder / "text_ids.npy")
        self.caption_owner = np.load(folder / "caption_owner.npy")
        self.mlm_states = np.load(folder / "mlm_states.npy", mmap_mode="r")
        self.mlm_ids = np.load(folder / "mlm_ids.npy")
        self.mlm_labels = np.load(folder / "mlm_labels.npy")
        self.mlm_caption = np.load(folder / "mlm_caption.npy")

    def reordered(self, order: np.ndarray) -> FeatureCache:
        """A copy (in memory) whose item ``i`` is this cache's item ``order[i]``, with the captions
        regrouped in the new item order (so the captions of the first items still come first, as
        :class:`lexret.training.train.Data` expects) and the masked copies pointing at them."""
        import copy

        order = np.asarray(order, dtype=np.int64)
        per_item = [np.nonzero(self.caption_owner == i)[0] for i in range(self.images.shape[0])]
        cap_order = np.concatenate([per_item[i] for i in order])
        new = copy.copy(self)
        new.images = np.ascontiguousarray(self.images[order])
        new.text_states = np.ascontiguousarray(self.text_states[cap_order])
        new.text_ids = self.text_ids[cap_order]
        new.caption_owner = np.repeat(np.arange(order.size), [per_item[i].size for i in order]).astype(np.int32)
        cap_new = np.full(self.caption_owner.size, -1, dtype=np.int64)
        cap_new[cap_order] = np.arange(cap_order.size)
        keep = cap_new[self.mlm_caption] >= 0
        new.mlm_caption = cap_new[self.mlm_caption[keep]].astype(np.int32)
        new.mlm_states = np.ascontiguousarray(self.mlm_states[keep])
        new.mlm_ids = self.mlm_ids[keep]
        new.mlm_labels = self.mlm_labels[keep]
        new.meta = {**self.meta, "n_items": int(order.size), "n_captions": int(cap_order.size)}
        return new

    def load_to_memory(self) -> FeatureCache:
        self.images = np.ascontiguousarray(self.images)
        self.text_states = np.ascontiguousarray(self.text_states)
        self.mlm_states = np.ascontiguousarray(self.mlm_states)
        return self


def _encode_texts(tb: TextBackbone, ids_list: list[list[int]], L: int, batch: int, desc: str) -> np.ndarray:
    out = np.zeros((len(ids_list), L, 384), dtype=np.float16)
    order = np.argsort([len(x) for x in ids_list], kind="stable")
    for a in tqdm(range(0, len(order), batch), desc=desc, unit="batch", mininterval=5):
        idx = order[a : a + batch]
        m = max(len(ids_list[i]) for i in idx)
        ids = torch.zeros((len(idx), m), dtype=torch.long)
        mask = torch.zeros((len(idx), m), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(ids_list[i])] = torch.tensor(ids_list[i])
            mask[r, : len(ids_list[i])] = 1
        st = tb.states(ids, mask).half().numpy()
        for r, i in enumerate(idx):
            n = len(ids_list[i])
            out[i, :n] = st[r, :n]
    return out


def mask_tokens(ids: list[int], rng: np.random.Generator, prob: float, special: set[int], mask_id: int):
    """BERT-style masking of one caption: returns (input ids, labels with -100 where unmasked)."""
    cand = [j for j, t in enumerate(ids) if t not in special]
    k = max(1, round(prob * len(cand)))
    pos = rng.choice(cand, size=min(k, len(cand)), replace=False)
    inp = list(ids)
    lab = [-100] * len(ids)
    for j in pos:
        lab[j] = ids[j]
        inp[j] = mask_id
    return inp, lab


def build_cache(
    items: list[Item],
    cache_root: Path,
    *,
    mlm_per_item: int = 1,
    mlm_prob: float = 0.3,
    seed: int = 0,
    image_batch: int = 32,
    text_batch: int = 256,
    image_backbone: str = DEFAULT_IMAGE_BACKBONE,
) -> FeatureCache:
    """The feature cache of ``items`` under ``cache_root``: built once (text arrays, then the image
    features of ``image_backbone``); a complete folder without this backbone's image features gets
    them added, the text arrays are shared."""
    spec = image_backbone_spec(image_backbone)
    key = cache_key(items, mlm_per_item, mlm_prob, seed)
    folder = Path(cache_root) / key
    if (folder / "meta.json").is_file():
        log.info("using cached backbone features in %s", folder)
        if not (folder / images_file(spec.id)).is_file():
            cache_image_features(items, folder, spec.id, batch=image_batch)
        return FeatureCache(folder, spec.id)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log.info("caching backbone features of %d images (%s) into %s (once)", len(items), spec.id, folder)

    # ---- text
    tb = TextBackbone()
    captions = [c for it in items for c in it.captions]
    owner = np.repeat(np.arange(len(items)), [len(it.captions) for it in items]).astype(np.int32)
    ids_list = [tb.tokenizer(c, truncation=True, max_length=TEXT_MAX_LEN)["input_ids"] for c in captions]
    L = max(len(x) for x in ids_list)
    text_ids = np.zeros((len(captions), L), dtype=np.int32)
    for i, x in enumerate(ids_list):
        text_ids[i, : len(x)] = x
    states = _encode_texts(tb, ids_list, L, text_batch, "caption states")
    np.save(folder / "text_states.npy", states)
    del states
    np.save(folder / "text_ids.npy", text_ids)
    np.save(folder / "caption_owner.npy", owner)

    rng = np.random.default_rng(seed)
    special = set(tb.tokenizer.all_special_ids)
    mask_id = tb.tokenizer.mask_token_id
    first = np.concatenate([[0], np.cumsum([len(it.captions) for it in items])[:-1]])
    mlm_caption, mlm_in, mlm_lab = [], [], []
    for i, it in enumerate(items):
        for c in rng.choice(len(it.captions), size=min(mlm_per_item, len(it.captions)), replace=False):
            ci = int(first[i] + c)
            inp, lab = mask_tokens(ids_list[ci], rng, mlm_prob, special, mask_id)
            mlm_caption.append(ci)
            mlm_in.append(inp)
            mlm_lab.append(lab)
    mstates = _encode_texts(tb, mlm_in, L, text_batch, "masked caption states")
    mids = np.zeros((len(mlm_in), L), dtype=np.int32)
    mlab = np.full((len(mlm_in), L), -100, dtype=np.int32)
    for i, (x, y) in enumerate(zip(mlm_in, mlm_lab)):
        mids[i, : len(x)] = x
        mlab[i, : len(y)] = y
    np.save(folder / "mlm_states.npy", mstates)
    np.save(folder / "mlm_ids.npy", mids)
    np.save(folder / "mlm_labels.npy", mlab)
    np.save(folder / "mlm_caption.npy", np.array(mlm_caption, dtype=np.int32))
    del tb, mstates

    cache_image_features(items, folder, spec.id, batch=image_batch)
    meta = {"n_items": len(items), "n_captions": len(captions), "max_len": L, "seconds": round(time.time() - t0, 1)}
    (folder / "meta.json").write_text(json.dumps(meta))
    log.info("cached features in %.0f s", time.time() - t0)
    return FeatureCache(folder, spec.id)


def _write_image_features(
    final: Path,
    items: list[Item],
    image_backbone: str,
    shape: tuple[int, ...],
    pictures: Callable[[int, Image.Image], list[Image.Image]],
    batch: int,
    desc: str,
) -> None:
    """Run the frozen image backbone over ``pictures(i, image)`` of every item (each returns
    ``prod(shape[1:-2])`` pictures) into a float16 ``.npy`` of ``shape`` at ``final``, written to a
    ``.tmp`` file and renamed when complete, so an interrupted run leaves no file under the final name."""
    spec = image_backbone_spec(image_backbone)
    tmp = final.with_name(final.name + ".tmp")
    ib = ImageBackbone(spec.id)
    size = spec.input_size
    per_item = int(np.prod(shape[1:-2], dtype=np.int64))
    step = max(1, batch // per_item)
    feats = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    for a in tqdm(range(0, len(items), step), desc=desc, unit="batch", mininterval=5):
        chunk = items[a : a + step]
        px = [
            preprocess_image(pic, size)
            for i, it in enumerate(chunk, start=a)
            for pic in pictures(i, load_image(it.image, line=it.line, size=size))
        ]
        out = ib(torch.from_numpy(np.stack(px))).half().numpy()
        feats[a : a + len(chunk)] = out.reshape((len(chunk), *shape[1:]))
    feats.flush()
    del feats
    tmp.rename(final)


def cache_image_features(items: list[Item], folder: Path, image_backbone: str, batch: int = 32) -> Path:
    """Compute the ``(N, grid * grid, 1280)`` float16 patch features of ``items`` with ``image_backbone``
    into ``folder`` (:func:`images_file`), written to a ``.tmp`` file and renamed when complete."""
    spec = image_backbone_spec(image_backbone)
    final = folder / images_file(spec.id)
    t0 = time.time()
    log.info("caching %s features of %d images into %s (once)", spec.id, len(items), final)
    shape = (len(items), spec.n_patches, spec.channels)
    _write_image_features(final, items, spec.id, shape, lambda i, img: [img], batch, f"{spec.id} image features")
    log.info("cached %s image features in %.0f s", spec.id, time.time() - t0)
    return final


# Cached view files are named by backbone, count and seed only: give them a new name (views_file) if
# these ranges change, or old files would be reused.
VIEW_SCALE = (0.35, 1.0)  # area of the crop, as a share of the image
VIEW_RATIO = (3 / 4, 4 / 3)  # aspect ratio of the crop


def random_view(img: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A random resized crop (area in :data:`VIEW_SCALE`, aspect in :data:`VIEW_RATIO`) of ``img``,
    mirrored with probability 1/2, resized to ``size`` x ``size``."""
    from PIL import Image as PILImage

    w, h = img.size
    box = (0.0, 0.0, float(w), float(h))
    for _ in range(10):
        area = w * h * rng.uniform(*VIEW_SCALE)
        ar = float(np.exp(rng.uniform(np.log(VIEW_RATIO[0]), np.log(VIEW_RATIO[1]))))
        cw, ch = np.sqrt(area * ar), np.sqrt(area / ar)
        if cw <= w and ch <= h:
            x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            box = (x0, y0, x0 + cw, y0 + ch)
            break
    else:  # no crop fits: the centre square
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    out = img.resize((size, size), PILImage.BICUBIC, box=box)
    if rng.random() < 0.5:
        out = out.transpose(PILImage.FLIP_LEFT_RIGHT)
    return out


def views_file(image_backbone: str, n_views: int, seed: int) -> str:
    return f"views-{image_backbone_spec(image_backbone).id}-v{n_views}-s{seed}.npy"


def image_views(
    items: list[Item], folder: Path, image_backbone: str, n_views: int, seed: int = 0, batch: int = 32
) -> np.ndarray:
    """The ``(len(items), n_views, patches, 1280)`` float16 features of :func:`random_view` views of
    ``items``, computed once into ``folder`` (:func:`views_file`) and memory-mapped after that. View
    ``v`` of item ``i`` is drawn from its own seed ``(seed, i, v)``, so a file is reproducible."""
    spec = image_backbone_spec(image_backbone)
    final = folder / views_file(spec.id, n_views, seed)
    shape = (len(items), n_views, spec.n_patches, spec.channels)
    if final.is_file():
        feats = np.load(final, mmap_mode="r")
        if feats.shape != shape:
            raise LexretError(f"{final} holds views of shape {feats.shape}, expected {shape}; delete it to recompute")
        return feats
    t0 = time.time()
    log.info("caching %d augmented views of %d images (%s) into %s (once)", n_views, len(items), spec.id, final)

    def views(i: int, img: Image.Image) -> list[Image.Image]:
        return [random_view(img, np.random.default_rng((seed, i, v)), spec.input_size) for v in range(n_views)]

    _write_image_features(final, items, spec.id, shape, views, batch, f"{spec.id} augmented views")
    log.info("cached augmented views in %.0f s", time.time() - t0)
    return np.load(final, mmap_mode="r")
