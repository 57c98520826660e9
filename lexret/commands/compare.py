"""``lexret compare``: sparse Lucene vs dense FAISS as the corpus grows with distractors."""

from __future__ import annotations

import argparse
import logging

from lexret.commands._common import (
    add_heap_flag,
    add_impact_flags,
    add_on_error_flag,
    add_ray_flag,
    add_ray_workers_flags,
    add_two_phase_flags,
)

log = logging.getLogger(__name__)


def _sizes(text: str) -> list[int]:
    from lexret.errors import LexretError

    try:
        sizes = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LexretError(f"--distractors takes comma-separated counts such as 10000,100000, not {text!r}") from None
    if not sizes or any(s < 0 for s in sizes):
        raise LexretError("--distractors needs one or more counts >= 0")
    return sizes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="sparse Lucene vs dense FAISS at growing corpus sizes (distractors)")
    p.add_argument("--data", required=True, help="captions JSONL of the evaluation split")
    p.add_argument("--split", default=None, help="split of --data to evaluate")
    p.add_argument("--distractors", required=True, help="distractor counts, e.g. 9000,99000,999000")
    p.add_argument("--distractor-data", default=None, help="captions JSONL whose images are real distractors")
    p.add_argument("--out", required=True, help="folder for compare.json, plots, indexes and runs")
    p.add_argument("--cache-dir", default=None, help="encodings and synthetic chunks (default: OUT/cache)")
    p.add_argument("--model", default=None, help="sparse model checkpoint (default: shipped)")
    p.add_argument("--dense-model", default=None, help="dense baseline checkpoint (default: shipped)")
    p.add_argument(
        "--systems", default=None,
        help="comma-separated systems to measure (default: every one but sparse-scipy, the slow brute force "
        "that sparse-exact replaces as the exact reference)",
    )  # fmt: skip
    p.add_argument("--k", type=int, default=10, help="hits per query")
    p.add_argument("--scale", type=float, default=None, help="quantization scale")
    p.add_argument("--index-threads", type=int, default=2, help="Lucene indexing threads")
    p.add_argument(
        "--optimize", action="store_true", help="force-merge Lucene indexes to one segment (measured slower at k=10)"
    )
    p.add_argument(
        "--reorder", choices=("none", "bp"), default="none",
        help="Lucene document order: none (corpus order, default) or bp (recursive graph bisection)",
    )  # fmt: skip
    add_two_phase_flags(p)
    add_impact_flags(p)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--hnsw-ef-construction", type=int, default=200)
    p.add_argument("--hnsw-ef-search", type=int, default=128)
    p.add_argument("--latency-queries", type=int, default=1000, help="queries timed one by one per system")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic distractors")
    p.add_argument(
        "--shards", type=int, default=None,
        help="also measure sparse-lucene-sharded: the corpus in N Lucene shards, searched shard by shard and merged "
        "(exact); with --ray built as Ray tasks and searched by one Ray actor per shard",
    )  # fmt: skip
    add_ray_flag(p, "encode the split, captions and real distractors on Ray actors (same vectors, same cache)")
    add_ray_workers_flags(p)
    add_on_error_flag(p)
    add_heap_flag(p)
    p.set_defaults(func=run)


def _systems(args: argparse.Namespace) -> tuple[str, ...]:
    """``--systems`` (or the default set), with sparse-lucene-sharded added by ``--shards``."""
    from lexret.compare import SHARDED, CompareConfig
    from lexret.errors import LexretError
    from lexret.measure import SYSTEMS

    if args.systems is None:
        systems = CompareConfig().systems
    else:
        systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise LexretError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    if args.shards is None and SHARDED in systems:
        raise LexretError(f"{SHARDED} needs a shard count: add --shards N")
    if args.shards is not None and SHARDED not in systems:
        systems = (*systems, SHARDED)
    return systems


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lexret.backends.dense import HnswParams
    from lexret.commands._common import check_ray_args, impact_params, two_phase_params
    from lexret.compare import CompareConfig, format_records, run_compare
    from lexret.data import load_captions
    from lexret.encoders import DenseEncoder, SparseEncoder
    from lexret.errors import LexretError

    check_ray_args(args)
    systems = _systems(args)
    two_phase, given = two_phase_params(args)
    if given and "sparse-lucene-2phase" not in systems:
        raise LexretError(
            "--prune-ratio, --expansion, --max-query-terms and --max-postings tune sparse-lucene-2phase, "
            "which --systems leaves out"
        )
    impact, given = impact_params(args)
    if given and "sparse-impact" not in systems:
        raise LexretError("--impact-postings and --impact-expansion tune sparse-impact, which --systems leaves out")
    cfg = CompareConfig(
        sizes=_sizes(args.distractors), k=args.k, seed=args.seed, scale=args.scale,
        index_threads=args.index_threads, optimize=args.optimize, reorder=args.reorder,
        hnsw=HnswParams(args.hnsw_m, args.hnsw_ef_construction, args.hnsw_ef_search), two_phase=two_phase,
        impact=impact, latency_queries=args.latency_queries, systems=systems, heap=args.heap, shards=args.shards,
        ray=args.ray, workers=args.workers or 2, cpus_per_worker=args.cpus_per_worker or 1.0,
    )  # fmt: skip
    coll = load_captions(args.data, split=args.split, on_error=args.on_error)
    dcoll = load_captions(args.distractor_data, on_error=args.on_error) if args.distractor_data else None
    out = Path(args.out)
    records = run_compare(
        coll, dcoll, SparseEncoder.from_pretrained(args.model), DenseEncoder.from_pretrained(args.dense_model), cfg,
        out, Path(args.cache_dir) if args.cache_dir else out / "cache",
    )  # fmt: skip
    print(format_records(records))
    return 0
