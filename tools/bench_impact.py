"""The impact-ordered budget engine (``--backend impact``) against the exact engine on one index folder:
for each postings budget and expansion, the postings a query reads, the share of the exact top-k it
finds (tie-aware: a hit scoring the exact k-th score counts) and CPU / wall milliseconds per query,
one query at a time on one thread.

CPU time (``time.thread_time``) is what the engine costs; wall time is what a user waits, and on a
shared machine it also holds the waiting for a core. Both engines run in this process, one after
the other, so their ratio is measured side by side.

python tools/bench_impact.py --index runs/cmp/corpus-1000000/lucene --queries runs/cmp/queries-sparse.npz \\
    --budgets 135000,270000,540000 --expansions 20,50,100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def _timed(engine, qids: list[str], q, k: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """The run, and CPU and wall seconds of every query searched alone."""
    run: dict = {}
    cpu, wall = np.empty(len(qids)), np.empty(len(qids))
    for i, qid in enumerate(qids):
        c, w = time.thread_time(), time.perf_counter()
        run.update(engine.search([qid], q.slice(i, i + 1), k, threads=1))
        wall[i], cpu[i] = time.perf_counter() - w, time.thread_time() - c
    return run, cpu, wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="index folder with docvectors.npz (built by `lexret index`)")
    p.add_argument("--queries", required=True, help="query vector file (float weights: quantized by the index)")
    p.add_argument("--num-queries", type=int, default=1000, help="queries used (the first N)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--budgets", default="135000,270000,540000", help="comma-separated postings budgets")
    p.add_argument("--expansions", default="20,50,100", help="comma-separated expansions (candidates = k x this)")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)

    from lexret.backends.impact import ImpactParams
    from lexret.metrics import overlap_at_k
    from lexret.searcher import Searcher
    from lexret.vectors import read_vectors
    from lexret.vocab import load_vocabulary

    vocab = load_vocabulary(None)
    qs = read_vectors(args.queries, vocab)
    searcher = Searcher(args.index, vocab, backend="exact")
    q = searcher.prepare(qs.batch).slice(0, args.num_queries)
    qids = qs.ids[: len(q)]
    exact = searcher._exact
    exact.search(qids[:50], q.slice(0, 50), args.k)  # warm-up
    want, cpu, wall = _timed(exact, qids, q, args.k)
    rows = [{"engine": "exact", "postings_per_query": exact.last_stats.postings_per_query,
             "overlap": 1.0, "cpu_ms_p50": 1e3 * float(np.median(cpu)), "wall_ms_p50": 1e3 * float(np.median(wall)),
             "cpu_ms_mean": 1e3 * float(cpu.mean())}]  # fmt: skip
    exact.search(qids, q, args.k)
    rows[0]["postings_per_query"] = exact.last_stats.postings_per_query
    searcher.close()
    budgets, expansions = _ints(args.budgets), [float(x) for x in args.expansions.split(",")]
    params = ImpactParams(max_postings=max(budgets), expansion=max(expansions))
    impact_searcher = Searcher(args.index, vocab, backend="impact", impact=params)
    impact = impact_searcher._exact
    print(f"{impact.num_docs:,} documents; {len(q)} queries, {q.terms_per_row().mean():.1f} terms each, k={args.k}")
    for budget in budgets:
        for expansion in expansions:
            impact.params = ImpactParams(max_postings=budget, expansion=expansion)
            impact.search(qids[:50], q.slice(0, 50), args.k)  # warm-up
            run, cpu, wall = _timed(impact, qids, q, args.k)
            impact.search(qids, q, args.k)
            rows.append({
                "engine": "impact", "budget": budget, "expansion": expansion,
                "postings_per_query": impact.last_stats.postings_per_query, "overlap": overlap_at_k(run, want, args.k),
                "cpu_ms_p50": 1e3 * float(np.median(cpu)), "wall_ms_p50": 1e3 * float(np.median(wall)),
                "cpu_ms_mean": 1e3 * float(cpu.mean()),
            })  # fmt: skip
    impact_searcher.close()
    base = rows[0]["cpu_ms_mean"]
    print(f"{'engine':<8} {'budget':>9} {'x':>5} {'postings/q':>11} {'overlap@k':>9} {'cpu ms p50':>10} "
          f"{'wall ms p50':>11} {'cpu vs exact':>12}")  # fmt: skip
    for r in rows:
        print(f"{r['engine']:<8} {r.get('budget', '-'):>9} {r.get('expansion', '-'):>5} "
              f"{r['postings_per_query']:>11,.0f} {r['overlap']:>9.3f} {r['cpu_ms_p50']:>10.2f} "
              f"{r['wall_ms_p50']:>11.2f} {r['cpu_ms_mean'] / base:>11.2f}x")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"index": args.index, "queries": args.queries, "k": args.k,
                                               "num_queries": len(q), "rows": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
