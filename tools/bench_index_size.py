"""Index size against effectiveness for the sparse model: quantization scale and document top-k.

Builds the same corpus as ``lexret compare`` (the split's images plus real and calibrated synthetic
distractors, read from the compare cache when it is there) once per (scale, top-k) and prints the
Lucene index bytes, the bytes of postings alone (``.doc``), the terms per document and the
text->image R@1/5/10 of a Lucene search: what a smaller index costs. Prints figures, asserts nothing.

    python tools/bench_index_size.py --data ../shared/flickr8k/captions.jsonl --split val \\
        --distractor-data ../shared/flickr8k/captions.jsonl --distractors 99000 --cache-dir runs/compare/cache
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("bench_index_size")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default=None)
    p.add_argument("--distractor-data", default=None)
    p.add_argument("--distractors", type=int, default=99_000)
    p.add_argument("--cache-dir", required=True, help="compare's cache (encodings, synthetic chunks)")
    p.add_argument("--scales", default="100,30,10")
    p.add_argument("--doc-top-k", default="64,48,32")
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from lexret.compare import CompareConfig, Corpus, prepare_inputs
    from lexret.data import load_captions
    from lexret.encoders import DenseEncoder, SparseEncoder
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.metrics import evaluate
    from lexret.searcher import Searcher

    sparse_enc, dense_enc = SparseEncoder.from_pretrained(), DenseEncoder.from_pretrained()
    coll = load_captions(args.data, split=args.split)
    dcoll = load_captions(args.distractor_data) if args.distractor_data else None
    cfg = CompareConfig(sizes=[args.distractors])
    inputs = prepare_inputs(coll, dcoll, sparse_enc, dense_enc, cfg, Path(args.cache_dir))
    if inputs.calibration is not None:
        cfg = replace(cfg, mix=inputs.calibration.params)
    corpus = Corpus(inputs.split, inputs.real, args.distractors, cfg, Path(args.cache_dir))
    qrels = inputs.ids.qrels_t2i()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-bench-size-"))
    rows = []
    try:
        for k in (int(x) for x in args.doc_top_k.split(",")):
            for scale in (float(x) for x in args.scales.split(",")):
                out = work / f"k{k}-s{scale:g}"
                icfg = IndexConfig(scale=scale, threads=2, optimize=True, store_vectors=False)
                meta = Indexer(sparse_enc.vocab, icfg).build(
                    ((c.ids, c.sparse.top_k(k)) for c in corpus.chunks()), out,
                    IndexInfo(sparse_enc.model_id, "image"), total=len(corpus),
                )  # fmt: skip
                with Searcher(out, sparse_enc.vocab) as s:
                    run = s.search(inputs.ids.caption_ids, inputs.cap_sparse, 10, threads=2, progress=False)
                m = evaluate(run, qrels, ("R@1", "R@5", "R@10"))
                postings = sum(f.stat().st_size for f in out.glob("*.doc"))
                rows.append((k, scale, meta["avg_doc_terms"], meta["index_bytes"], postings, m))
                shutil.rmtree(out)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"corpus {len(corpus):,} items ({corpus.n_real:,} real, {corpus.n_synthetic:,} synthetic distractors)")
    print("| doc top-k | scale | terms/doc | index MB | postings (.doc) MB | R@1 | R@5 | R@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for k, scale, terms, size, postings, m in rows:
        print(f"| {k} | {scale:g} | {terms:.1f} | {size / 1e6:.1f} | {postings / 1e6:.1f} | {m['R@1']:.2f} "
              f"| {m['R@5']:.2f} | {m['R@10']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
