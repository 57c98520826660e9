"""Backbone feature cache: computed once by ``lexret train`` so that training only runs the heads.

For a list of items it stores, under ``cache_dir/<key>/``:

* ``images.npy``  ``(N, 49, 1280)`` float16 Lite0 patch features,
* ``text_states.npy`` ``(C, L, 384)`` float16 MiniLM token states of every caption (zero padded),
  ``text_ids.npy`` ``(C, L)`` int32 wordpiece ids (0 = padding),
* ``mlm_states.npy`` / ``mlm_ids.npy`` / ``mlm_labels.npy``: token states of masked copies of some
  captions (MiniLM sees ``[MASK]``), with the original ids at masked positions (``-100`` elsewhere).

The backbones round their outputs to float16 at inference too (see :mod:`lexret.model.backbones`),
so vectors computed from raw inputs equal those computed from cached features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lexret.data import Item, load_image, preprocess_image
from lexret.model.backbones import TEXT_MAX_LEN, ImageBackbone, TextBackbone

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


class FeatureCache:
    """Memory-mapped cached features for a fixed item list (see module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        meta = json.loads((folder / "meta.json").read_text())
        self.meta = meta
        self.images = np.load(folder / "images.npy", mmap_mode="r")
        self.text_states = np.load(folder / "text_states.npy", mmap_mode="r")
        self.text_ids = np.load(folder / "text_ids.npy")
        self.caption_owner = np.load(folder / "caption_owner.npy")
        self.mlm_states = np.load(folder / "mlm_states.npy", mmap_mode="r")
        self.mlm_ids = np.load(folder / "mlm_ids.npy")
        self.mlm_labels = np.load(folder / "mlm_labels.npy")
        self.mlm_caption = np.load(folder / "mlm_caption.npy")

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
) -> FeatureCache:
    key = cache_key(items, mlm_per_item, mlm_prob, seed)
    folder = Path(cache_root) / key
    if (folder / "meta.json").is_file():
        log.info("using cached backbone features in %s", folder)
        return FeatureCache(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log.info("caching backbone features of %d images into %s (once)", len(items), folder)

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

    # ---- images
    ib = ImageBackbone()
    feats = np.lib.format.open_memmap(
        folder / "images.npy.tmp", mode="w+", dtype=np.float16, shape=(len(items), 49, 1280)
    )
    for a in tqdm(range(0, len(items), image_batch), desc="image features", unit="batch", mininterval=5):
        chunk = items[a : a + image_batch]
        px = np.stack([preprocess_image(load_image(it.image, line=it.line)) for it in chunk])
        feats[a : a + len(chunk)] = ib(torch.from_numpy(px)).half().numpy()
    feats.flush()
    del feats
    (folder / "images.npy.tmp").rename(folder / "images.npy")
    meta = {"n_items": len(items), "n_captions": len(captions), "max_len": L, "seconds": round(time.time() - t0, 1)}
    (folder / "meta.json").write_text(json.dumps(meta))
    log.info("cached features in %.0f s", time.time() - t0)
    return FeatureCache(folder)
