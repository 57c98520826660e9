"""Query-term pruning at scale, measured on a finished ``lexret compare`` run: prints figures, asserts
nothing.

Lucene's cost per query grows with the postings its terms hold, and a caption's weakest terms hold
many postings for little score. This keeps each caption query's ``k`` heaviest terms (4, 8, 16,
32, ...), searches the compare run's own Lucene index of each corpus size with the same measurement
as ``lexret compare`` (a process of its own: latency one query at a time, throughput at 1 and 2
threads, peak memory), and prints R@1/5/10, postings read per query and the throughput ratio
against that run's FAISS flat. No index is rebuilt, so the documents are exactly those of
``compare.json``.

    python tools/bench_query_terms.py --compare-dir runs/compare \
        --data ../shared/flickr8k/captions.jsonl --split val --query-top-k 4,8,16,32

Writes ``COMPARE_DIR/query_terms.json`` (one record per corpus size per ``k``).
"""

from __future__ import annotations

import argparse
import logging

from _compare_run import add_run_arguments, open_run

from lexret.compare import postings_per_query
from lexret.data import load_captions
from lexret.evaluation import SplitIds
from lexret.fileio import write_json
from lexret.measure import measure_in_subprocess
from lexret.metrics import evaluate
from lexret.trec import read_run
from lexret.vectors import read_vectors, write_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_query_terms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, "corpus sizes to measure (default: every one in the run)")
    p.add_argument("--query-top-k", default="4,8,16,32", help="query lengths (terms) to measure")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    out, compare = open_run(args.compare_dir)
    flat = {r["corpus_size"]: r for r in compare if r["system"] == "dense-faiss-flat"}
    sizes = sorted({r["corpus_size"] for r in compare if r["system"] == "sparse-lucene"})
    if args.sizes:
        wanted = {int(s) for s in args.sizes.split(",")}
        sizes = [s for s in sizes if s in wanted]
        if not sizes:
            raise SystemExit(f"--sizes {args.sizes}: {out / 'compare.json'} has no sparse-lucene run at those sizes")
    ks = sorted({int(k) for k in args.query_top_k.split(",")})

    ids = SplitIds.from_collection(load_captions(args.data, split=args.split))
    qrels = ids.qrels_t2i()
    vocab = default_vocabulary()
    queries = read_vectors(out / "queries-sparse.npz", vocab)
    if queries.ids != ids.caption_ids:
        raise SystemExit(f"{out / 'queries-sparse.npz'} does not hold the captions of {args.data} (split {args.split})")
    full_terms = float(queries.batch.terms_per_row().mean())

    records = []
    for k in ks:
        pruned = queries.batch.top_k(k)
        qfile = out / f"queries-sparse-top{k}.npz"
        write_vectors(qfile, queries.ids, pruned, vocab, queries.meta)
        for size in sizes:
            size_dir = out / f"corpus-{size}"
            m, run_file = measure_in_subprocess(
                "sparse-lucene", size_dir / "lucene", qfile, args.k, size_dir / f"runs-query-top{k}",
                latency_queries=args.latency_queries, heap=args.heap,
            )  # fmt: skip
            rec = {
                "system": "sparse-lucene",
                "corpus_size": size,
                "query_top_k": k,
                "avg_query_terms": round(float(pruned.terms_per_row().mean()), 2),
                **evaluate(read_run(run_file), qrels, ("R@1", "R@5", "R@10")),
                "postings_per_query": postings_per_query(size_dir / "lucene" / "docvectors.npz", pruned),
                "latency_ms_mean": m.latency_ms_mean,
                "latency_ms_p95": m.latency_ms_p95,
                "qps_1thread": m.qps_1thread,
                "qps_2threads": m.qps_2threads,
                "peak_rss_bytes": m.peak_rss_bytes,
            }
            if size in flat:
                rec["qps_over_faiss_flat_1thread"] = round(m.qps_1thread / flat[size]["qps_1thread"], 3)
                rec["faiss_flat_R@10"] = flat[size]["R@10"]
            records.append(rec)
            log.info("query top-%d @ %d: R@10 %.2f, %.2f ms/query, %.0f qps", k, size, rec["R@10"],
                     m.latency_ms_mean, m.qps_1thread)  # fmt: skip
            write_json(out / "query_terms.json", records)

    print(f"queries as encoded: {full_terms:.1f} terms on average")
    head = ["corpus", "query top-k", "terms", "R@1", "R@5", "R@10", "postings/query", "ms mean", "ms p95",
            "qps 1t", "qps 2t", "qps / flat", "flat R@10"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in sorted(records, key=lambda r: (r["corpus_size"], r["query_top_k"])):
        cells = [f"{r['corpus_size']:,}", str(r["query_top_k"]), f"{r['avg_query_terms']:.1f}", f"{r['R@1']:.2f}",
                 f"{r['R@5']:.2f}", f"{r['R@10']:.2f}", f"{r['postings_per_query']:,.0f}",
                 f"{r['latency_ms_mean']:.2f}", f"{r['latency_ms_p95']:.2f}", f"{r['qps_1thread']:.0f}",
                 f"{r['qps_2threads']:.0f}", f"{r.get('qps_over_faiss_flat_1thread', float('nan')):.2f}x",
                 f"{r.get('faiss_flat_R@10', float('nan')):.2f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
