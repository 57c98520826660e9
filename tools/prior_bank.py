"""Build the caption-prior bank of a sparse model (lexret.document_prior) from *training* images.

The first ``--bank`` training images become the bank (their sparse vectors are stored in the model
folder as caption_prior_bank.npz). The temperature is chosen on the next ``--select`` training
images and their captions (image->text R@1+R@5+R@10 with priors from the bank), never on val: val
stays a held-out figure. Prints the selection table.

    python tools/prior_bank.py --model lexret/checkpoints/sparse --data ../shared/flickr8k/captions.jsonl
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("prior_bank")


def i2t_recalls(images, captions, owner: np.ndarray, priors: np.ndarray | None) -> list[float]:
    """Image->text R@1/5/10 by exact dot products (plus each caption's prior)."""
    import scipy.sparse as sp

    def csr(b):
        return sp.csr_matrix((b.values, b.indices, b.indptr), shape=(len(b), b.dim))

    s = np.asarray((csr(images) @ csr(captions).T).todense())  # (N, C)
    if priors is not None:
        s = s + priors[None, :]
    out = []
    best = np.array([np.max(s[i, owner == i]) for i in range(s.shape[0])])
    rank = (s > best[:, None]).sum(1)
    for k in (1, 5, 10):
        out.append(float(100 * np.mean(rank < k)))
    return out


def main() -> None:
    from lexret.data import load_captions
    from lexret.document_prior import caption_priors, write_bank
    from lexret.encoders import SparseEncoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("lexret/checkpoints/sparse"))
    p.add_argument("--data", required=True, help="captions JSONL with a train split")
    p.add_argument("--split", default="train")
    p.add_argument("--bank", type=int, default=1000, help="training images in the bank")
    p.add_argument("--select", type=int, default=500, help="further training images to choose the temperature on")
    p.add_argument("--temperatures", default="0.01,0.02,0.05,0.1")
    p.add_argument("--dry-run", action="store_true", help="print the selection, write nothing")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    items = load_captions(args.data, split=args.split).items
    if len(items) < args.bank + args.select:
        raise SystemExit(f"{args.data} has {len(items)} {args.split} items, fewer than --bank + --select")
    enc = SparseEncoder.from_pretrained(args.model)
    bank = enc.encode_images([it.image for it in items[: args.bank]], progress=True)
    sel = items[args.bank : args.bank + args.select]
    sel_img = enc.encode_images([it.image for it in sel], progress=True)
    caps = [c for it in sel for c in it.captions]
    owner = np.repeat(np.arange(len(sel)), [len(it.captions) for it in sel])
    sel_cap = enc.encode_text_documents(caps, progress=True)
    scale = enc._scale if enc._normalize else 1.0
    base = i2t_recalls(sel_img, sel_cap, owner, None)
    print(f"{'no prior':>12s}  i2t R@1/5/10 {base[0]:5.1f} {base[1]:5.1f} {base[2]:5.1f}  sum {sum(base):6.1f}")
    best_t, best_sum = None, sum(base)
    for t in (float(x) for x in args.temperatures.split(",")):
        pri = caption_priors(sel_cap, bank, t) * scale**2  # in the units of the scaled vectors' dot products
        r = i2t_recalls(sel_img, sel_cap, owner, pri)
        print(f"{'T=' + str(t):>12s}  i2t R@1/5/10 {r[0]:5.1f} {r[1]:5.1f} {r[2]:5.1f}  sum {sum(r):6.1f}")
        if sum(r) > best_sum:
            best_t, best_sum = t, sum(r)
    if best_t is None:
        print("no temperature beats no prior on the selection images: no bank written")
        return
    print(f"chosen T={best_t} (selection i2t sum {best_sum:.1f} vs {sum(base):.1f} without a prior)")
    if not args.dry_run:
        path = write_bank(args.model, bank, best_t)
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(bank)} images)")


if __name__ == "__main__":
    main()
