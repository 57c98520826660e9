"""Val metrics used for model selection: brute-force recall@K both ways, RSUM, term precision."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_dense(x) -> np.ndarray:
    if hasattr(x, "toarray"):
        return x.toarray()
    return np.asarray(x, dtype=np.float32)


def retrieval_metrics(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """``img (N, D)``, ``txt (C, D)`` (dense or scipy), ``owner[c]`` = image of caption ``c``.

    t2i: rank of the caption's own image among all images; i2t: best rank among the image's
    captions. Returns percentages and ``rsum``.
    """
    img = _as_dense(img)
    txt = _as_dense(txt)
    owner = np.asarray(owner)
    scores = txt @ img.T  # (C, N)
    own = scores[np.arange(len(owner)), owner]
    t2i_rank = (scores > own[:, None]).sum(1)  # 0 = first
    # i2t: for each image, the best rank of any of its captions
    sT = scores.T  # (N, C)
    i2t_rank = np.full(img.shape[0], np.iinfo(np.int64).max)
    for i in range(img.shape[0]):
        mine = np.nonzero(owner == i)[0]
        if mine.size == 0:
            continue
        best = sT[i, mine].max()
        i2t_rank[i] = (sT[i] > best).sum()
    has = i2t_rank < np.iinfo(np.int64).max
    out = {}
    for k in ks:
        out[f"t2i_R@{k}"] = float(100 * np.mean(t2i_rank < k))
    for k in ks:
        out[f"i2t_R@{k}"] = float(100 * np.mean(i2t_rank[has] < k))
    out["rsum"] = float(sum(v for key, v in out.items() if "R@" in key))
    return out


def term_precision(
    image_terms: Sequence[Sequence[int]], caption_terms: Sequence[set[int]], content: np.ndarray, k: int = 10
) -> float:
    """Mean over images of the % of the image's top-``k`` content terms (by weight, stopwords and
    punctuation skipped) that occur among the content wordpieces of its own captions."""
    precs = []
    for terms, caps in zip(image_terms, caption_terms):
        top = [t for t in terms if content[t]][:k]
        if not top:
            precs.append(0.0)
            continue
        precs.append(100.0 * sum(t in caps for t in top) / len(top))
    return float(np.mean(precs)) if precs else 0.0


def term_precision_csr(images, present, content: np.ndarray, k: int = 10) -> float:
    """:func:`term_precision` on sparse rows: ``images`` (scipy CSR, image x term weights), ``present``
    (image x term, nonzero where the term is a wordpiece of one of the image's captions) and ``content``
    (bool per term column). An image's terms are ranked by weight (ties: column order)."""
    images, present = images.tocsr(), present.tocsr()
    ranked, caps = [], []
    for i in range(images.shape[0]):
        s, e = images.indptr[i], images.indptr[i + 1]
        idx, val = images.indices[s:e], images.data[s:e]
        idx, val = idx[val > 0], val[val > 0]
        ranked.append(idx[np.argsort(-val, kind="stable")].tolist())
        caps.append(set(present.indices[present.indptr[i] : present.indptr[i + 1]].tolist()))
    return term_precision(ranked, caps, content, k)


def top_terms(vecs: np.ndarray, k: int) -> list[list[int]]:
    """Indices of the ``k`` largest positive entries of each row, by weight."""
    out = []
    k = min(k, vecs.shape[1])
    part = np.argpartition(-vecs, k - 1, axis=1)[:, :k]
    for r in range(vecs.shape[0]):
        idx = part[r][vecs[r, part[r]] > 0]
        out.append(idx[np.argsort(-vecs[r, idx], kind="stable")].tolist())
    return out


def prune_top_k(vecs: np.ndarray, k: int) -> np.ndarray:
    """Zero all but the ``k`` largest entries of each row (dense ``(n, D)``)."""
    if k <= 0 or k >= vecs.shape[1]:
        return vecs
    out = np.zeros_like(vecs)
    part = np.argpartition(-vecs, k - 1, axis=1)[:, :k]
    rows = np.arange(vecs.shape[0])[:, None]
    out[rows, part] = vecs[rows, part]
    return out


def l2_normalize(vecs: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.maximum(n, 1e-12)


def expected_flops(img: np.ndarray, txt: np.ndarray) -> float:
    """Expected number of shared terms of a random (caption, image) pair: ``sum_j p_j^img p_j^txt``,
    the number of multiply-adds per scored pair (proportional to postings traversed)."""
    return float(((img > 0).mean(0) * (txt > 0).mean(0)).sum())
