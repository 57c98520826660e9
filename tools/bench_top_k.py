"""Top-k pruning of the sparse model through Lucene: RSUM, terms per item, index bytes, search time.

Encodes a split's images and captions once without pruning, then for each k keeps the k heaviest
terms of every image and caption (re-normalised as the model does, `SparseEncoder.prune`), builds
the Lucene impact indexes, runs text->image and image->text and prints one row per k. Prints
figures, asserts nothing.

    python tools/bench_top_k.py --data ../shared/flickr8k/captions.jsonl --split val --top-k 16,32,64,128
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("bench_top_k")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="captions JSONL ({image, captions, split} lines)")
    p.add_argument("--split", default=None)
    p.add_argument("--model", default=None, help="sparse checkpoint folder (default: the shipped one)")
    p.add_argument("--top-k", default="16,32,64,128", help="k values, applied to images and captions alike")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from lexret.data import load_captions
    from lexret.encoders import SparseEncoder
    from lexret.evaluation import SplitIds, evaluate_sparse

    try:
        ks = [int(x) for x in args.top_k.split(",")]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        p.error(f"--top-k takes positive integers, e.g. 16,32,64; got {args.top_k!r}")
    enc = SparseEncoder.from_pretrained(args.model)
    coll = load_captions(args.data, split=args.split, limit=args.limit)
    ids = SplitIds.from_collection(coll)
    images = enc.encode_images([it.image for it in coll.items], top_k=0, progress=True)
    captions = enc.encode_texts(coll.captions, top_k=0, progress=True)
    log.info(
        "unpruned: %.1f terms per image, %.1f per caption",
        images.terms_per_row().mean(),
        captions.terms_per_row().mean(),
    )
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-bench-topk-"))
    rows = []
    try:
        for k in ks:
            res = evaluate_sparse(
                ids, enc.prune(images, k), enc.prune(captions, k), vocab=enc.vocab, model_id=enc.model_id,
                work=work / f"k{k}",
            )  # fmt: skip
            rows.append({"k": k, **res})
            shutil.rmtree(work / f"k{k}", ignore_errors=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{enc.model_id} on {len(coll.items)} images / {len(coll.captions)} captions; Lucene impact, k=10 hits")
    print("| top-k (image / caption) | RSUM | t2i R@1 | t2i R@10 | i2t R@1 | i2t R@10 | terms / image "
          "| terms / caption | image index MB | caption index MB | search ms (t2i, 1 thread) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['k']} / {r['k']} | {r['rsum']:.1f} | {r['t2i']['R@1']:.1f} | {r['t2i']['R@10']:.1f} "
              f"| {r['i2t']['R@1']:.1f} | {r['i2t']['R@10']:.1f} | {r['avg_doc_terms']:.1f} "
              f"| {r['avg_query_terms']:.1f} | {r['index_bytes'] / 1e6:.3f} | {r['caption_index_bytes'] / 1e6:.3f} "
              f"| {r['search_ms']:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
