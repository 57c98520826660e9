"""Postings a caption query reads at 1M images, estimated from document frequencies, and val quality,
for each caption top-k: a quick model-side check of issue 17 without building a 1M index.

The image collection is the val images of a training feature cache (``lexret train``'s
``.feature-cache/<key>/images.npy``: train images then val images, as the cache was built from
``--data``; ``--df-over all`` takes the training images too), encoded with the model from the
cached backbone features. A term held by a share
``df_t`` of those images is assumed to hold ``df_t * 1M`` postings at 1M images (``lexret compare``
builds its synthetic distractors from real image vectors, so their term shares follow the real ones);
a query reads the postings of each of its terms: ``postings = sum_{t in q} df_t * 1M``. Quality is
brute-force recall on the val split (float vectors, as the model normalises them).

    python tools/bench_postings_df.py --data ../shared/flickr8k/captions.jsonl \\
        --cache /work/runs/x/.feature-cache/5feb2f46d613132c --model lexret/checkpoints/sparse \\
        --model runs/sparse_if --top-k-text 32 6 4 3 --json out.json

Prints one row per (model, caption top-k); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lexret.data import load_captions  # noqa: E402
from lexret.encoders import SparseEncoder  # noqa: E402
from lexret.training.evaluate import retrieval_metrics  # noqa: E402
from lexret.types import SparseBatch  # noqa: E402

AT = 1_000_000


def encode_cached_images(enc: SparseEncoder, images: np.ndarray, batch: int = 250) -> SparseBatch:
    import torch

    parts = []
    for a in range(0, images.shape[0], batch):
        feats = torch.from_numpy(np.asarray(images[a : a + batch], dtype=np.float32))
        parts.append(enc.encode_image_features(feats))
    return SparseBatch.concat(parts)


def measure(enc: SparseEncoder, images: SparseBatch, n_train: int, captions: list[str], owner: np.ndarray,
            ks: list[int], df_over: str = "val") -> list[dict]:  # fmt: skip
    val_img = images.slice(n_train, len(images))
    coll = val_img if df_over == "val" else images
    df = np.bincount(coll.indices, minlength=images.dim) / len(coll)
    full = enc.encode_texts(captions, top_k=0, batch_size=256)
    rows = []
    for k in ks:
        q = enc.prune(full, k)
        per_query = np.add.reduceat(np.append(df[q.indices], 0.0), q.indptr[:-1]) * (q.terms_per_row() > 0)
        m = retrieval_metrics(val_img.to_scipy(), q.to_scipy(), owner)
        rows.append(
            {
                "model_id": enc.model_id,
                "top_k_text": k,
                "terms_per_caption": float(q.terms_per_row().mean()),
                "terms_per_image": float(val_img.terms_per_row().mean()),
                "df_over": df_over,
                "postings_per_query_1m": float(per_query.mean() * AT),
                **{key: round(v, 2) for key, v in m.items()},
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="captions JSONL the cache was built from (train + val)")
    ap.add_argument("--cache", required=True, help="feature cache folder holding images.npy and meta.json")
    ap.add_argument("--model", action="append", required=True, help="sparse checkpoint folder (repeatable)")
    ap.add_argument("--top-k-text", type=int, nargs="+", default=[32], help="caption top-k values to sweep")
    ap.add_argument("--df-over", choices=("val", "all"), default="val", help="images the df are counted over")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    train = load_captions(args.data, split="train")
    val = load_captions(args.data, split="val")
    images = np.load(Path(args.cache) / "images.npy", mmap_mode="r")
    if images.shape[0] != len(train.items) + len(val.items):
        raise SystemExit(f"{args.cache} holds {images.shape[0]} images, {args.data} train + val has "
                         f"{len(train.items) + len(val.items)}")  # fmt: skip
    owner = np.repeat(np.arange(len(val.items)), [len(it.captions) for it in val.items])
    out = []
    for path in args.model:
        enc = SparseEncoder.from_pretrained(path)
        n_train = 0 if args.df_over == "val" else len(train.items)
        vecs = encode_cached_images(enc, images[len(train.items) - n_train :])
        for r in measure(enc, vecs, n_train, val.captions, owner, args.top_k_text, args.df_over):
            out.append(r)
            print(
                f"{r['model_id']:<40} k_text {r['top_k_text']:>3}  terms/cap {r['terms_per_caption']:5.2f}  "
                f"terms/img {r['terms_per_image']:5.1f}  postings@1M {r['postings_per_query_1m']:>11,.0f}  "
                f"t2i {r['t2i_R@1']:.1f}/{r['t2i_R@5']:.1f}/{r['t2i_R@10']:.1f}  "
                f"i2t {r['i2t_R@1']:.1f}/{r['i2t_R@5']:.1f}/{r['i2t_R@10']:.1f}  RSUM {r['rsum']:.1f}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
