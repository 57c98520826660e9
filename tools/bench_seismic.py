"""Seismic's recall/speed curve on a compare-style corpus, beside exact search and FAISS HNSW: prints
figures, asserts nothing.

The corpus is built as ``lexret compare`` builds it (``lexret.compare.Corpus``): the evaluation
split's encoded images, then synthetic distractors mixed from encoded images (from the split's
images when no real distractors are given, with the default, uncalibrated mixing). Queries are the
split's encoded captions. Encodings are read from a compare cache (``--images``/``--texts``: the
``images-*.npz`` of the split and the ``texts-*.npz`` of its captions), so no model runs here.

For each corpus size the exact top-10 comes from brute force over the same quantized vectors
(``ScipySparseBackend``); each Seismic build setting is built through ``lexret.indexer`` (``--engine
seismic``) and searched with each search setting through the searcher's Seismic backend, one thread:

- ``ms_p50``/``ms_mean``: one query per call, after a warm-up; ``qps_1t``: one batch call;
- ``overlap@10``: share of the top-10 whose exact score reaches the exact 10th score (tie-aware);
  Seismic's scores are checked against exact dot products on a sample (``score_mismatches``);
- ``R@10`` beside the exact ranking's R@10 (qrels of the split: a caption's own image);
- ``index_bytes`` (Seismic's file), ``build_s``.

FAISS HNSW (``--hnsw-sizes``; M 32, efConstruction 100, efSearch 128 unless set) is built over the
corpus's dense vectors and measured the same way in the same run.

    python tools/bench_seismic.py --images CACHE/images-X.npz --texts CACHE/texts-Y.npz \\
        --data ../shared/flickr8k/captions.jsonl --split val --distractors 100000,1000000 \\
        --builds 3500:0.1:0.4,10000:0.1:0.4 --searches 5:0.7,10:0.9,32:0.9 --hnsw-sizes 101000 \\
        --work /work/runs/approx/bench --json docs/compare/seismic_curve.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lexret.backends.dense import FaissBackend, HnswParams
from lexret.backends.seismic import SeismicBuildParams, SeismicSearchParams
from lexret.compare import CompareConfig, Corpus, Encoded
from lexret.data import load_captions
from lexret.evaluation import SplitIds
from lexret.fileio import write_json
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.metrics import evaluate, overlap_at_k
from lexret.quantize import DEFAULT_SCALE, Quantizer
from lexret.searcher import Searcher
from lexret.types import SparseBatch
from lexret.vocab import default_vocabulary

log = logging.getLogger("bench_seismic")
K = 10
WARMUP = 100
SCORE_CHECK_QUERIES = 200


def parse_builds(text: str) -> list[SeismicBuildParams]:
    out = []
    for part in text.split(","):
        n, cf, energy = part.split(":")
        out.append(SeismicBuildParams(n_postings=int(n), centroid_fraction=float(cf), summary_energy=float(energy)))
    return out


def parse_searches(text: str) -> list[SeismicSearchParams]:
    out = []
    for part in text.split(","):
        qc, hf = part.split(":")
        out.append(SeismicSearchParams(query_cut=int(qc), heap_factor=float(hf)))
    return out


def latencies_ms(one, n: int) -> np.ndarray:
    lat = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        one(i)
        lat[i] = time.perf_counter() - t
    return lat * 1000.0


def gather(corpus: Corpus, with_dense: bool) -> tuple[list[str], SparseBatch, np.ndarray | None]:
    ids: list[str] = []
    parts, dense = [], []
    for e in corpus.chunks():
        ids.extend(e.ids)
        parts.append(e.sparse)
        if with_dense:
            dense.append(e.dense)
    return ids, SparseBatch.concat(parts), (np.concatenate(dense) if with_dense else None)


def time_exact(qdocs: SparseBatch, qint: SparseBatch) -> float:
    """Queries per second of lexret's exact engine (top-10 as arrays, no Python ranking), one
    thread, one call over all queries after a warm-up call."""
    from lexret.backends.exact import ExactBackend

    engine = ExactBackend([str(i) for i in range(len(qdocs))], qdocs)
    engine.search_arrays(qint.slice(0, WARMUP), K)
    t = time.perf_counter()
    engine.search_arrays(qint, K)
    qps = len(qint) / (time.perf_counter() - t)
    engine.close()
    return qps


def exact_run(ids, qdocs: SparseBatch, qids, qint: SparseBatch, cache: Path) -> dict[str, list[tuple[str, float]]]:
    """Exact top-10 (ties by docid, as lexret ranks) from lexret's exact engine, cached in ``cache``
    (JSON) for reruns."""
    if cache.is_file():
        return {q: [tuple(h) for h in hits] for q, hits in json.loads(cache.read_text()).items()}
    from lexret.backends.exact import ExactBackend

    t = time.perf_counter()
    engine = ExactBackend(ids, qdocs)
    run = engine.search(qids, qint, K)
    engine.close()
    log.info("exact top-%d of %d queries over %d documents: %.1fs", K, len(qids), len(ids), time.perf_counter() - t)
    write_json(cache, run)
    return run


def score_mismatches(run, qids, qint: SparseBatch, ids, qdocs: SparseBatch) -> int:
    """Hits (of the first queries) whose score differs from the exact dot product."""
    row = {d: i for i, d in enumerate(ids)}
    q = qint.to_scipy().astype(np.float64)
    bad = 0
    for i, qid in enumerate(qids[:SCORE_CHECK_QUERIES]):
        hits = run.get(qid, [])
        if not hits:
            continue
        sub = qdocs.take([row[d] for d, _ in hits]).to_scipy().astype(np.float64)
        exact = np.asarray((sub @ q[i].T).todense()).ravel()
        bad += int(np.sum(exact != np.array([s for _, s in hits])))
    return bad


def measure_seismic(searcher: Searcher, qids, qint: SparseBatch, params: SeismicSearchParams, n_lat: int):
    backend = searcher._seismic
    backend.search(qids[:WARMUP], qint.slice(0, WARMUP), K, params, threads=1)
    lat = latencies_ms(lambda i: backend.search([qids[i]], qint.slice(i, i + 1), K, params, threads=1), n_lat)
    t = time.perf_counter()
    run = backend.search(qids, qint, K, params, threads=1)
    qps = len(qids) / (time.perf_counter() - t)
    return run, lat, qps


def measure_hnsw(ids, dense: np.ndarray, qids, qdense: np.ndarray, hnsw: HnswParams, work: Path, n_lat: int):
    FaissBackend.set_threads(2)
    t = time.perf_counter()
    fb = FaissBackend.build(ids, dense, kind="hnsw", hnsw=hnsw)
    build_s = time.perf_counter() - t
    path = work / "hnsw.faiss"
    fb.save(path)
    nbytes = path.stat().st_size
    path.unlink()
    FaissBackend.set_threads(1)
    fb.search(qids[:WARMUP], qdense[:WARMUP], K)
    lat = latencies_ms(lambda i: fb.search([qids[i]], qdense[i : i + 1], K), n_lat)
    t = time.perf_counter()
    run = fb.search(qids, qdense, K)
    qps = len(qids) / (time.perf_counter() - t)
    return run, lat, qps, nbytes, build_s


def row_text(r: dict[str, Any]) -> str:
    return (
        f"{r['system']:<8} {r['corpus_size']:>9,} {r.get('setting', ''):<34} ms p50 {r['ms_p50']:7.2f} "
        f"mean {r['ms_mean']:7.2f}  qps {r['qps_1t']:8.1f}  overlap@10 {r.get('overlap@10', float('nan')):.3f}  "
        f"R@10 {r['R@10']:.2f} (exact {r.get('R@10_exact', float('nan')):.2f})  "
        f"MB {r['index_bytes'] / 1e6:8.1f}  build s {r['build_s']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="images-*.npz of the split, from a compare cache")
    p.add_argument("--texts", required=True, help="texts-*.npz of the split's captions, from a compare cache")
    p.add_argument("--data", required=True, help="captions JSONL (ids and qrels of the split)")
    p.add_argument("--split", default="val")
    p.add_argument("--distractors", default="100000", help="distractors per corpus (corpus = split + these)")
    p.add_argument("--builds", default="3500:0.1:0.4", help="n_postings:centroid_fraction:summary_energy,...")
    p.add_argument("--searches", default="5:0.7,10:0.9,32:0.9", help="query_cut:heap_factor,...")
    p.add_argument("--builds-at", default=None, help="SIZE=BUILDS;SIZE=BUILDS: per-corpus-size --builds")
    p.add_argument("--hnsw-sizes", default="", help="corpus sizes at which FAISS HNSW is built and measured")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--hnsw-ef-construction", type=int, default=100)
    p.add_argument("--hnsw-ef-search", type=int, default=128)
    p.add_argument("--latency-queries", type=int, default=1000)
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--work", required=True, help="folder for indexes, synthetic chunks and exact runs")
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--no-time-exact", action="store_true", help="do not time the numba exact reference")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    vocab = default_vocabulary()
    coll = load_captions(args.data, split=args.split)
    sids = SplitIds.from_collection(coll)
    split = Encoded.load(Path(args.images))
    if split.ids != sids.image_ids:
        raise SystemExit(f"{args.images} does not hold the {args.split} split's images of {args.data}, in order")
    texts = Encoded.load(Path(args.texts))
    if len(texts.ids) != len(sids.caption_ids):
        raise SystemExit(f"{args.texts} holds {len(texts.ids)} captions, the split {len(sids.caption_ids)}")
    qids, qrels = sids.caption_ids, sids.qrels_t2i()
    quant = Quantizer(DEFAULT_SCALE)
    qint = quant(texts.sparse)
    n_lat = min(args.latency_queries, len(qids))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    hnsw = HnswParams(args.hnsw_m, args.hnsw_ef_construction, args.hnsw_ef_search)
    hnsw_sizes = {int(s) for s in args.hnsw_sizes.split(",") if s}
    builds_at = {}
    for part in (args.builds_at or "").split(";"):
        if part:
            size, spec = part.split("=")
            builds_at[int(size)] = parse_builds(spec)
    searches = parse_searches(args.searches)
    records: list[dict[str, Any]] = []

    def emit(r: dict[str, Any]) -> None:
        records.append(r)
        print(row_text(r), flush=True)
        if args.json:
            write_json(args.json, records)

    for n in sorted(int(s) for s in args.distractors.split(",")):
        corpus = Corpus(split, None, n, CompareConfig(), work / "cache")
        size = len(corpus)
        want_hnsw = size in hnsw_sizes or n in hnsw_sizes
        t = time.perf_counter()
        ids, docs, dense = gather(corpus, want_hnsw)
        log.info("corpus of %d items (%d synthetic) in %.1fs", size, corpus.n_synthetic, time.perf_counter() - t)
        qdocs = quant(docs)
        exact = exact_run(ids, qdocs, qids, qint, work / f"exact-{size}.json")
        r10_exact = evaluate(exact, qrels, ("R@10",))["R@10"]
        print(f"exact    {size:>9,} R@10 {r10_exact:.2f}; postings per query "
              f"{postings_per_query(qdocs, qint):,.0f}", flush=True)  # fmt: skip
        if not args.no_time_exact:
            qps = time_exact(qdocs, qint)
            emit({"system": "exact-numba", "corpus_size": size, "setting": "term-at-a-time reference", "ms_p50":
                  float("nan"), "ms_mean": 1000.0 / qps, "qps_1t": qps, "overlap@10": 1.0, "R@10": r10_exact,
                  "R@10_exact": r10_exact, "index_bytes": 0, "build_s": 0.0})  # fmt: skip
        if want_hnsw:
            run, lat, qps, nbytes, build_s = measure_hnsw(ids, dense, qids, texts.dense, hnsw, work, n_lat)
            emit({"system": "hnsw", "corpus_size": size, "setting": f"M {hnsw.m} efC {hnsw.ef_construction} "
                  f"efS {hnsw.ef_search}", "ms_p50": float(np.percentile(lat, 50)), "ms_mean": float(lat.mean()),
                  "qps_1t": qps, "R@10": evaluate(run, qrels, ("R@10",))["R@10"], "index_bytes": nbytes,
                  "build_s": build_s, "hnsw": asdict(hnsw)})  # fmt: skip
            del dense
        for build in builds_at.get(n, builds_at.get(size, parse_builds(args.builds))):
            out = work / f"seismic-{size}"
            cfg = IndexConfig(threads=args.build_threads, engine="seismic", seismic=build, store_vectors=False)
            t = time.perf_counter()
            meta = Indexer(vocab, cfg).build([(ids, docs)], out, IndexInfo(model_id="bench", modality="image"))
            build_s = time.perf_counter() - t
            with Searcher(out, vocab, backend="seismic") as searcher:
                for sp in searches:
                    run, lat, qps = measure_seismic(searcher, qids, qint, sp, n_lat)
                    emit({
                        "system": "seismic", "corpus_size": size,
                        "setting": f"n_postings {build.n_postings} cf {build.centroid_fraction} "
                                   f"energy {build.summary_energy} | qc {sp.query_cut} hf {sp.heap_factor}",
                        "build": asdict(build), "search": asdict(sp),
                        "ms_p50": float(np.percentile(lat, 50)), "ms_mean": float(lat.mean()), "qps_1t": qps,
                        "overlap@10": overlap_at_k(run, exact, K), "R@10": evaluate(run, qrels, ("R@10",))["R@10"],
                        "R@10_exact": r10_exact, "score_mismatches": score_mismatches(run, qids, qint, ids, qdocs),
                        "index_bytes": meta["index_bytes"], "build_s": build_s,
                    })  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
    return 0


def postings_per_query(qdocs: SparseBatch, qint: SparseBatch) -> float:
    df = np.bincount(qdocs.indices, minlength=qdocs.dim)
    return float(df[qint.indices].sum() / max(1, len(qint)))


if __name__ == "__main__":
    sys.exit(main())
