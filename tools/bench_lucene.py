"""Lucene search settings, measured: prints figures, asserts nothing.

On one synthetic collection (Zipf-like, like model output) this measures, for Lucene impact search:

- segments: an index as written (several segments) vs ``--optimize`` (force-merged to one);
- k: 10, 100, 1000, splitting each query's time into the search inside the JVM and the transfer
  of hits back to Python (the part that grows with k);
- query length: short (8 terms) vs long (64 terms);
- threads (1, 2) and chunk size (queries per JVM batch) for throughput.

    python tools/bench_lucene.py --docs 100000 --queries 1000
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
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.types import SparseBatch
from lexret.vectors import read_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_lucene")


def _split_timing(backend, jqueries: list, k: int) -> tuple[float, float]:
    """Mean ms per query inside the JVM search call, and for moving the hits to Python."""
    t_search = t_transfer = 0.0
    for jq in jqueries:
        t0 = time.perf_counter()
        hits = backend._searcher.search(jq, k)
        t1 = time.perf_counter()
        [(h.docid, h.score) for h in hits]
        t2 = time.perf_counter()
        t_search += t1 - t0
        t_transfer += t2 - t1
    n = len(jqueries)
    return 1000 * t_search / n, 1000 * t_transfer / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--doc-terms", type=int, default=64)
    p.add_argument("--work-dir", default=None)
    p.add_argument(
        "--docvectors",
        default=None,
        help="real documents instead: docvectors.npz of an index folder (quantized; docids.txt beside it)",
    )
    p.add_argument("--query-vectors", default=None, help="real queries instead: a vector file (float weights)")
    p.add_argument("--scale", type=float, default=100.0, help="scale the --docvectors were quantized with")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    vocab = default_vocabulary()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-bench-lucene-"))
    if args.docvectors:  # already integer impacts: indexed as they are (scale 1), queries quantized here
        with np.load(args.docvectors) as z:
            docs = SparseBatch(z["indptr"], z["indices"], z["values"], len(vocab))
        ids = (Path(args.docvectors).parent / "docids.txt").read_text(encoding="utf-8").splitlines()
        args.docs, index_scale = len(ids), 1.0
    else:
        docs = zipf_batch(args.docs, len(vocab), args.doc_terms, seed=0)
        ids = synthetic_ids(args.docs)
        index_scale = 100.0

    def make_queries(q_terms: int, seed: int) -> SparseBatch:
        if args.query_vectors:
            real = read_vectors(args.query_vectors, vocab).batch.slice(0, args.queries)
            return Quantizer(scale=args.scale)(real.top_k(q_terms))
        return zipf_batch(args.queries, len(vocab), q_terms, seed=seed)

    rows = []
    try:
        builds = {}
        for optimize in (False, True):
            t = time.perf_counter()
            icfg = IndexConfig(scale=index_scale, threads=2, optimize=optimize, store_vectors=False)
            meta = Indexer(vocab, icfg).build(
                [(ids, docs)], work / f"opt{int(optimize)}", IndexInfo("synthetic", "synthetic"), total=args.docs
            )
            builds[optimize] = (time.perf_counter() - t, meta["index_bytes"])
        for q_terms in (8, 16, 32) if args.query_vectors else (8, 32, 64):
            queries = make_queries(q_terms, seed=q_terms)
            for optimize in (False, True):
                searcher = Searcher(work / f"opt{int(optimize)}", vocab, backend="lucene")
                lucene = searcher._lucene
                qint = searcher.prepare(queries)
                toks = vocab.tokens
                jqs = [
                    lucene._jquery({toks[j]: int(v) for j, v in zip(*(x.tolist() for x in qint.row(i)))})
                    for i in range(len(qint))
                ]
                _split_timing(lucene, jqs, 10)  # warm-up
                for k in (10, 100, 1000):
                    s_ms, t_ms = _split_timing(lucene, jqs, k)
                    rows.append((q_terms, optimize, k, s_ms, t_ms))
                searcher.close()
        what = f"{args.docvectors} ({docs.terms_per_row().mean():.1f} terms)" if args.docvectors else "synthetic"
        print(f"\n{args.docs:,} docs, {what}; {len(queries):,} queries; one thread")
        for optimize, (b, nbytes) in builds.items():
            print(f"  optimize={optimize}: build {b:.1f}s, {nbytes / 1e6:.1f} MB")
        print(f"{'q terms':>8}{'optimize':>10}{'k':>6}{'search ms':>11}{'transfer ms':>13}{'total ms':>10}")
        for q_terms, optimize, k, s_ms, t_ms in rows:
            print(f"{q_terms:>8}{optimize!s:>10}{k:>6}{s_ms:>11.3f}{t_ms:>13.3f}{s_ms + t_ms:>10.3f}")

        # throughput: threads x chunk size, 32-term queries, k=10, optimized index
        queries = make_queries(32, seed=99)
        qids = synthetic_ids(len(queries), "q")
        searcher = Searcher(work / "opt1", vocab, backend="lucene")
        searcher.search(qids, queries, 10, progress=False)
        print(f"\n{'threads':>8}{'chunk':>8}{'qps':>10}   (32-term queries, k=10, optimized index)")
        for threads in (1, 2):
            for chunk in (100, 1000, 10000):
                t = time.perf_counter()
                searcher.search(qids, queries, 10, threads=threads, chunk_size=chunk, progress=False)
                print(f"{threads:>8}{chunk:>8}{args.queries / (time.perf_counter() - t):>10.1f}")
        searcher.close()
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
