"""Document order, measured: prints figures, asserts nothing.

Builds the same collection twice, in the input order (``--reorder none``) and reordered by
recursive graph bisection (``bp``), and reports for each: reordering and build time, index bytes
(all files and the postings file ``.doc``), the log-gap estimate of docid-gap bits per posting,
and search latency / throughput of one thread at k = 10 (``lexret.measure``, a process per
system). It also checks that both indexes return the same ranked lists.

    python tools/bench_reorder.py --docvectors runs/compare/corpus-100000/lucene/docvectors.npz \\
        --query-vectors runs/compare/queries-sparse.npz
    python tools/bench_reorder.py --docs 20000      # synthetic clustered collection
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.measure import measure_in_subprocess
from lexret.quantize import Quantizer
from lexret.reorder import bp_order, log_gap_bits
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.trec import read_run
from lexret.types import SparseBatch
from lexret.vectors import read_vectors, write_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_reorder")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docvectors", default=None, help="an index's docvectors.npz (docids.txt beside)")
    p.add_argument("--query-vectors", default=None, help="query vector file (float weights, quantized with --scale)")
    p.add_argument("--scale", type=float, default=100.0, help="scale the --docvectors were quantized with")
    p.add_argument("--docs", type=int, default=20_000, help="synthetic documents when no --docvectors")
    p.add_argument("--queries", type=int, default=1000, help="queries to run (the first N)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    vocab = default_vocabulary()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-bench-reorder-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.docvectors:
        with np.load(args.docvectors) as z:
            docs = SparseBatch(z["indptr"], z["indices"], z["values"], len(vocab))
        ids = (Path(args.docvectors).parent / "docids.txt").read_text(encoding="utf-8").splitlines()
    else:
        docs = Quantizer(args.scale)(zipf_batch(args.docs, len(vocab), 48, seed=0))
        ids = synthetic_ids(args.docs)
    if args.query_vectors:
        qv = read_vectors(args.query_vectors, vocab)
        qids, queries = qv.ids[: args.queries], qv.batch.slice(0, args.queries)
    else:
        qids, queries = synthetic_ids(args.queries, "q"), zipf_batch(args.queries, len(vocab), 24, seed=1)
    # both sides as integer impacts; the indexes use scale 1 so nothing is quantized twice
    qfile = work / "queries.npz"
    write_vectors(qfile, qids, Quantizer(args.scale)(queries), vocab, {})
    try:
        t = time.perf_counter()
        order = bp_order(docs)
        t_bp = time.perf_counter() - t
        bits = {"none": log_gap_bits(docs) / docs.nnz, "bp": log_gap_bits(docs, order) / docs.nnz}
        rows, runs = [], {}
        for method in ("none", "bp"):
            cfg = IndexConfig(scale=1.0, threads=2, reorder=method, reorder_window=max(1, len(docs)),
                              store_vectors=False)  # fmt: skip
            t = time.perf_counter()
            meta = Indexer(vocab, cfg).build([(ids, docs)], work / method, IndexInfo("bench", "unknown"))
            build_s = time.perf_counter() - t
            doc_bytes = sum(v for f, v in meta["files"].items() if f.endswith(".doc"))
            m, run_file = measure_in_subprocess(
                "sparse-lucene", work / method, qfile, args.k, work / f"runs-{method}",
                latency_queries=min(1000, len(qids)),
            )  # fmt: skip
            runs[method] = read_run(run_file)
            rows.append((method, build_s, meta["index_bytes"], doc_bytes, bits[method], m))
        same = sum(runs["none"][q] == runs["bp"][q] for q in runs["none"])
        what = args.docvectors or "synthetic Zipf collection"
        print(f"\n{len(docs):,} documents ({what}), {docs.terms_per_row().mean():.1f} terms each; "
              f"{len(qids):,} queries, k={args.k}; BP order computed in {t_bp:.1f}s")  # fmt: skip
        print(f"{'order':>6}{'build s':>9}{'index MB':>10}{'.doc MB':>9}{'gap bits':>10}"
              f"{'ms mean':>9}{'ms p95':>8}{'qps 1t':>8}{'qps 2t':>8}")  # fmt: skip
        for method, build_s, nbytes, doc_bytes, b, m in rows:
            lat = f"{m.latency_ms_mean:>9.3f}{m.latency_ms_p95:>8.3f}{m.qps_1thread:>8.0f}{m.qps_2threads:>8.0f}"
            print(f"{method:>6}{build_s:>9.1f}{nbytes / 1e6:>10.2f}{doc_bytes / 1e6:>9.2f}{b:>10.2f}{lat}")
        print(f"identical ranked lists: {same} of {len(runs['none'])} queries")
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
