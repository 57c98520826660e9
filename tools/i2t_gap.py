"""Why does image->text trail the dense baseline more than text->image? (issue 17)

Float vectors of the val images and captions computed from a training feature cache (no backbone
runs), for a sparse checkpoint and the dense baseline, then per direction:

* R@1/5/10 as trained (top-k pruned, L2-normalised, cosine), and with each side's top-k varied;
* caption hubness in image->text: how often the most retrieved captions come first (k-occurrence),
  and how much of a caption's score is a per-caption offset shared by all images (its mean score);
* two rescorings that a Lucene index can hold: dividing each caption document by a per-caption factor
  (folded into its impacts at index time), and the inverted-softmax / query-bank normalisation that
  needs the whole score matrix (a reference of what hubness costs, not a deployable fix).

    python tools/i2t_gap.py --cache /work/runs/repr/cache/<key> --model lexret/checkpoints/sparse \
        --dense lexret/checkpoints/dense

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("i2t_gap")


def ranks(scores: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scores (C, N)`` caption x image. t2i rank of each caption's image; i2t best rank of an image's captions."""
    own = scores[np.arange(len(owner)), owner]
    t2i = (scores > own[:, None]).sum(1)
    n = scores.shape[1]
    i2t = np.empty(n, np.int64)
    sT = scores.T
    for i in range(n):
        mine = np.nonzero(owner == i)[0]
        i2t[i] = (sT[i] > sT[i, mine].max()).sum()
    return t2i, i2t


def recalls(r: np.ndarray) -> list[float]:
    return [float(100 * np.mean(r < k)) for k in (1, 5, 10)]


def prune_norm(v: np.ndarray, k: int) -> np.ndarray:
    v = np.maximum(v, 0)
    if 0 < k < v.shape[1]:
        thr = -np.partition(-v, k - 1, axis=1)[:, k - 1 : k]
        v = v * (v >= thr)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def vectors(cache_dir: Path, model_dir: Path, dense_dir: Path, n_train: int, bank_size: int):
    from lexret.model.checkpoint import load_model
    from lexret.training.cache import FeatureCache
    from lexret.training.train import Data, _text_batch, pooled_features

    cache = FeatureCache(cache_dir)
    n = cache.images.shape[0]
    data = Data(cache, n_train, n - n_train)
    sp, cfg = load_model(model_dir)
    de, _ = load_model(dense_dir)
    sp.eval()
    de.eval()
    caps = data.val_caps
    img_s, txt_s, bank = [], [], []
    with torch.no_grad():
        for a in range(n_train, n, 200):
            p = torch.from_numpy(np.asarray(cache.images[a : min(a + 200, n)], dtype=np.float32))
            img_s.append(sp.image_vectors(p).numpy())
        for a in range(0, bank_size, 200):  # training images: a bank that is not the searched collection
            p = torch.from_numpy(np.asarray(cache.images[a : min(a + 200, bank_size)], dtype=np.float32))
            bank.append(sp.image_vectors(p).numpy())
        for a in range(0, caps.size, 500):
            st, ids, mask = _text_batch(cache, caps[a : a + 500])
            if getattr(sp, "query_weights", None) is not None:
                txt_s.append(sp.query_vectors(ids).numpy())
            else:
                txt_s.append(sp.text_vectors(st, mask).numpy())
        img_p, txt_p = pooled_features(data)
        img_d = de.encode_pooled_image(torch.from_numpy(img_p[n_train:])).numpy()
        txt_d = de.encode_pooled_text(torch.from_numpy(txt_p[caps])).numpy()
        bank_d = de.encode_pooled_image(torch.from_numpy(img_p[:bank_size])).numpy()
    k_img, k_txt = int(cfg.get("top_k_image", 48)), int(cfg.get("top_k_text", 32))
    bank_s = np.concatenate(bank) if bank else np.zeros((0, img_s[0].shape[1]), np.float32)
    return np.concatenate(img_s), np.concatenate(txt_s), img_d, txt_d, data.val_owner, k_img, k_txt, bank_s, bank_d


def logsumexp(x: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp."""
    m = x.max(1)
    return m + np.log(np.exp(x - m[:, None]).sum(1))


def hubness(scores_ic: np.ndarray, owner: np.ndarray) -> dict:
    """``scores_ic (N, C)`` image x caption. k-occurrence of captions at top-1 and its skew."""
    top1 = scores_ic.argmax(1)
    occ = np.bincount(top1, minlength=scores_ic.shape[1])
    occ10 = np.bincount(np.argsort(-scores_ic, axis=1)[:, :10].ravel(), minlength=scores_ic.shape[1])
    skew = float(((occ10 - occ10.mean()) ** 3).mean() / max(occ10.std() ** 3, 1e-12))
    return {
        "captions never in any top-10 %": float(100 * np.mean(occ10 == 0)),
        "top-10 slots taken by the 1% most retrieved captions %": float(
            100 * np.sort(occ10)[::-1][: max(1, len(occ10) // 100)].sum() / occ10.sum()
        ),
        "N10 skewness": skew,
        "max top-1 occurrences of one caption": int(occ.max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True, help="feature cache folder of train + val (lexret train)")
    p.add_argument("--model", type=Path, default=Path("lexret/checkpoints/sparse"))
    p.add_argument("--dense", type=Path, default=Path("lexret/checkpoints/dense"))
    p.add_argument("--n-train", type=int, default=6000, help="training items first in the cache (the rest: val)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bank", type=int, default=2000, help="training images whose scores set each caption's prior")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    iv, tv, idn, tdn, owner, k_img, k_txt, bank_s, bank_d = vectors(
        args.cache, args.model, args.dense, args.n_train, args.bank
    )
    idn = idn / np.linalg.norm(idn, axis=1, keepdims=True)
    tdn = tdn / np.linalg.norm(tdn, axis=1, keepdims=True)
    rows = []

    def row(name: str, scores: np.ndarray) -> None:
        t2i, i2t = ranks(scores, owner)
        a, b = recalls(t2i), recalls(i2t)
        rows.append((name, a, b))
        print(f"{name:58s} t2i {a[0]:5.1f} {a[1]:5.1f} {a[2]:5.1f} ({sum(a):5.1f})   "
              f"i2t {b[0]:5.1f} {b[1]:5.1f} {b[2]:5.1f} ({sum(b):5.1f})", flush=True)  # fmt: skip

    dense = tdn @ idn.T
    row("dense", dense)
    ivk, tvk = prune_norm(iv, k_img), prune_norm(tv, k_txt)
    sparse = tvk @ ivk.T
    row(f"sparse (image top-{k_img}, caption top-{k_txt})", sparse)
    row("sparse, no pruning", prune_norm(tv, 0) @ prune_norm(iv, 0).T)
    for ki in (16, 32, 64, 128):
        row(f"sparse, image top-{ki}", tvk @ prune_norm(iv, ki).T)
    for kt in (8, 16, 64):
        row(f"sparse, caption top-{kt}", prune_norm(tv, kt) @ ivk.T)
    # hubness in i2t (rows = images)
    for name, s in (("dense", dense), ("sparse", sparse)):
        h = hubness(s.T, owner)
        print(f"hubness {name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in h.items()))  # fmt: skip
    # a caption's mean score over the images: an offset shared by every image query
    for name, s in (("dense", dense), ("sparse", sparse)):
        mu, sd = s.mean(1), s.std(1)
        own = s[np.arange(len(owner)), owner]
        print(f"{name}: caption mean score {mu.mean():.3f} (spread across captions {mu.std():.3f}), "
              f"per-caption std over images {sd.mean():.3f}, own-image score {own.mean():.3f}; "
              f"spread of means / per-caption std = {mu.std() / sd.mean():.2f}")  # fmt: skip
    # rescorings: per-caption scale (index-time), and z-scores / inverted softmax (need all images)
    sd = sparse.std(1, keepdims=True)
    mu = sparse.mean(1, keepdims=True)
    row("sparse, caption docs / their score std (index-time scale)", sparse / np.maximum(sd, 1e-6))
    row("sparse, caption z-score (needs the image bank)", (sparse - mu) / np.maximum(sd, 1e-6))
    row("dense, caption z-score (needs the image bank)", (dense - dense.mean(1, keepdims=True))
        / dense.std(1, keepdims=True))  # fmt: skip
    # the inverted softmax as a per-caption additive prior -T * logsumexp_j(s_cj / T) over a bank of
    # *training* images: one number per caption document, fixed at index time, independent of val
    if len(bank_s):
        bank_dn = bank_d / np.linalg.norm(bank_d, axis=1, keepdims=True)
        for temp in (0.02, 0.05, 0.1):
            banks = (("sparse", sparse, tvk @ prune_norm(bank_s, k_img).T), ("dense", dense, tdn @ bank_dn.T))
            for name, s, b in banks:
                prior = -temp * logsumexp(b / temp)
                row(f"{name}, caption prior over {len(b[0])} train images T={temp}", s + prior[:, None])
    for temp in (0.02, 0.05):
        inv = np.exp((sparse - sparse.max(1, keepdims=True)) / temp)
        row(f"sparse, inverted softmax over images T={temp}", inv / inv.sum(1, keepdims=True))
        inv = np.exp((dense - dense.max(1, keepdims=True)) / temp)
        row(f"dense, inverted softmax over images T={temp}", inv / inv.sum(1, keepdims=True))


if __name__ == "__main__":
    main()
