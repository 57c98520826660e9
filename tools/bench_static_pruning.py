"""Static index pruning at scale, measured on a finished ``lexret compare`` run: prints figures,
asserts nothing.

A query's cost grows with the postings of its terms, and the model's frequent terms (man, dog,
people, ...) hold hundreds of thousands of postings at 1M items, most of them with low impacts that
rarely lift a document into the top 10. This caps every posting list at its ``N`` highest impacts
(term-wise static pruning: a term keeps the postings whose impact is at least its N-th largest, so
ties at the cut are kept), rebuilds the Lucene index of a corpus size of the run from its stored
quantized vectors (the same documents and impacts, less the pruned postings), and measures it
exactly as ``lexret compare`` does (a process of its own: latency one query at a time, throughput
at 1 and 2 threads) with the run's own caption queries: R@1/5/10, postings per query, index bytes
and the throughput ratio against that run's FAISS flat.

    python tools/bench_static_pruning.py --compare-dir runs/compare \
        --data ../shared/flickr8k/captions.jsonl --split val --max-postings 200000,50000 --sizes 1000000

Writes ``COMPARE_DIR/static_pruning.json`` (one record per corpus size per cap).
"""

from __future__ import annotations

import argparse
import logging
import shutil

import numpy as np
from _compare_run import add_run_arguments, open_run

from lexret.compare import postings_per_query
from lexret.data import load_captions
from lexret.evaluation import SplitIds
from lexret.fileio import write_json
from lexret.index_meta import read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.measure import measure_in_subprocess
from lexret.metrics import evaluate
from lexret.trec import read_run
from lexret.types import SparseBatch
from lexret.vectors import read_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_static_pruning")


def prune_postings(batch: SparseBatch, cap: int) -> SparseBatch:
    """Keep, for every term, the postings whose value is at least the term's ``cap``-th largest."""
    order = np.lexsort((-batch.values, batch.indices))  # by term, then heaviest first
    terms = batch.indices[order]
    starts = np.searchsorted(terms, np.arange(batch.dim))
    df = np.bincount(batch.indices, minlength=batch.dim)
    thr = np.zeros(batch.dim, dtype=batch.values.dtype)
    long = np.nonzero(df > cap)[0]
    thr[long] = batch.values[order[starts[long] + cap - 1]]
    keep = batch.values >= thr[batch.indices]
    rows = np.repeat(np.arange(len(batch)), batch.terms_per_row())[keep]
    indptr = np.zeros(len(batch) + 1, dtype=batch.indptr.dtype)
    np.cumsum(np.bincount(rows, minlength=len(batch)), out=indptr[1:])
    return SparseBatch(indptr, batch.indices[keep], batch.values[keep], batch.dim)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, "corpus sizes to measure (default: the largest in the run)")
    p.add_argument("--max-postings", default="200000,50000", help="posting-list caps to measure")
    p.add_argument("--keep-indexes", action="store_true", help="keep the pruned indexes (default: removed)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    out, compare = open_run(args.compare_dir)
    try:
        caps = sorted({int(c) for c in args.max_postings.split(",")}, reverse=True)
    except ValueError:
        raise SystemExit(f"--max-postings {args.max_postings!r}: give whole numbers, e.g. 200000,50000") from None
    if not caps or min(caps) < 1:
        raise SystemExit("--max-postings: every cap must be at least 1")
    flat = {r["corpus_size"]: r for r in compare if r["system"] == "dense-faiss-flat"}
    lucene = {r["corpus_size"]: r for r in compare if r["system"] == "sparse-lucene"}
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [max(lucene)]
    missing = [s for s in sizes if s not in lucene or not (out / f"corpus-{s}" / "lucene" / "docvectors.npz").is_file()]
    if missing:
        raise SystemExit(f"--sizes: {out} has no sparse-lucene index with stored vectors at {missing}")

    ids = SplitIds.from_collection(load_captions(args.data, split=args.split))
    qrels = ids.qrels_t2i()
    vocab = default_vocabulary()
    qfile = out / "queries-sparse.npz"
    queries = read_vectors(qfile, vocab).batch

    records = []
    for size in sizes:
        src = out / f"corpus-{size}" / "lucene"
        meta = read_meta(src)
        scale = float(meta["quantization"]["scale"])
        with np.load(src / "docvectors.npz") as z:
            docs = SparseBatch(z["indptr"], z["indices"], z["values"], len(vocab))
        docids = (src / "docids.txt").read_text(encoding="utf-8").split("\n")[: len(docs)]
        base = lucene[size]
        records.append({"corpus_size": size, "max_postings": None, "postings": int(docs.nnz),
                        **{k: base[k] for k in ("R@1", "R@5", "R@10", "index_bytes", "latency_ms_mean",
                                                "latency_ms_p95", "qps_1thread", "qps_2threads",
                                                "postings_per_query")}})  # fmt: skip
        for cap in caps:
            pruned = prune_postings(docs, cap)
            dst = out / f"corpus-{size}" / f"lucene-maxpost{cap}"
            shutil.rmtree(dst, ignore_errors=True)
            # impacts / scale re-quantize to the same integers, and the index keeps the run's scale
            # so that the float caption queries are quantized as for the unpruned index
            floats = SparseBatch(pruned.indptr, pruned.indices, (pruned.values / scale).astype(np.float32), pruned.dim)
            step = 100_000
            chunks = ((docids[a : a + step], floats.slice(a, a + step)) for a in range(0, len(floats), step))
            built = Indexer(vocab, IndexConfig(scale=scale, heap=args.heap)).build(
                chunks, dst, IndexInfo(meta["model_id"], meta.get("modality", "image")), total=len(floats)
            )
            m, run_file = measure_in_subprocess(
                "sparse-lucene", dst, qfile, args.k, out / f"corpus-{size}" / f"runs-maxpost{cap}",
                latency_queries=args.latency_queries, heap=args.heap,
            )  # fmt: skip
            rec = {
                "corpus_size": size,
                "max_postings": cap,
                "postings": int(pruned.nnz),
                **evaluate(read_run(run_file), qrels, ("R@1", "R@5", "R@10")),
                "index_bytes": built["index_bytes"],
                "latency_ms_mean": m.latency_ms_mean,
                "latency_ms_p95": m.latency_ms_p95,
                "qps_1thread": m.qps_1thread,
                "qps_2threads": m.qps_2threads,
                "postings_per_query": postings_per_query(dst / "docvectors.npz", queries),
            }
            records.append(rec)
            log.info("cap %d @ %d: %d postings kept, R@10 %.2f, %.2f ms/query, %.0f qps", cap, size, rec["postings"],
                     rec["R@10"], m.latency_ms_mean, m.qps_1thread)  # fmt: skip
            write_json(out / "static_pruning.json", records)
            if not args.keep_indexes:
                shutil.rmtree(dst, ignore_errors=True)

    head = ["corpus", "max postings / term", "postings", "R@1", "R@5", "R@10", "index MB", "postings/query",
            "ms mean", "ms p95", "qps 1t", "qps 2t", "qps / flat", "bytes / flat"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in records:
        f = flat.get(r["corpus_size"], {})
        cells = [f"{r['corpus_size']:,}", "none" if r["max_postings"] is None else f"{r['max_postings']:,}",
                 f"{r['postings']:,}", f"{r['R@1']:.2f}", f"{r['R@5']:.2f}", f"{r['R@10']:.2f}",
                 f"{r['index_bytes'] / 1e6:.1f}", f"{r['postings_per_query']:,.0f}", f"{r['latency_ms_mean']:.2f}",
                 f"{r['latency_ms_p95']:.2f}", f"{r['qps_1thread']:.0f}", f"{r['qps_2threads']:.0f}",
                 f"{r['qps_1thread'] / f['qps_1thread']:.2f}x" if f else "-",
                 f"{r['index_bytes'] / f['index_bytes']:.3f}" if f else "-"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
