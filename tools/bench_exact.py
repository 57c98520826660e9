"""The exact term-at-a-time engine (lexret.backends.exact) on an index folder's stored vectors:
CPU time and wall time per query, one query at a time and in batches, k and threads varied.

CPU time (``time.thread_time`` of the calling thread, or ``process_time`` with threads) is what the
engine costs; wall time is what a user waits, and on a shared machine it also holds the waiting for
a core. Both are printed, with nanoseconds per posting added (CPU).

python tools/bench_exact.py --index runs/compare/corpus-1001000/lucene --queries runs/compare/queries-sparse.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="index folder with docvectors.npz (built by `lexret index`)")
    p.add_argument("--queries", required=True, help="query vector file (float weights: quantized by the index)")
    p.add_argument("--num-queries", type=int, default=1000, help="queries used (the first N)")
    p.add_argument("--k", default="10,1000", help="comma-separated k values")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts for the batch runs")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)

    from lexret.searcher import Searcher
    from lexret.vectors import read_vectors
    from lexret.vocab import load_vocabulary

    vocab = load_vocabulary(None)
    qs = read_vectors(args.queries, vocab)
    t = time.perf_counter()
    searcher = Searcher(args.index, vocab, backend="exact")
    load_s = time.perf_counter() - t
    engine = searcher._exact
    q = searcher.prepare(qs.batch).slice(0, args.num_queries)
    qids = qs.ids[: len(q)]
    print(f"{engine.num_docs:,} documents, {engine.nbytes / 1e6:.1f} MB of postings, loaded in {load_s:.1f} s; "
          f"{len(q)} queries, {q.terms_per_row().mean():.1f} terms each")  # fmt: skip
    engine.search(qids[:50], q.slice(0, 50), 10)  # warm-up
    rows = []
    for k in (int(x) for x in args.k.split(",")):
        lat, cpu = np.empty(len(q)), np.empty(len(q))
        for i in range(len(q)):
            c, w = time.thread_time(), time.perf_counter()
            engine.search([qids[i]], q.slice(i, i + 1), k, threads=1)
            lat[i], cpu[i] = time.perf_counter() - w, time.thread_time() - c
        rows.append({"k": k, "mode": "one at a time", "threads": 1, "wall_ms_p50": 1e3 * float(np.median(lat)),
                     "cpu_ms_p50": 1e3 * float(np.median(cpu)), "qps_wall": len(q) / lat.sum()})  # fmt: skip
        for threads in (int(x) for x in args.threads.split(",")):
            c, w = time.process_time(), time.perf_counter()
            engine.search(qids, q, k, threads=threads)
            wall, cpu_s = time.perf_counter() - w, time.process_time() - c
            st = engine.last_stats
            rows.append({
                "k": k, "mode": "batch", "threads": threads, "qps_wall": len(q) / wall,
                "cpu_ms_per_query": 1e3 * cpu_s / len(q), "ns_per_posting_cpu": 1e9 * cpu_s / max(1, st.postings),
                "postings_per_query": st.postings_per_query,
            })  # fmt: skip
    cols = [("wall ms p50", "wall_ms_p50", "{:.2f}"), ("CPU ms p50", "cpu_ms_p50", "{:.2f}"),
            ("qps (wall)", "qps_wall", "{:.0f}"), ("CPU ms/query", "cpu_ms_per_query", "{:.2f}"),
            ("ns/posting (CPU)", "ns_per_posting_cpu", "{:.2f}"),
            ("postings/query", "postings_per_query", "{:,.0f}")]  # fmt: skip
    print("| k | mode | threads | " + " | ".join(c for c, _, _ in cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = [fmt.format(r[key]) if key in r else "-" for _, key, fmt in cols]
        print(f"| {r['k']} | {r['mode']} | {r['threads']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_s": load_s, "num_docs": engine.num_docs, "rows": rows}, indent=1))
    searcher.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
