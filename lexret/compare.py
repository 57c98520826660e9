"""Sparse engines vs dense FAISS as the corpus grows: the large-scale comparison.

The evaluation split's images stay in the corpus and its captions are the text queries; ``N``
distractors are added for each corpus size: real encoded images first (from ``--distractor-data``,
without the split's own images), then synthetic ones mixed from the real vectors
(``lexret.distractors``). Every system is built on the same corpus and measured in a child process
(``lexret.measure``): effectiveness, index bytes, build time, peak memory, latency and throughput,
and against the exact ranking of the same vectors: ``overlap@10_vs_exact`` (sparse systems against
the exact sparse top-10, HNSW against FAISS flat) and, for the exact engines, the number of queries
whose ranking differs from the exact reference at all.

Encodings and synthetic chunks are cached (``cache_dir``), so a rerun does not redo them, and the
corpus is streamed into the indexes chunk by chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from lexret.backends.dense import HnswParams
from lexret.backends.impact import ImpactParams
from lexret.backends.lucene_two_phase import TwoPhaseParams
from lexret.data import Collection
from lexret.distractors import Calibration, MixParams, calibrate, synthesize_chunk
from lexret.evaluation import SplitIds, item_id
from lexret.fileio import write_json
from lexret.metrics import evaluate, overlap_at_k
from lexret.trec import Run, read_run
from lexret.types import SparseBatch
from lexret.vectors import write_vectors

if TYPE_CHECKING:
    from lexret.distributed.encode_both import RayEncoderPool

log = logging.getLogger(__name__)

CHUNK = 20_000
# Sparse systems that search the Lucene index folder or the quantized vectors stored in it.
SPARSE_ON_LUCENE_FOLDER = ("sparse-lucene", "sparse-exact", "sparse-impact", "sparse-lucene-2phase", "sparse-scipy")
# Sparse systems that must rank exactly like the brute force; the first one measured is the reference.
EXACT_SPARSE = ("sparse-exact", "sparse-scipy", "sparse-lucene", "sparse-lucene-sharded")
SHARDED = "sparse-lucene-sharded"  # a sharded Lucene index (CompareConfig.shards), exact like one index
OVERLAP_AT = 10
DENSE_SCORE_DECIMALS = 5  # HNSW and flat sum the same float32 products in different orders


@dataclass
class CompareConfig:
    """What to build and measure."""

    sizes: list[int] = field(default_factory=lambda: [10_000])  # distractors per run
    k: int = 10
    seed: int = 0
    scale: float | None = None
    index_threads: int = 2
    # Force-merging to one segment was measured slower to search at k=10 and k=100 and 1.5x slower to
    # build, for the same bytes (tools/bench_lucene.py on 100k items, docs/compare.md).
    optimize: bool = False
    reorder: str = "none"  # Lucene document order (lexret.reorder); bp measured no gain here
    hnsw: HnswParams = field(default_factory=HnswParams)
    two_phase: TwoPhaseParams = field(default_factory=TwoPhaseParams)  # of sparse-lucene-2phase
    impact: ImpactParams = field(default_factory=ImpactParams)  # of sparse-impact
    latency_queries: int = 1000
    # sparse-scipy (the slow brute force) is left out by default: sparse-exact ranks the same, faster.
    # Measured in this order, each pair of rivals together, the slowest last (compare.json is written
    # after each system: an interrupted run keeps what it measured).
    systems: tuple[str, ...] = (
        "dense-faiss-flat", "sparse-exact", "sparse-impact", "dense-faiss-hnsw", "sparse-seismic", "sparse-lucene",
        "sparse-lucene-2phase",
    )  # fmt: skip
    heap: str | None = None
    mix: MixParams = field(default_factory=MixParams)
    shards: int | None = None  # shards of sparse-lucene-sharded (measured only with shards set)
    # --ray: encoding on Ray actors (workers x cpus_per_worker), shards built as Ray tasks and searched by actors
    ray: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0


@dataclass
class Encoded:
    """Encoded images (sparse + dense) with their ids."""

    ids: list[str]
    sparse: SparseBatch
    dense: np.ndarray

    def save(self, path: Path) -> None:
        from lexret.fileio import atomic_write

        with atomic_write(path, "wb") as f:
            np.savez(
                f, ids=np.array(self.ids), indptr=self.sparse.indptr, indices=self.sparse.indices,
                values=self.sparse.values, dim=np.array(self.sparse.dim), dense=self.dense,
            )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> Encoded:
        with np.load(path) as z:
            sp = SparseBatch(z["indptr"], z["indices"], z["values"], int(z["dim"]))
            return cls([str(x) for x in z["ids"]], sp, z["dense"])


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _digest(enc: Encoded) -> str:
    """A fingerprint of the vectors (sparse and dense) of ``enc``."""
    h = hashlib.sha256()
    for a in (enc.sparse.indptr, enc.sparse.indices, enc.sparse.values, enc.dense):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def encode_images_cached(paths: Sequence[Path], ids: list[str], sparse_enc, dense_enc, cache: Path,
                         pool: RayEncoderPool | None = None) -> Encoded:  # fmt: skip
    """Encode images with both models (on ``pool``'s Ray actors when given: the same vectors, the same
    cache entry), or load them from ``cache`` when done before. Keyed by the sparse model's
    ``index_model_id``: a query-map model's images are its documents' model's."""
    key = _key(sparse_enc.index_model_id, dense_enc.model_id, [str(p) for p in paths])
    path = cache / f"images-{key}.npz"
    if path.is_file():
        log.info("encoded images from cache %s", path)
        return Encoded.load(path)
    from lexret.distributed.encode_both import encode_items

    sp, de = encode_items("image", list(paths), sparse_enc, dense_enc, pool=pool)
    enc = Encoded(ids, sp, np.ascontiguousarray(de, dtype=np.float32))
    enc.save(path)
    return enc


def encode_texts_cached(texts: list[str], sparse_enc, dense_enc, cache: Path,
                        pool: RayEncoderPool | None = None) -> tuple[SparseBatch, np.ndarray]:  # fmt: skip
    key = _key(sparse_enc.model_id, dense_enc.model_id, texts)
    path = cache / f"texts-{key}.npz"
    if path.is_file():
        enc = Encoded.load(path)
        return enc.sparse, enc.dense
    from lexret.distributed.encode_both import encode_items

    sp, de = encode_items("text", texts, sparse_enc, dense_enc, pool=pool)
    de = np.ascontiguousarray(de, dtype=np.float32)
    Encoded([str(i) for i in range(len(texts))], sp, de).save(path)
    return sp, de


def calibrate_distractors(items: Sequence, real: Encoded, sparse_enc, dense_enc, cfg: CompareConfig,
                          cache: Path, held: int = 500, pool: RayEncoderPool | None = None) -> Calibration:  # fmt: skip
    """Make synthetic distractors as hard as real ones for each system (see ``lexret.distractors``).

    Some real distractors are held out, their captions become queries and the image each caption's
    own item; the rest are the real distractors and the sources of synthetic ones. Held out are, if
    there are at least 50, the items outside the models' training split (captions a model was trained
    on are far easier for it than new ones), else every 8th item."""
    trained_on = {enc.config.get("train_split") for enc in (sparse_enc, dense_enc)} - {None}
    unseen = [i for i, it in enumerate(items) if it.split not in trained_on] if trained_on else []
    if len(unseen) >= 50:
        pick = np.array(unseen[:held])
        owner = np.concatenate([np.full(len(items[i].captions), j) for j, i in enumerate(pick)])
        captions = [c for i in pick for c in items[i].captions]
        what = f"all captions of {len(pick)} distractor images outside the training split {sorted(trained_on)}"
    else:
        pick = np.arange(0, len(items), 8)[:held]
        owner = np.arange(len(pick))
        captions = [items[i].captions[0] for i in pick]
        what = f"the first caption of every 8th distractor image ({len(pick)}); the models may have seen them"
    rest = np.setdiff1d(np.arange(len(items)), pick)
    cap_s, cap_d = encode_texts_cached(captions, sparse_enc, dense_enc, cache, pool)
    others = (real.sparse.take(rest), real.dense[rest])
    own = (real.sparse.take(pick[owner]), real.dense[pick[owner]])
    cal = calibrate(others, others, (cap_s, cap_d), own, base=cfg.mix, seed=cfg.seed)
    log.info(
        "synthetic distractors calibrated with %s: a distractor outranks the query's own image in %.2f%% (real) / "
        "%.2f%% (synthetic) of pairs for the sparse model, %.2f%% / %.2f%% for the dense one (term swap %.3f, "
        "dense noise %.3f)", what, 100 * cal.sparse_real, 100 * cal.sparse_synthetic, 100 * cal.dense_real,
        100 * cal.dense_synthetic, cal.params.term_swap, cal.params.dense_noise,
    )  # fmt: skip
    return cal


class Corpus:
    """The split's images, then real distractors, then synthetic ones, streamed in chunks."""

    def __init__(self, split: Encoded, real: Encoded | None, n_distractors: int, cfg: CompareConfig,
                 cache: Path) -> None:  # fmt: skip
        self.split = split
        self.real = real
        self.n_real = min(n_distractors, len(real.ids)) if real else 0
        self.n_synthetic = n_distractors - self.n_real
        self.cfg = cfg
        self.cache = cache
        # synthetic items follow the real distractors when there are some, else the split's images
        self.source = real if real is not None and len(real.ids) >= 2 else split
        # keyed by the source vectors themselves, not only their ids: two models' encodings of the same
        # images (a query map's transformed images against v7's) must not share synthetic chunks
        self.source_key = _key(
            self.source.ids[:50], len(self.source.ids), _digest(self.source), asdict(cfg.mix), cfg.seed
        )

    def __len__(self) -> int:
        return len(self.split.ids) + self.n_real + self.n_synthetic

    def _synthetic_chunk(self, c: int) -> Encoded:
        path = self.cache / f"synthetic-{self.source_key}-{CHUNK}-{c}.npz"
        if path.is_file():
            return Encoded.load(path)
        sp, de = synthesize_chunk(
            self.source.sparse, self.source.dense, CHUNK, seed=self.cfg.seed, chunk=c, params=self.cfg.mix
        )
        enc = Encoded([f"synthetic-{c * CHUNK + i}" for i in range(CHUNK)], sp, de)
        enc.save(path)
        return enc

    def chunks(self) -> Iterator[Encoded]:
        yield self.split
        if self.n_real:
            for a in range(0, self.n_real, CHUNK):
                b = min(a + CHUNK, self.n_real)
                yield Encoded(self.real.ids[a:b], self.real.sparse.slice(a, b), self.real.dense[a:b])
        left = self.n_synthetic
        c = 0
        while left > 0:
            enc = self._synthetic_chunk(c)
            take = min(left, CHUNK)
            yield Encoded(enc.ids[:take], enc.sparse.slice(0, take), enc.dense[:take])
            left -= take
            c += 1


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_systems(corpus: Corpus, vocab, model_id: str, cfg: CompareConfig, out: Path) -> dict[str, dict[str, Any]]:
    """Build every system's index for ``corpus`` under ``out``; returns build time and bytes."""
    from lexret.backends.dense import FaissBackend, l2_normalize
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.quantize import DEFAULT_SCALE

    built: dict[str, dict[str, Any]] = {}
    need_sparse = set(SPARSE_ON_LUCENE_FOLDER) & set(cfg.systems)
    if need_sparse or "sparse-seismic" in cfg.systems:
        # the stored vectors are the exact reference's input: overlap@10 and postings per query need them
        icfg = IndexConfig(
            scale=cfg.scale or DEFAULT_SCALE, threads=cfg.index_threads, optimize=cfg.optimize, heap=cfg.heap,
            store_vectors=True, reorder=cfg.reorder,
        )  # fmt: skip
        t = time.perf_counter()
        meta = Indexer(vocab, icfg).build(
            ((e.ids, e.sparse) for e in corpus.chunks()), out / "lucene", IndexInfo(model_id, "image"),
            total=len(corpus),
        )  # fmt: skip
        build_s = time.perf_counter() - t
        built["sparse-lucene"] = {"artifact": out / "lucene", "index_bytes": meta["index_bytes"], "build_s": build_s}
        dv_bytes = (out / "lucene" / "docvectors.npz").stat().st_size
        for system in need_sparse & {"sparse-exact", "sparse-impact", "sparse-scipy"}:
            built[system] = {
                "artifact": out / "lucene",
                "index_bytes": dv_bytes,
                # their "index" is the quantized CSR matrix written beside the Lucene index (the exact
                # engine turns it into posting arrays when it loads: load_s in its record)
                "build_s": meta["write_seconds"],
            }
        if "sparse-lucene-2phase" in need_sparse:  # Lucene picks candidates, the stored vectors rescore them
            built["sparse-lucene-2phase"] = {
                "artifact": out / "lucene", "index_bytes": meta["index_bytes"] + dv_bytes, "build_s": build_s,
            }  # fmt: skip
    if "sparse-seismic" in cfg.systems:
        scfg = IndexConfig(scale=cfg.scale or DEFAULT_SCALE, threads=cfg.index_threads, store_vectors=False,
                           engine="seismic")  # fmt: skip
        t = time.perf_counter()
        smeta = Indexer(vocab, scfg).build(
            ((e.ids, e.sparse) for e in corpus.chunks()), out / "seismic", IndexInfo(model_id, "image"),
            total=len(corpus),
        )  # fmt: skip
        built["sparse-seismic"] = {
            "artifact": out / "seismic", "index_bytes": smeta["index_bytes"], "build_s": time.perf_counter() - t,
            "seismic": smeta.get("seismic"),
        }  # fmt: skip
    if SHARDED in cfg.systems:
        built[SHARDED] = _build_sharded(corpus, vocab, model_id, cfg, out / "lucene-sharded")
    for system, kind in (("dense-faiss-flat", "flat"), ("dense-faiss-hnsw", "hnsw")):
        if system not in cfg.systems:
            continue
        d = out / system
        d.mkdir(parents=True, exist_ok=True)
        ids: list[str] = []
        backend: FaissBackend | None = None
        FaissBackend.set_threads(2)
        t = time.perf_counter()
        for e in tqdm(corpus.chunks(), desc=f"build {system}", unit="chunk", disable=None):
            if backend is None:
                backend = FaissBackend.build(e.ids, e.dense, kind=kind, hnsw=cfg.hnsw)
            else:
                backend.index.add(l2_normalize(e.dense))
            ids.extend(e.ids)
        build_s = time.perf_counter() - t
        backend.save(d / "faiss.index")
        (d / "docids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
        del backend
        built[system] = {"artifact": d, "index_bytes": (d / "faiss.index").stat().st_size, "build_s": build_s}
    return built


def _build_sharded(corpus: Corpus, vocab, model_id: str, cfg: CompareConfig, out: Path) -> dict[str, Any]:
    """``cfg.shards`` Lucene shards of the corpus (Ray tasks with ``cfg.ray``), with sparse-lucene's settings."""
    from lexret.distributed.sharded_index import ShardedBuild, build_sharded
    from lexret.indexer import IndexConfig, IndexInfo
    from lexret.quantize import DEFAULT_SCALE

    if cfg.shards is None:
        from lexret.errors import LexretError

        raise LexretError(f"{SHARDED} needs a shard count: add --shards N")
    icfg = IndexConfig(
        scale=cfg.scale or DEFAULT_SCALE, threads=cfg.index_threads, optimize=cfg.optimize, heap=cfg.heap,
        store_vectors=False, reorder=cfg.reorder,
    )  # fmt: skip
    t = time.perf_counter()
    meta = build_sharded(
        ((e.ids, e.sparse) for e in corpus.chunks()), out, vocab, ShardedBuild(cfg.shards, ray=cfg.ray), icfg,
        IndexInfo(model_id, "image"), total=len(corpus),
    )  # fmt: skip
    return {"artifact": out, "index_bytes": meta["index_bytes"], "build_s": time.perf_counter() - t}


@dataclass
class Inputs:
    """What every corpus size shares: the split's encoded images and captions, the real distractors
    and the calibration of the synthetic ones."""

    ids: SplitIds
    split: Encoded
    cap_sparse: SparseBatch
    cap_dense: np.ndarray
    real: Encoded | None
    calibration: Calibration | None


def encoder_pool(sparse_enc, dense_enc, cfg: CompareConfig) -> AbstractContextManager[RayEncoderPool | None]:
    """Ray encoding actors for ``cfg.ray`` (started on first use, stopped at the block's end), else ``None``."""
    if not cfg.ray:
        return nullcontext(None)
    from lexret.distributed.encode_both import RayEncode, RayEncoderPool

    return RayEncoderPool(sparse_enc, dense_enc, RayEncode(cfg.ray, cfg.workers, cfg.cpus_per_worker))


def prepare_inputs(coll: Collection, distractor_coll: Collection | None, sparse_enc, dense_enc, cfg: CompareConfig,
                   cache_dir: Path) -> Inputs:  # fmt: skip
    """Encode (or load from ``cache_dir``) the split and the real distractors, on Ray actors with
    ``cfg.ray`` (same vectors, same cache entries); calibrate."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with encoder_pool(sparse_enc, dense_enc, cfg) as pool:
        return _prepare_inputs(coll, distractor_coll, sparse_enc, dense_enc, cfg, cache_dir, pool)


def _prepare_inputs(coll: Collection, distractor_coll: Collection | None, sparse_enc, dense_enc, cfg: CompareConfig,
                    cache_dir: Path, pool: RayEncoderPool | None) -> Inputs:  # fmt: skip
    ids = SplitIds.from_collection(coll)
    split = encode_images_cached([it.image for it in coll.items], ids.image_ids, sparse_enc, dense_enc, cache_dir,
                                 pool)  # fmt: skip
    cap_sparse, cap_dense = encode_texts_cached(coll.captions, sparse_enc, dense_enc, cache_dir, pool)
    real, items = None, []
    if distractor_coll is not None:
        own = {it.image.resolve() for it in coll.items}
        items = [it for it in distractor_coll.items if it.image.resolve() not in own]
        items = items[: max(cfg.sizes)]
        log.info("%d real distractor images (%d of the split excluded)", len(items),
                 len(distractor_coll.items) - len(items))  # fmt: skip
        if items:
            real = encode_images_cached(
                [it.image for it in items], [f"distractor:{item_id(it.key)}" for it in items], sparse_enc, dense_enc,
                cache_dir, pool,
            )  # fmt: skip
    calibration = None
    if real is not None and len(real.ids) >= 200:
        calibration = calibrate_distractors(items, real, sparse_enc, dense_enc, cfg, cache_dir, pool=pool)
    else:
        log.warning("synthetic distractors are not calibrated against real ones (that needs --distractor-data "
                    "with at least 200 images): their difficulty for each system is unknown")  # fmt: skip
    return Inputs(ids, split, cap_sparse, cap_dense, real, calibration)


def run_compare(
    coll: Collection,
    distractor_coll: Collection | None,
    sparse_enc,
    dense_enc,
    cfg: CompareConfig,
    out_dir: Path,
    cache_dir: Path,
) -> list[dict[str, Any]]:
    """Measure every system at every corpus size; writes ``compare.json`` and plots in ``out_dir``. With
    ``cfg.ray`` one Ray serves the encoding actors, the shard builds and the measured shard searches."""
    if SHARDED in cfg.systems and cfg.shards is None:
        from lexret.errors import LexretError

        raise LexretError(f"{SHARDED} needs a shard count: add --shards N")
    if not cfg.ray:
        return _run_compare(coll, distractor_coll, sparse_enc, dense_enc, cfg, out_dir, cache_dir)
    from lexret.distributed.cluster import connect

    with connect(cfg.ray):
        return _run_compare(coll, distractor_coll, sparse_enc, dense_enc, cfg, out_dir, cache_dir)


def _run_compare(
    coll: Collection, distractor_coll: Collection | None, sparse_enc, dense_enc, cfg: CompareConfig, out_dir: Path,
    cache_dir: Path,
) -> list[dict[str, Any]]:  # fmt: skip
    from lexret.evaluation import per_query_encode_ms
    from lexret.measure import measure_in_subprocess

    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(coll, distractor_coll, sparse_enc, dense_enc, cfg, cache_dir)
    ids, split, real, calibration = inputs.ids, inputs.split, inputs.real, inputs.calibration
    cap_sparse, cap_dense = inputs.cap_sparse, inputs.cap_dense
    if calibration is not None:
        cfg = replace(cfg, mix=calibration.params)
        write_json(out_dir / "distractors.json", calibration.to_dict())
    q_sparse, q_dense = out_dir / "queries-sparse.npz", out_dir / "queries-dense.npz"
    write_vectors(q_sparse, ids.caption_ids, cap_sparse, sparse_enc.vocab, {"model_id": sparse_enc.index_model_id})
    np.savez(q_dense, ids=np.array(ids.caption_ids), vectors=cap_dense)
    enc_ms = {
        "sparse": per_query_encode_ms(sparse_enc.encode_texts, coll.captions),
        "dense": per_query_encode_ms(dense_enc.encode_texts, coll.captions),
    }
    qrels = ids.qrels_t2i()
    child_ray = None  # the Ray a measured sharded search joins
    if cfg.ray and SHARDED in cfg.systems:
        from lexret.distributed.cluster import address_for_children

        child_ray = address_for_children(cfg.ray)
    records: list[dict[str, Any]] = []
    for n in sorted(cfg.sizes):
        corpus = Corpus(split, real, n, cfg, cache_dir)
        size_dir = out_dir / f"corpus-{len(corpus)}"
        log.info("corpus of %d items: %d split images, %d real and %d synthetic distractors", len(corpus),
                 len(split.ids), corpus.n_real, corpus.n_synthetic)  # fmt: skip
        built = build_systems(corpus, sparse_enc.vocab, sparse_enc.index_model_id, cfg, size_dir)
        runs_by_system = {}
        docvectors = size_dir / "lucene" / "docvectors.npz"
        postings = postings_per_query(docvectors, cap_sparse)
        scorer = LazyPairScorer(docvectors, cap_sparse, ids.caption_ids)
        for system in cfg.systems:
            b = built[system]
            queries = q_sparse if system.startswith("sparse") else q_dense
            m, run_file = measure_in_subprocess(
                system, b["artifact"], queries, cfg.k, size_dir / "runs", latency_queries=cfg.latency_queries,
                heap=cfg.heap, ray=child_ray if system == SHARDED else None,
                two_phase=cfg.two_phase if system == "sparse-lucene-2phase" else None,
                impact=cfg.impact if system == "sparse-impact" else None,
            )  # fmt: skip
            runs_by_system[system] = run = read_run(run_file)
            metrics = evaluate(run, qrels, ("R@1", "R@5", "R@10"))
            rec = {
                "system": system,
                "corpus_size": len(corpus),
                **metrics,
                "index_bytes": int(b["index_bytes"]),
                "build_s": round(b["build_s"], 3),
                "peak_rss_bytes": m.peak_rss_bytes,
                "latency_ms_mean": m.latency_ms_mean,
                "latency_ms_p50": m.latency_ms_p50,
                "latency_ms_p95": m.latency_ms_p95,
                "qps_1thread": m.qps_1thread,
                "qps_2threads": m.qps_2threads,
                "query_encode_ms": enc_ms["sparse" if system.startswith("sparse") else "dense"],
                "distractors_real": corpus.n_real,
                "distractors_synthetic": corpus.n_synthetic,
            }
            if system.startswith("sparse") and postings is not None:
                rec["postings_in_query_lists"] = postings  # what an exhaustive term-at-a-time search reads
            if m.postings_per_query is not None:  # the engine's own count of the work it did
                rec["postings_per_query"] = m.postings_per_query
            elif system in EXACT_SPARSE and postings is not None:  # exhaustive: every posting of its lists
                rec["postings_per_query"] = postings
            if m.load_s is not None:
                rec["load_s"] = m.load_s
            if calibration is not None:
                space = "sparse" if system.startswith("sparse") else "dense"
                rec["outrank_rate_real"] = getattr(calibration, f"{space}_real")
                rec["outrank_rate_synthetic"] = getattr(calibration, f"{space}_synthetic")
            if system == "dense-faiss-hnsw":
                rec["hnsw"] = asdict(cfg.hnsw)
            if system in ("sparse-lucene", SHARDED):
                rec["reorder"] = cfg.reorder
            if system == SHARDED:
                rec["shards"], rec["ray"] = cfg.shards, cfg.ray
            if system == "sparse-seismic":
                from lexret.backends.seismic import SeismicSearchParams

                rec["seismic_build"] = b.get("seismic")
                rec["seismic_search"] = asdict(SeismicSearchParams())
            if system == "sparse-lucene-2phase":
                rec["two_phase"] = asdict(cfg.two_phase)
            if system == "sparse-impact":
                rec["impact"] = asdict(cfg.impact)
            records.append(rec)
            log.info("%s @ %d: R@10 %.2f, %.2f ms/query", system, len(corpus), rec["R@10"], rec["latency_ms_mean"])
            size_records = {r["system"]: r for r in records if r["corpus_size"] == len(corpus)}
            check_against_exact(size_records, runs_by_system, scorer, len(corpus))
            write_json(out_dir / "compare.json", records)  # after each system: a partial result survives
        shutil.rmtree(size_dir / "dense-faiss-flat", ignore_errors=True)  # large and rebuilt in seconds
    plot(records, out_dir)
    return records


class LazyPairScorer:
    """An :class:`ExactPairScorer` made on first use (it holds the corpus vectors), or None without them."""

    def __init__(self, docvectors: Path, queries: SparseBatch, qids: list[str]) -> None:
        self.args = (docvectors, queries, qids)
        self._scorer: ExactPairScorer | None = None

    def get(self) -> ExactPairScorer | None:
        if self._scorer is None and self.args[0].is_file():
            self._scorer = ExactPairScorer(*self.args)
        return self._scorer


def check_against_exact(records: dict[str, dict[str, Any]], runs: dict[str, Run], scorers: LazyPairScorer,
                        size: int) -> None:  # fmt: skip
    """Add ``overlap@10_vs_exact`` to every system's record, and to the exact sparse engines the
    number of queries whose ranking differs from the reference's (``queries_differing_from_exact``);
    systems measured before the reference are checked once it is there."""
    ref = next((s for s in EXACT_SPARSE if s in runs), None)
    if ref is not None:
        sparse = [s for s in runs if s.startswith("sparse")]
        scorer = scorers.get() if any(s not in EXACT_SPARSE for s in sparse) else None
        for system in sparse:
            rec = records[system]
            if system in EXACT_SPARSE:
                rec["overlap@10_vs_exact"] = overlap_at_k(runs[system], runs[ref], OVERLAP_AT)
                if system != ref:
                    differ = run_differences(runs[system], runs[ref])
                    rec["queries_differing_from_exact"] = differ
                    rec["exact_reference"] = ref
                    log.log(logging.INFO if differ == 0 else logging.WARNING,
                            "%s vs %s at %d: %d of %d queries differ (ids, order or scores)", system, ref, size, differ,
                            len(runs[ref]))  # fmt: skip
            elif scorer is not None:
                rec["overlap@10_vs_exact"] = overlap_at_k(
                    runs[system], runs[ref], OVERLAP_AT, scorer.exact_scores(runs[system], OVERLAP_AT)
                )
    if {"dense-faiss-flat", "dense-faiss-hnsw"} <= runs.keys():
        for system in ("dense-faiss-flat", "dense-faiss-hnsw"):
            rounded = {
                name: {q: [(d, round(s, DENSE_SCORE_DECIMALS)) for d, s in hits] for q, hits in runs[name].items()}
                for name in (system, "dense-faiss-flat")
            }
            flat = rounded["dense-faiss-flat"]
            records[system]["overlap@10_vs_exact"] = overlap_at_k(rounded[system], flat, OVERLAP_AT)


class ExactPairScorer:
    """Exact scores of (query, document) pairs from the quantized vectors stored with the index, for
    systems whose own scores may be approximate."""

    def __init__(self, docvectors: Path, queries: SparseBatch, qids: list[str]) -> None:
        from lexret.index_meta import read_meta
        from lexret.quantize import Quantizer

        folder = docvectors.parent
        meta = read_meta(folder, verify_files=False)
        quant = Quantizer(meta["quantization"]["scale"], meta["quantization"]["max_impact"])
        self._q = quant(queries).to_scipy().astype(np.float64)
        with np.load(docvectors) as z:
            self._d = SparseBatch(z["indptr"], z["indices"], z["values"], queries.dim).to_scipy().astype(np.float64)
        ids = (folder / "docids.txt").read_text(encoding="utf-8").splitlines()
        self._row = {d: i for i, d in enumerate(ids)}
        self._qrow = {q: i for i, q in enumerate(qids)}

    def exact_scores(self, run: Run, n: int) -> dict[str, dict[str, float]]:
        """``{qid: {docid: exact score}}`` for the first ``n`` hits of every query of ``run``."""
        return {qid: dict(self.rescore(qid, hits[:n])) for qid, hits in run.items() if qid in self._qrow}

    def rescore(self, qid: str, hits: list[tuple[str, float]]) -> list[tuple[str, float]]:
        if not hits:
            return []
        rows = [self._row[d] for d, _ in hits]
        q = self._q[[self._qrow[qid]] * len(rows)]
        scores = np.asarray(q.multiply(self._d[rows]).sum(axis=1)).ravel()
        return [(d, float(s)) for (d, _), s in zip(hits, scores)]


def postings_per_query(docvectors: Path, queries: SparseBatch) -> float | None:
    """Mean number of postings a query's terms hold (the work of an exhaustive term-at-a-time
    search): the sum of the document frequencies of its terms."""
    if not docvectors.is_file():
        return None
    with np.load(docvectors) as z:
        df = np.bincount(z["indices"], minlength=queries.dim)
    per_query = queries.postings_per_row(df)
    return float(per_query.mean()) if len(per_query) else 0.0


def run_differences(a: dict[str, list[tuple[str, float]]], b: dict[str, list[tuple[str, float]]]) -> int:
    """How many queries have different ranked lists (ids, order or scores) in two runs."""
    return sum(a.get(q) != b.get(q) for q in a.keys() | b.keys())


def format_records(records: list[dict[str, Any]]) -> str:
    cols = [("R@1", "R@1"), ("R@5", "R@5"), ("R@10", "R@10"), ("index MB", "index_bytes"), ("build s", "build_s"),
            ("RSS MB", "peak_rss_bytes"), ("ms mean", "latency_ms_mean"), ("ms p50", "latency_ms_p50"),
            ("ms p95", "latency_ms_p95"), ("qps 1t", "qps_1thread"), ("qps 2t", "qps_2threads"),
            ("enc ms", "query_encode_ms"), ("ovl@10", "overlap@10_vs_exact"),
            ("kpost/q", "postings_per_query")]  # fmt: skip
    width = max([22, *(len(r["system"]) + 1 for r in records)])
    lines = ["system".ljust(width) + "corpus".rjust(10) + "".join(c.rjust(10) for c, _ in cols)]
    for r in records:
        cells = []
        for _, key in cols:
            v = r.get(key)
            if v is None:
                cells.append("-")
            elif key in ("index_bytes", "peak_rss_bytes"):
                cells.append(f"{v / 1e6:.1f}")
            elif key == "postings_per_query":
                cells.append(f"{v / 1e3:.1f}")
            else:
                cells.append(f"{v:.3f}" if key == "overlap@10_vs_exact" else f"{v:.2f}")
        lines.append(r["system"].ljust(width) + f"{r['corpus_size']:>10,}" + "".join(c.rjust(10) for c in cells))
    by = {(r["system"], r["corpus_size"]): r for r in records}
    for size in sorted({r["corpus_size"] for r in records}):
        ff = by.get(("dense-faiss-flat", size))
        if not ff:
            continue
        for system in sorted(s for s, n in by if n == size and s.startswith("sparse")):
            sp = by[(system, size)]
            qps = sp["qps_1thread"] / ff["qps_1thread"]
            size_ratio = sp["index_bytes"] / ff["index_bytes"]
            lines.append(
                f"corpus {size:,}: {system}/FAISS-flat throughput (1 thread) {qps:.2f}x, "
                f"p50 latency {sp['latency_ms_p50'] / ff['latency_ms_p50']:.3f}x, index bytes {size_ratio:.3f}x, "
                f"R@10 {sp['R@10']:.2f} vs {ff['R@10']:.2f}"
            )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], out_dir: Path) -> None:
    """latency, index size, throughput and postings per query vs corpus size, R@10 vs latency and
    overlap with the exact top-10 vs throughput (PNG); a system lacking a figure is left out of its plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({r["system"] for r in records})
    lat = "latency per query (ms, 1 thread)"
    figs = [
        ("latency_vs_size.png", "corpus_size", "latency_ms_mean", "corpus size (items)", lat, True),
        ("index_size_vs_size.png", "corpus_size", "index_bytes", "corpus size (items)", "index size (bytes)", True),
        ("recall_vs_latency.png", "latency_ms_mean", "R@10", lat, "R@10 (%)", False),
        ("qps_vs_size.png", "corpus_size", "qps_1thread", "corpus size (items)", "queries/s (batch, 1 thread)", True),
        (
            "postings_vs_size.png",
            "corpus_size",
            "postings_per_query",
            "corpus size (items)",
            "postings (or documents) scored per query",
            True,
        ),
        (
            "overlap_vs_qps.png",
            "qps_1thread",
            "overlap@10_vs_exact",
            "queries/s (batch, 1 thread)",
            "overlap@10 with the exact top-10",
            False,
        ),
    ]
    for name, x, y, xl, yl, logy in figs:
        fig, ax = plt.subplots(figsize=(6, 4))
        plotted = False
        for s in systems:
            rs = sorted((r for r in records if r["system"] == s and r.get(x) is not None and r.get(y) is not None),
                        key=lambda r: r["corpus_size"])  # fmt: skip
            if rs:
                ax.plot([r[x] for r in rs], [r[y] for r in rs], marker="o", label=s)
                plotted = True
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if plotted:
            ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
