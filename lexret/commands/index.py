"""``lexret index``: build a Lucene impact index (or Seismic's approximate one) from a vector file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lexret.commands._common import add_heap_flag, add_on_error_flag, add_ray_flag, add_vocab_flag, count_lines

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a Lucene (or Seismic) impact index from sparse vectors")
    p.add_argument("--vectors", required=True, help="vector file: JSONL {id, vector: {term: weight}} or .npz")
    p.add_argument("--out", required=True, help="index folder to create (replaced only when the build completes)")
    p.add_argument("--scale", type=float, default=None, help="impact = round(weight * scale); 1 keeps int weights")
    p.add_argument("--max-impact", type=int, default=None, help="clip impacts to this value")
    p.add_argument("--threads", type=int, default=2, help="indexing threads (and collection shards)")
    p.add_argument("--optimize", action="store_true", help="merge the index into a single segment")
    p.add_argument(
        "--reorder", choices=("none", "bp"), default="none",
        help="document order: none keeps the input order (default), bp clusters documents that share terms",
    )  # fmt: skip
    p.add_argument(
        "--engine", choices=("lucene", "seismic"), default="lucene",
        help="lucene: exact impact search (default); seismic: approximate, searched with --backend seismic",
    )  # fmt: skip
    add_seismic_build_flags(p)
    p.add_argument(
        "--short-ids", action="store_true",
        help="Lucene holds short base-62 ids instead of the collection's own: a smaller index, but stock "
        "Anserini/Pyserini then return the short ids (only lexret maps them back)",
    )  # fmt: skip
    p.add_argument("--model-id", default=None, help="model that produced the vectors (default: the file's .meta.json)")
    p.add_argument("--modality", default=None, help="what the documents are: image, text, ...")
    p.add_argument("--no-store-vectors", action="store_true", help="do not keep vectors for --backend scipy")
    p.add_argument("--chunk-size", type=int, default=10_000, help="vectors read per chunk (bounds memory)")
    p.add_argument(
        "--shards", type=int, default=None,
        help="build a sharded index: OUT/shard-000 ... each a complete index, documents split by a hash of their id",
    )  # fmt: skip
    add_vocab_flag(p)
    add_on_error_flag(p)
    add_heap_flag(p)
    add_ray_flag(p, "build the shards as Ray tasks")
    p.set_defaults(func=run)


def add_seismic_build_flags(p: argparse.ArgumentParser) -> None:
    from lexret.backends.seismic import SeismicBuildParams

    d = SeismicBuildParams()
    g = p.add_argument_group("Seismic build (--engine seismic; defaults chosen in docs/seismic.md)")
    g.add_argument("--n-postings", type=int, default=d.n_postings,
                   help="postings kept per term on average (default %(default)s)")  # fmt: skip
    g.add_argument("--centroid-fraction", type=float, default=d.centroid_fraction,
                   help="share of a list's documents that become block centroids (default %(default)s)")  # fmt: skip
    g.add_argument("--summary-energy", type=float, default=d.summary_energy,
                   help="share of a block summary's weight mass kept (default %(default)s)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from lexret.backends.lucene import resolve_heap
    from lexret.backends.seismic import SeismicBuildParams
    from lexret.errors import LexretError
    from lexret.index_meta import UNKNOWN_MODEL
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.quantize import DEFAULT_MAX_IMPACT, DEFAULT_SCALE
    from lexret.vectors import iter_vectors, read_meta
    from lexret.vocab import load_vocabulary

    if args.threads < 1 or args.chunk_size < 1:
        raise LexretError("--threads and --chunk-size must be at least 1")
    if args.ray and args.shards is None:
        raise LexretError("--ray builds the shards of a sharded index; add --shards N")
    if args.shards is not None and args.engine != "lucene":
        raise LexretError(f"--shards builds Lucene shards; drop --shards or use --engine lucene (not {args.engine})")
    if args.engine == "lucene":
        resolve_heap(args.heap)  # a bad --heap or $LEXRET_JAVA_HEAP is reported before any work
    vocab = load_vocabulary(args.vocab)
    src_meta = read_meta(args.vectors)
    if src_meta.get("vocab_hash") not in (None, vocab.hash):
        raise LexretError(
            f"{args.vectors} was encoded with vocabulary {src_meta['vocab_hash']}, not {vocab.hash}; pass its --vocab"
        )
    config = IndexConfig(
        scale=args.scale if args.scale is not None else DEFAULT_SCALE,
        max_impact=args.max_impact if args.max_impact is not None else DEFAULT_MAX_IMPACT,
        threads=args.threads,
        optimize=args.optimize,
        heap=args.heap,
        store_vectors=not args.no_store_vectors,
        reorder=args.reorder,
        engine=args.engine,
        seismic=SeismicBuildParams(
            n_postings=args.n_postings, centroid_fraction=args.centroid_fraction, summary_energy=args.summary_energy
        ),
        short_ids=args.short_ids,
    )
    info = IndexInfo(
        model_id=args.model_id or src_meta.get("model_id", UNKNOWN_MODEL),
        modality=args.modality or src_meta.get("modality", "unknown"),
        source=str(Path(args.vectors).resolve()),
    )
    skipped: list[tuple[int, str]] = []
    total = count_lines(args.vectors) if Path(args.vectors).suffix != ".npz" and Path(args.vectors).is_file() else None
    chunks = iter_vectors(args.vectors, vocab, chunk_size=args.chunk_size, on_error=args.on_error, skipped=skipped)
    if args.shards is not None:
        from lexret.distributed.sharded_index import ShardedBuild, build_sharded

        build = ShardedBuild(args.shards, ray=args.ray)
        meta = build_sharded(chunks, args.out, vocab, build, config, info, total=total)
    else:
        meta = Indexer(vocab, config).build(chunks, args.out, info, total=total)
    if skipped:
        log.warning("skipped %d bad line(s) of %s:", len(skipped), args.vectors)
        for _, reason in skipped:
            log.warning("  %s", reason)
    log.info(
        "built %s: %d documents, %.1f terms/doc, %d bytes", args.out, meta["num_docs"], meta["avg_doc_terms"],
        meta["index_bytes"],
    )  # fmt: skip
    return 0
