"""Measure one retrieval system in a process of its own.

A measurement loads one system (Lucene impact index, the exact numba engine, the impact-ordered
budget engine, scipy brute force, FAISS flat or HNSW) from disk, runs the queries, and reports
latency per query at one thread (mean, p50, p95; search only), throughput at one and two threads,
the run (for effectiveness) and the peak resident memory of the process. Running it in a child
process (``python -m lexret.measure``) makes the peak memory that of the search alone, and keeps one
system's JVM or thread pools from disturbing another.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lexret.backends.impact import ImpactParams
from lexret.backends.lucene_two_phase import TwoPhaseParams
from lexret.trec import Run

WARMUP_QUERIES = 1000
SYSTEMS = (
    "sparse-lucene", "sparse-exact", "sparse-impact", "sparse-seismic", "sparse-lucene-2phase", "sparse-scipy",
    "dense-faiss-flat", "dense-faiss-hnsw", "sparse-lucene-sharded",
)  # fmt: skip
# a sharded Lucene index (lexret.distributed): the shards searched one after the other, or by Ray actors
SHARDED = "sparse-lucene-sharded"
# the Searcher backend behind each sparse system (all of them run through lexret.searcher)
SEARCHER_BACKENDS = {
    "sparse-lucene": "lucene", "sparse-exact": "exact", "sparse-impact": "impact", "sparse-seismic": "seismic",
    "sparse-lucene-2phase": "lucene-2phase", "sparse-scipy": "scipy",
}  # fmt: skip
LUCENE_CHUNK = 1000  # queries per Lucene call: all hits of a call sit in the JVM heap


@dataclass
class Measurement:
    system: str
    num_queries: int
    latency_ms_mean: float
    latency_ms_p50: float
    latency_ms_p95: float
    qps_1thread: float
    qps_2threads: float
    peak_rss_bytes: int
    # work per query as the engine counts it (postings added, documents or blocks scored); None when
    # the engine does not say
    postings_per_query: float | None = None
    load_s: float | None = None  # opening the system: reading files, building in-memory structures


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process since it started.

    ``ru_maxrss`` survives ``exec``: a child forked from a large parent (torch and the models
    loaded) would report the parent's size. ``VmHWM`` belongs to the address space, which ``exec``
    replaces, so it is read first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _timed_latencies(search_one: Callable[[int], object], n: int) -> np.ndarray:
    lat = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        search_one(i)
        lat[i] = time.perf_counter() - t
    return lat * 1000.0


def measure(
    system: str,
    artifact: Path,
    queries: Path,
    k: int,
    *,
    latency_queries: int | None = None,
    heap: str | None = None,
    vocab_path: str | None = None,
    ray: str | None = None,
    two_phase: TwoPhaseParams | None = None,
    impact: ImpactParams | None = None,
) -> tuple[Measurement, Run]:
    """Load ``system`` from ``artifact`` and measure it with the queries in ``queries`` (``ray``: the
    ``--ray`` spec whose actors search the shards of ``sparse-lucene-sharded``; ``two_phase``: the
    parameters of ``sparse-lucene-2phase``, default :class:`TwoPhaseParams`; ``impact``: those of
    ``sparse-impact``, default :class:`ImpactParams`)."""
    qids: list[str]
    batch_search: Callable[[Sequence[str], Any, int], Run]
    work: Callable[[], float] | None = None  # the engine's own count of the last batch's work per query
    close: Callable[[], None] | None = None
    t_load = time.perf_counter()
    if system == SHARDED:
        qids, qsel, batch_search, one, close = _sharded_system(artifact, queries, k, heap, vocab_path, ray)
    elif system in SEARCHER_BACKENDS:
        from lexret.searcher import Searcher
        from lexret.vectors import read_vectors
        from lexret.vocab import load_vocabulary

        vocab = load_vocabulary(vocab_path)
        qs = read_vectors(queries, vocab)
        qids = qs.ids
        searcher = Searcher(
            artifact, vocab, backend=SEARCHER_BACKENDS[system], heap=heap, two_phase=two_phase, impact=impact
        )
        qint = searcher.prepare(qs.batch)
        if system == "sparse-lucene":
            lucene = searcher._lucene
            toks = vocab.tokens
            qdicts = [{toks[j]: int(v) for j, v in zip(*(x.tolist() for x in qint.row(i)))} for i in range(len(qint))]

            def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
                run: Run = {}
                for a in range(0, len(ids), LUCENE_CHUNK):  # chunks bound the JVM heap
                    run.update(lucene.search(ids[a : a + LUCENE_CHUNK], sel[a : a + LUCENE_CHUNK], k, threads=threads))
                return run

            qsel: Any = qdicts

            def one(i: int) -> object:
                return lucene.search([qids[i]], [qdicts[i]], k, threads=1)
        elif system in ("sparse-exact", "sparse-impact"):
            exact = searcher._exact

            def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
                return exact.search(ids, sel, k, threads=threads)

            qsel = qint

            def one(i: int) -> object:
                return exact.search([qids[i]], qint.slice(i, i + 1), k, threads=1)

            def work() -> float:
                return exact.last_stats.postings_per_query
        elif system == "sparse-seismic":
            seismic, params = searcher._seismic, searcher.seismic_params

            def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
                return seismic.search(ids, sel, k, params, threads=threads)

            qsel = qint

            def one(i: int) -> object:
                return seismic.search([qids[i]], qint.slice(i, i + 1), k, params, threads=1)
        elif system == "sparse-lucene-2phase":
            two_phase = searcher._two_phase

            def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
                run: Run = {}
                for a in range(0, len(ids), LUCENE_CHUNK):
                    chunk = sel.slice(a, a + LUCENE_CHUNK)
                    run.update(two_phase.search(ids[a : a + LUCENE_CHUNK], chunk, k, threads=threads))
                return run

            qsel = qint

            def one(i: int) -> object:
                return two_phase.search([qids[i]], qint.slice(i, i + 1), k, threads=1)

            df = two_phase.df
            phase1 = [two_phase.phase1_terms(*qint.row(i))[0] for i in range(len(qint))]

            def work() -> float:  # postings in the phase-1 lists (Lucene may skip some of them)
                return float(np.mean([df[t].sum() for t in phase1])) if phase1 else 0.0
        else:
            backend = searcher._scipy

            def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
                return backend.search(ids, sel, k)  # scipy's sparse product runs on one thread

            qsel = qint

            def one(i: int) -> object:
                return backend.search([qids[i]], qint.slice(i, i + 1), k)
    elif system in ("dense-faiss-flat", "dense-faiss-hnsw"):
        from lexret.backends.dense import FaissBackend

        with np.load(queries) as z:
            qids = [str(x) for x in z["ids"]]
            qvec = np.ascontiguousarray(z["vectors"], dtype=np.float32)
        docids = (artifact / "docids.txt").read_text(encoding="utf-8").splitlines()
        fb = FaissBackend.load(artifact / "faiss.index", docids)
        qsel = qvec

        def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
            FaissBackend.set_threads(threads)
            return fb.search(ids, sel, k)

        def one(i: int) -> object:
            return fb.search([qids[i]], qvec[i : i + 1], k)

        FaissBackend.set_threads(1)
    else:
        raise ValueError(f"unknown system {system!r}; one of {SYSTEMS}")

    load_s = time.perf_counter() - t_load
    n_lat = min(len(qids), latency_queries or len(qids))
    n_warm = min(len(qids), WARMUP_QUERIES)
    warm = qsel.slice(0, n_warm) if hasattr(qsel, "slice") else qsel[:n_warm]
    batch_search(qids[:n_warm], warm, 1)  # warm-up: JIT compilation, page cache, lazy allocations
    lat = _timed_latencies(one, n_lat)
    t = time.perf_counter()
    run = batch_search(qids, qsel, 1)
    qps1 = len(qids) / (time.perf_counter() - t)
    postings = work() if work is not None else None
    t = time.perf_counter()
    batch_search(qids, qsel, 2)
    qps2 = len(qids) / (time.perf_counter() - t)
    if close is not None:
        close()
    m = Measurement(
        system=system,
        num_queries=len(qids),
        latency_ms_mean=float(lat.mean()),
        latency_ms_p50=float(np.percentile(lat, 50)),
        latency_ms_p95=float(np.percentile(lat, 95)),
        qps_1thread=qps1,
        qps_2threads=qps2,
        peak_rss_bytes=_peak_rss_bytes(),
        postings_per_query=postings,
        load_s=round(load_s, 3),
    )
    return m, run


def _sharded_system(
    artifact: Path, queries: Path, k: int, heap: str | None, vocab_path: str | None, ray: str | None
) -> tuple[list[str], Any, Callable[[Sequence[str], Any, int], Run], Callable[[int], object], Callable[[], None]]:
    """The query ids and vectors, a batch search, a one-query search and the closer of a sharded index."""
    from lexret.distributed.sharded_search import ShardedSearcher
    from lexret.vectors import read_vectors
    from lexret.vocab import load_vocabulary

    vocab = load_vocabulary(vocab_path)
    qs = read_vectors(queries, vocab)
    searcher = ShardedSearcher(artifact, vocab, heap=heap, ray=ray)
    qids, batch = qs.ids, qs.batch

    def batch_search(ids: Sequence[str], sel: Any, threads: int) -> Run:
        return searcher.search(ids, sel, k, threads=threads, chunk_size=LUCENE_CHUNK, progress=False)

    def one(i: int) -> object:
        return searcher.search([qids[i]], batch.slice(i, i + 1), k, threads=1, progress=False)

    return qids, batch, batch_search, one, searcher.close


def measure_in_subprocess(
    system: str,
    artifact: Path,
    queries: Path,
    k: int,
    out_dir: Path,
    *,
    latency_queries: int | None = None,
    heap: str | None = None,
    ray: str | None = None,
    two_phase: TwoPhaseParams | None = None,
    impact: ImpactParams | None = None,
) -> tuple[Measurement, Path]:
    """Run :func:`measure` in a fresh process; returns the measurement and the run file it wrote (``ray``:
    the spec the child joins for a sharded system, see
    :func:`lexret.distributed.cluster.address_for_children`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = out_dir / f"{system}.measure.json"
    run_file = out_dir / f"{system}.trec"
    cmd = [sys.executable, "-m", "lexret.measure", system, str(artifact), str(queries), str(k), str(result)]
    cmd += ["--run", str(run_file)]
    if latency_queries:
        cmd += ["--latency-queries", str(latency_queries)]
    if heap:
        cmd += ["--heap", heap]
    if ray:
        cmd += ["--ray", ray]
    if two_phase is not None:
        cmd += ["--two-phase", json.dumps(asdict(two_phase))]
    if impact is not None:
        cmd += ["--impact", json.dumps(asdict(impact))]
    env = dict(os.environ, OMP_NUM_THREADS="2", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        from lexret.errors import LexretError

        raise LexretError(f"measuring {system} failed:\n{proc.stderr[-3000:]}")
    return Measurement(**json.loads(result.read_text())), run_file


def _main(argv: list[str]) -> int:
    from lexret.trec import write_run

    p = argparse.ArgumentParser(prog="python -m lexret.measure")
    p.add_argument("system", choices=SYSTEMS)
    p.add_argument("artifact", type=Path)
    p.add_argument("queries", type=Path)
    p.add_argument("k", type=int)
    p.add_argument("out", type=Path)
    p.add_argument("--run", type=Path, default=None)
    p.add_argument("--latency-queries", type=int, default=None)
    p.add_argument("--heap", default=None)
    p.add_argument("--ray", default=None, help="with sparse-lucene-sharded: search the shards with Ray actors")
    p.add_argument("--two-phase", default=None, help="sparse-lucene-2phase: TwoPhaseParams as JSON")
    p.add_argument("--impact", default=None, help="sparse-impact: ImpactParams as JSON")
    args = p.parse_args(argv)
    two_phase = TwoPhaseParams(**json.loads(args.two_phase)) if args.two_phase else None
    impact = ImpactParams(**json.loads(args.impact)) if args.impact else None
    m, run = measure(
        args.system, args.artifact, args.queries, args.k, latency_queries=args.latency_queries, heap=args.heap,
        ray=args.ray, two_phase=two_phase, impact=impact,
    )  # fmt: skip
    args.out.write_text(json.dumps(asdict(m), indent=1))
    if args.run:
        write_run(args.run, run, tag=args.system)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
