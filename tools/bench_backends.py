"""Benchmark the search backends on a synthetic collection: prints figures, asserts nothing.

For N documents (Zipf-like sparse vectors over the 30,522-term vocabulary, and random 512-d
dense vectors for FAISS) and Q queries it reports build time, index bytes on disk, latency per
query at one thread (mean, p50, p95; search only), throughput at one and two threads and the peak
memory of the search process (each system is measured in a process of its own) for:
Lucene impact (pyserini), scipy brute force (exact sparse), FAISS IndexFlatIP (512-d).

    python tools/bench_backends.py                 # N=100,000, Q=1,000
    python tools/bench_backends.py --docs 5000 --queries 100 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lexret.backends.dense import FaissBackend
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.measure import measure_in_subprocess
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.vectors import write_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_backends")


def bench(
    n_docs: int, n_queries: int, doc_terms: int, query_terms: int, k: int, dense_dim: int, work: Path, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Build the three systems over one synthetic collection and measure each in its own process."""
    vocab = default_vocabulary()
    log.info("generating %d documents and %d queries", n_docs, n_queries)
    docs = zipf_batch(n_docs, len(vocab), doc_terms, seed=seed)
    queries = zipf_batch(n_queries, len(vocab), query_terms, seed=seed + 1)
    docids, qids = synthetic_ids(n_docs), synthetic_ids(n_queries, "q")
    built: dict[str, tuple[Path, float, int]] = {}

    t = time.perf_counter()
    meta = Indexer(vocab, IndexConfig(threads=2)).build(
        [(docids, docs)], work / "lucene", IndexInfo("synthetic", "synthetic"), total=n_docs
    )
    built["sparse-lucene"] = (work / "lucene", time.perf_counter() - t, meta["index_bytes"])
    # the scipy "index" is the quantized CSR matrix the indexer stored beside Lucene's files
    csr_bytes = (work / "lucene" / "docvectors.npz").stat().st_size
    built["sparse-scipy"] = (work / "lucene", meta["write_seconds"], csr_bytes)
    q_sparse = work / "queries.npz"
    write_vectors(q_sparse, qids, queries, vocab, {"model_id": "synthetic"})

    rng = np.random.default_rng(seed)
    dvec = rng.standard_normal((n_docs, dense_dim), dtype=np.float32)
    qvec = rng.standard_normal((n_queries, dense_dim), dtype=np.float32)
    t = time.perf_counter()
    fb = FaissBackend.build(docids, dvec, kind="flat")
    build_s = time.perf_counter() - t
    (work / "faiss").mkdir()
    fb.save(work / "faiss" / "faiss.index")
    (work / "faiss" / "docids.txt").write_text("\n".join(docids) + "\n", encoding="utf-8")
    built["dense-faiss-flat"] = (work / "faiss", build_s, (work / "faiss" / "faiss.index").stat().st_size)
    q_dense = work / "queries-dense.npz"
    np.savez(q_dense, ids=np.array(qids), vectors=qvec)

    results: dict[str, dict[str, float]] = {}
    for system, (artifact, build_s, nbytes) in built.items():
        log.info("measuring %s", system)
        m, _ = measure_in_subprocess(
            system, artifact, q_sparse if system.startswith("sparse") else q_dense, k, work / "runs"
        )
        name = f"{system}-{dense_dim}d" if system.startswith("dense") else system
        results[name] = {"build_s": build_s, "index_bytes": nbytes, **asdict(m)}
    return results


def format_results(results: dict[str, dict[str, float]]) -> str:
    cols = ["build_s", "index_bytes", "latency_ms_mean", "latency_ms_p50", "latency_ms_p95", "qps_1thread",
            "qps_2threads", "peak_rss_bytes"]  # fmt: skip
    width = max(len(r) for r in results) + 2
    lines = ["system".ljust(width) + "".join(c.rjust(17) for c in cols)]
    for name, vals in results.items():
        cells = [f"{vals[c]:,.0f}" if c.endswith("bytes") else f"{vals[c]:.2f}" for c in cols]
        lines.append(name.ljust(width) + "".join(x.rjust(17) for x in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("--doc-terms", type=int, default=100, help="mean terms per document")
    p.add_argument("--query-terms", type=int, default=32, help="mean terms per query")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dense-dim", type=int, default=512)
    p.add_argument("--work-dir", default=None, help="where to build (default: a temporary folder, removed)")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = bench(args.docs, args.queries, args.doc_terms, args.query_terms, args.k, args.dense_dim, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{args.docs:,} docs (~{args.doc_terms} terms), {args.queries:,} queries (~{args.query_terms} terms), "
        f"k={args.k}, {os.cpu_count()} cores; latency: 1 thread, search only"
    )
    print(format_results(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
