"""Beyond one machine, measured on this one: what Ray and Milvus cost and give (prints, asserts nothing).

- encode: plain ``lexret encode`` against ``--ray local`` with 1 and 2 workers on the same images
  (wall time of the whole command, Ray start-up and model loads included, and images/s);
- sharded index at N documents: build time and search throughput for 1, 2, 4 shards (in process,
  and with one Ray actor per shard) against a single index, with a check that every run equals the
  single index's;
- Milvus (embedded milvus-lite) at N documents: load time, per-query latency and throughput against
  Lucene over the same quantized vectors, with a check of the top-k against Lucene's.

The documents are a compare-style corpus: the encoded images and synthetic distractors a
``lexret compare`` run cached (``--cache``), cut to ``--docs``; the queries are that run's caption
vectors. Bounded: ``--docs``, ``--queries`` and ``--skip-*`` keep it short.

    python tools/bench_scaleout.py --cache /work/runs/base/cache \\
        --queries /work/runs/base/queries-sparse.npz --work-dir /work/runs/scale/bench --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lexret.types import SparseBatch  # noqa: E402
from lexret.vectors import read_vectors, write_vectors  # noqa: E402
from lexret.vocab import default_vocabulary  # noqa: E402

SAMPLE = ROOT / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"


def load_corpus(cache: Path, n: int) -> tuple[list[str], SparseBatch]:
    """Encoded images first, then synthetic distractors, from a compare cache; ``n`` documents."""
    files = sorted(cache.glob("images-*.npz")) + sorted(cache.glob("synthetic-*.npz"))
    ids: list[str] = []
    parts: list[SparseBatch] = []
    seen: set[str] = set()
    for f in files:
        with np.load(f) as z:
            fid = [str(x) for x in z["ids"]]
            batch = SparseBatch(z["indptr"], z["indices"], z["values"], int(z["dim"]))
        keep = [i for i, d in enumerate(fid) if d not in seen][: n - len(ids)]
        seen.update(fid[i] for i in keep)
        ids += [fid[i] for i in keep]
        parts.append(batch.take(keep))
        if len(ids) >= n:
            break
    if len(ids) < n:
        print(f"note: the cache holds {len(ids):,} documents, fewer than --docs {n:,}")
    return ids, SparseBatch.concat(parts)


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def bench_encode(work: Path, images: str, records: dict) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    n = sum(1 for line in Path(images).read_text().splitlines() if line.strip())
    runs = {
        "plain encode (2 threads)": ([], {"LEXRET_THREADS": "2"}),
        "Ray, 1 worker x 2 threads": (["--ray", "local", "--workers", "1"], {"LEXRET_THREADS": "2"}),
        "Ray, 2 workers x 1 thread": (["--ray", "local", "--workers", "2"], {"LEXRET_THREADS": "1"}),
    }
    print(f"\n== encode {n} images ({images})")
    for name, (extra, e) in runs.items():
        out = work / ("enc-" + name.split(",")[0].replace(" ", "-") + ("" if extra else ".npz"))
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "lexret", "-q", "encode", "--images", images, "--out", str(out), *extra]
        if extra:
            cmd += ["--chunk-size", "32"]
        t = time.perf_counter()
        rc = subprocess.run(cmd, env={**env, **e}, capture_output=True, text=True).returncode
        wall = time.perf_counter() - t
        records[f"encode: {name}"] = {"seconds": round(wall, 2), "images_per_s": round(n / wall, 2), "rc": rc}
        print(f"{name:30s} {wall:7.1f} s  {n / wall:6.2f} images/s  (rc {rc})")


def bench_shards(
    work: Path, vocab, ids, docs, qids, q, k: int, shard_counts: list[int], records: dict, use_ray: bool
) -> dict:
    from lexret.distributed.sharded_index import ShardedBuild, build_sharded
    from lexret.distributed.sharded_search import ShardedSearcher
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.searcher import Searcher

    info = IndexInfo(model_id="bench", modality="image")
    chunks = [(ids[a : a + 20_000], docs.slice(a, a + 20_000)) for a in range(0, len(ids), 20_000)]
    print(f"\n== sharded index: {len(ids):,} documents, {len(qids):,} queries, k={k}, 1 search thread")
    cfg = IndexConfig(threads=1)
    _, t = timed(Indexer(vocab, cfg).build, chunks, work / "single", info)
    with Searcher(work / "single", vocab) as s:
        s.search(qids[:50], q.slice(0, 50), k, progress=False)  # warm-up
        want, ts = timed(s.search, qids, q, k, progress=False)
    records["single index"] = {"build_s": round(t, 2), "qps": round(len(qids) / ts, 1)}
    print(f"{'single index':28s} build {t:6.1f} s   search {len(qids) / ts:7.1f} q/s")
    for n in shard_counts:
        out = work / f"sharded-{n}"
        _, t = timed(build_sharded, chunks, out, vocab, ShardedBuild(n), cfg, info)
        row = {"build_s": round(t, 2)}
        for ray in (None, "local") if use_ray else (None,):
            with ShardedSearcher(out, vocab, ray=ray) as s:
                s.search(qids[:50], q.slice(0, 50), k, progress=False)
                got, ts = timed(s.search, qids, q, k, progress=False)
            key = "qps_ray" if ray else "qps"
            row[key] = round(len(qids) / ts, 1)
            row["equal_" + ("ray" if ray else "local")] = got == want
        records[f"{n} shards"] = row
        ray_row = f"{row['qps_ray']:7.1f} q/s Ray actors (equal: {row['equal_ray']}); " if use_ray else ""
        print(f"{f'{n} shards':28s} build {t:6.1f} s   search {row['qps']:7.1f} q/s in process; {ray_row}"
              f"run equals the single index's: {row['equal_local']}")
    return want


def bench_milvus(work: Path, vocab, ids, docs, qids, q, k: int, lucene_run: dict | None, records: dict) -> None:
    from lexret.backends.milvus import MilvusCollection, MilvusSearcher
    from lexret.quantize import Quantizer
    from lexret.searcher import Searcher

    print(f"\n== Milvus (milvus-lite, embedded) vs Lucene: {len(ids):,} documents, k={k}")
    db = work / "milvus.db"
    db.unlink(missing_ok=True)
    qz = Quantizer()
    coll = MilvusCollection(str(db), "bench")
    t = time.perf_counter()
    coll.create({"model_id": "bench", "vocab_hash": vocab.hash, "vocab_size": len(vocab),
                 "quantization": qz.to_dict(), "modality": "image"})  # fmt: skip
    coll.insert((ids[a : a + 20_000], qz(docs.slice(a, a + 20_000))) for a in range(0, len(ids), 20_000))
    s = MilvusSearcher(str(db), "bench", vocab)
    load_s = time.perf_counter() - t
    lat = []
    rows = s.prepare(q)
    from lexret.backends.milvus import _rows

    dicts = _rows(rows)
    run = {}
    for i, qid in enumerate(qids):
        t = time.perf_counter()
        run[qid] = s.coll.search_one(dicts[i], k)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1e3
    records["milvus"] = {"load_s": round(load_s, 2), "ms_mean": round(float(lat_ms.mean()), 2),
                         "ms_p50": round(float(np.percentile(lat_ms, 50)), 2),
                         "ms_p95": round(float(np.percentile(lat_ms, 95)), 2), "qps": round(1e3 / lat_ms.mean(), 1),
                         "equal_lucene": run == lucene_run if lucene_run is not None else None}  # fmt: skip
    s.close()
    lucene = []
    with Searcher(work / "single", vocab) as ls:
        for i, qid in enumerate(qids):
            t = time.perf_counter()
            ls.search([qid], q.slice(i, i + 1), k, progress=False)
            lucene.append(time.perf_counter() - t)
    l_ms = np.array(lucene) * 1e3
    records["lucene per query"] = {"ms_mean": round(float(l_ms.mean()), 2),
                                   "ms_p50": round(float(np.percentile(l_ms, 50)), 2),
                                   "ms_p95": round(float(np.percentile(l_ms, 95)), 2),
                                   "qps": round(1e3 / l_ms.mean(), 1)}  # fmt: skip
    m, lu = records["milvus"], records["lucene per query"]
    print(f"milvus-lite  load {load_s:6.1f} s   {m['ms_mean']:6.2f} ms mean, {m['ms_p50']:6.2f} p50, "
          f"{m['ms_p95']:6.2f} p95, {m['qps']:7.1f} q/s; top-{k} equal to Lucene: {m['equal_lucene']}")
    print(f"Lucene                         {lu['ms_mean']:6.2f} ms mean, {lu['ms_p50']:6.2f} p50, "
          f"{lu['ms_p95']:6.2f} p95, {lu['qps']:7.1f} q/s (one query per call, 1 thread)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="cache folder of a `lexret compare` run (images-*.npz, ...)")
    p.add_argument("--queries", required=True, help="query vectors (that run's queries-sparse.npz)")
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--n-queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--shards", default="1,2,4")
    p.add_argument("--images", default=str(SAMPLE), help="images to encode (captions JSONL)")
    p.add_argument("--work-dir", required=True)
    p.add_argument("--json", default=None, help="write the figures here too")
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--skip-shards", action="store_true")
    p.add_argument("--skip-milvus", action="store_true")
    p.add_argument("--no-ray", action="store_true", help="sharded search in process only (no Ray actors)")
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    records: dict = {"cpus": os.cpu_count(), "docs": args.docs, "queries": args.n_queries}
    if not args.skip_encode:
        bench_encode(work, args.images, records)
    vocab = default_vocabulary()
    if not (args.skip_shards and args.skip_milvus):
        ids, docs = load_corpus(Path(args.cache), args.docs)
        qs = read_vectors(args.queries, vocab)
        qids, q = qs.ids[: args.n_queries], qs.batch.slice(0, args.n_queries)
        write_vectors(work / "queries.npz", qids, q, vocab)
        for d in ("single", *(f"sharded-{n}" for n in (1, 2, 4, 8))):
            shutil.rmtree(work / d, ignore_errors=True)
        lucene_run = None
        if not args.skip_shards:
            from lexret.distributed.cluster import connect

            counts = [int(x) for x in args.shards.split(",")]
            with connect("local") if not args.no_ray else nullcontext():  # one local Ray for all the Ray rows
                lucene_run = bench_shards(work, vocab, ids, docs, qids, q, args.k, counts, records, not args.no_ray)
        if not args.skip_milvus:
            if lucene_run is None:
                from lexret.indexer import IndexConfig, Indexer

                Indexer(vocab, IndexConfig(threads=1)).build([(ids, docs)], work / "single")
            bench_milvus(work, vocab, ids, docs, qids, q, args.k, lucene_run, records)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
