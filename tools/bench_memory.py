"""Peak memory of `lexret search` as queries and k grow: prints figures, asserts nothing.

Runs ``lexret search`` (Lucene backend, JVM heap bounded by ``--heap``) in a child process over
one synthetic index with Q queries at k hits, and reports the child's peak resident memory (the
JVM included, since pyserini runs it in-process) and the run file size. Results stream to the run
file chunk by chunk, so the peak should depend on the chunk size, not on Q.

    python tools/bench_memory.py --queries 10000,100000 --k 1000
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.vectors import write_vectors
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_memory")


def _child_peak_rss(cmd: list[str]) -> tuple[int, float]:
    """Run ``cmd``; return the peak RSS (bytes) of that child alone and its wall time."""
    # RUSAGE_CHILDREN reports the largest child so far: measure each run from a fresh wrapper process
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(r.returncode)"
    )
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"search failed:\n{proc.stderr[-2000:]}")
    return int(proc.stdout.strip().splitlines()[-1]), wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--queries", default="10000,100000", help="comma-separated query counts")
    p.add_argument("--query-terms", type=int, default=8)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--chunk-sizes", default="1000", help="comma-separated chunk sizes")
    p.add_argument("--heap", default="1g", help="JVM heap of the search process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    vocab = default_vocabulary()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-bench-mem-"))
    rows = []
    try:
        docs = zipf_batch(args.docs, len(vocab), 64, seed=0)
        Indexer(vocab, IndexConfig(threads=2, store_vectors=False)).build(
            [(synthetic_ids(args.docs), docs)], work / "index", IndexInfo("synthetic", "synthetic")
        )
        for nq in (int(x) for x in args.queries.split(",")):
            qfile = work / f"queries-{nq}.npz"
            write_vectors(qfile, synthetic_ids(nq, "q"), zipf_batch(nq, len(vocab), args.query_terms, seed=1), vocab)
            for chunk in (int(x) for x in args.chunk_sizes.split(",")):
                run = work / "run.trec"
                cmd = [sys.executable, "-m", "lexret", "-q", "search", "--index", str(work / "index"),
                       "--queries", str(qfile), "--k", str(args.k), "--out", str(run), "--chunk-size", str(chunk),
                       "--threads", str(args.threads), "--heap", args.heap]  # fmt: skip
                rss, wall = _child_peak_rss(cmd)
                rows.append((nq, chunk, rss, wall, run.stat().st_size))
                run.unlink()
        print(f"\n{args.docs:,} docs, k={args.k}, JVM heap {args.heap}, {args.threads} threads")
        print(f"{'queries':>9}{'chunk':>7}{'peak RSS MB':>13}{'wall s':>9}{'run file MB':>13}")
        for nq, chunk, rss, wall, size in rows:
            print(f"{nq:>9,}{chunk:>7}{rss / 1e6:>13.0f}{wall:>9.1f}{size / 1e6:>13.0f}")
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
