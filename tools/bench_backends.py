"""Benchmark the search backends on a synthetic collection: prints figures, asserts nothing.

For N documents (Zipf-like sparse vectors over the 30,522-term vocabulary, and random 512-d
dense vectors for FAISS) and Q queries it reports build time, index bytes on disk, latency per
query at one thread (mean, p50, p95; search only) and throughput at two threads for:
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
from pathlib import Path

import numpy as np

from lexret.backends.dense import FaissBackend
from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_backends")


def _latencies(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t
    return out * 1000.0


def _summary(lat_ms: np.ndarray) -> dict[str, float]:
    return {
        "latency_ms_mean": float(lat_ms.mean()),
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p95": float(np.percentile(lat_ms, 95)),
    }


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(
    n_docs: int, n_queries: int, doc_terms: int, query_terms: int, k: int, dense_dim: int, work: Path, seed: int = 0
) -> dict[str, dict[str, float]]:
    vocab = default_vocabulary()
    log.info("generating %d documents and %d queries", n_docs, n_queries)
    docs = zipf_batch(n_docs, len(vocab), doc_terms, seed=seed)
    queries = zipf_batch(n_queries, len(vocab), query_terms, seed=seed + 1)
    docids, qids = synthetic_ids(n_docs), synthetic_ids(n_queries, "q")
    results: dict[str, dict[str, float]] = {}

    # --- Lucene impact ------------------------------------------------------------------------
    index_dir = work / "lucene"
    t = time.perf_counter()
    meta = Indexer(vocab, IndexConfig(threads=2, store_vectors=False)).build(
        [(docids, docs)], index_dir, IndexInfo("synthetic", "synthetic"), total=n_docs
    )
    build_s = time.perf_counter() - t
    searcher = Searcher(index_dir, vocab, backend="lucene")
    qint = searcher.prepare(queries)
    lucene = searcher._lucene
    toks = vocab.tokens
    qdicts = [{toks[j]: int(v) for j, v in zip(*(x.tolist() for x in qint.row(i)))} for i in range(n_queries)]
    lucene.search(qids, qdicts, k)  # warm-up: JIT compilation and page cache
    lat = _latencies(lambda i: lucene.search([qids[i]], [qdicts[i]], k, threads=1), n_queries)
    t = time.perf_counter()
    lucene.search(qids, qdicts, k, threads=2)
    qps2 = n_queries / (time.perf_counter() - t)
    results["sparse-lucene"] = {
        "build_s": build_s,
        "index_bytes": meta["index_bytes"],
        **_summary(lat),
        "qps_2threads": qps2,
    }
    searcher.close()

    # --- scipy brute force --------------------------------------------------------------------
    t = time.perf_counter()
    qd = Quantizer()(docs)
    scipy_backend = ScipySparseBackend(docids, qd)
    build_s = time.perf_counter() - t
    npz = work / "scipy.npz"
    np.savez(npz, indptr=qd.indptr, indices=qd.indices, values=qd.values)
    lat = _latencies(lambda i: scipy_backend.search([qids[i]], qint.slice(i, i + 1), k), n_queries)
    t = time.perf_counter()
    scipy_backend.search(qids, qint, k)  # scipy's sparse product is single-threaded
    qps2 = n_queries / (time.perf_counter() - t)
    results["sparse-scipy"] = {
        "build_s": build_s,
        "index_bytes": npz.stat().st_size,
        **_summary(lat),
        "qps_2threads": qps2,
    }

    # --- FAISS flat -------------------------------------------------------------------------------
    rng = np.random.default_rng(seed)
    dvec = rng.standard_normal((n_docs, dense_dim), dtype=np.float32)
    qvec = rng.standard_normal((n_queries, dense_dim), dtype=np.float32)
    t = time.perf_counter()
    faiss_backend = FaissBackend.build(docids, dvec, kind="flat")
    build_s = time.perf_counter() - t
    fpath = work / "faiss.index"
    faiss_backend.save(fpath)
    FaissBackend.set_threads(1)
    lat = _latencies(lambda i: faiss_backend.search([qids[i]], qvec[i : i + 1], k), n_queries)
    FaissBackend.set_threads(2)
    t = time.perf_counter()
    faiss_backend.search(qids, qvec, k)
    qps2 = n_queries / (time.perf_counter() - t)
    results[f"dense-faiss-flat-{dense_dim}d"] = {
        "build_s": build_s,
        "index_bytes": fpath.stat().st_size,
        **_summary(lat),
        "qps_2threads": qps2,
    }
    return results


def format_results(results: dict[str, dict[str, float]]) -> str:
    cols = ["build_s", "index_bytes", "latency_ms_mean", "latency_ms_p50", "latency_ms_p95", "qps_2threads"]
    width = max(len(r) for r in results) + 2
    lines = ["system".ljust(width) + "".join(c.rjust(17) for c in cols)]
    for name, vals in results.items():
        cells = [f"{vals[c]:,.0f}" if c == "index_bytes" else f"{vals[c]:.2f}" for c in cols]
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
