"""``lexret search``: batch search an index with pre-encoded query vectors, writing a TREC run."""

from __future__ import annotations

import argparse
import logging
import os

from lexret.commands._common import (
    add_heap_flag,
    add_impact_flags,
    add_on_error_flag,
    add_ray_flag,
    add_two_phase_flags,
    add_vocab_flag,
    impact_params,
    two_phase_params,
)
from lexret.commands.milvus import add_milvus_flags

# lexret.searcher.BACKENDS + milvus
BACKENDS = ("lucene", "lucene-2phase", "exact", "impact", "scipy", "seismic", "milvus")

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index with query vectors; writes a TREC run")
    p.add_argument("--index", default=None, help="index folder built by `lexret index` (single or sharded)")
    p.add_argument("--queries", required=True, help="query vector file (JSONL or .npz)")
    p.add_argument("--k", type=int, default=10, help="hits per query")
    p.add_argument("--out", required=True, help="TREC run file to write")
    p.add_argument(
        "--backend", choices=BACKENDS, default="lucene",
        help="lucene; lucene-2phase (the heaviest query terms pick candidates in Lucene, the whole query rescores "
        "them from the stored vectors: approximate); exact (term-at-a-time over the stored vectors, numba: same "
        "results as lucene, faster); impact (the stored vectors with impact-ordered posting lists: reads at most "
        "--impact-postings postings per query, those adding most first, and rescores the best exactly: approximate, "
        "work bounded whatever the collection's size); scipy (brute force, the slow reference); seismic: "
        "approximate (an index built with --engine seismic); milvus (a collection of `lexret milvus load`: --uri, "
        "--collection)",
    )  # fmt: skip
    add_seismic_search_flags(p)
    add_two_phase_flags(p)
    add_impact_flags(p)
    p.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="search threads (default: all cores; 2 gave 1.75x)"
    )
    p.add_argument("--chunk-size", type=int, default=1000, help="queries per batch (bounds the JVM heap)")
    p.add_argument("--model-id", default=None, help="model that encoded the queries (default: the file's .meta.json)")
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="the queries are integer impacts quantized with this scale (must equal the index's); "
        "without it, query weights are quantized with the index's scale",
    )
    p.add_argument("--tag", default="lexret", help="run tag (last TREC column)")
    add_vocab_flag(p)
    add_on_error_flag(p)
    add_heap_flag(p)
    add_milvus_flags(p, required=False)
    add_ray_flag(p, "search the shards of a sharded index with one Ray actor (and JVM) each")
    p.set_defaults(func=run)


def add_seismic_search_flags(p: argparse.ArgumentParser) -> None:
    from lexret.backends.seismic import SeismicSearchParams

    d = SeismicSearchParams()
    g = p.add_argument_group("Seismic search (--backend seismic; defaults chosen in docs/seismic.md)")
    g.add_argument("--query-cut", type=int, default=d.query_cut, help="heaviest query terms used (default %(default)s)")
    g.add_argument("--heap-factor", type=float, default=d.heap_factor,
                   help="skip a block whose summary scores below this x the k-th score, in (0, 1]; smaller: "
                   "more accurate, slower (default %(default)s)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from lexret.backends.seismic import SeismicSearchParams
    from lexret.distributed.sharded_search import open_searcher
    from lexret.errors import LexretError
    from lexret.index_meta import QuerySpec
    from lexret.trec import write_run_chunks
    from lexret.vectors import read_vectors
    from lexret.vocab import load_vocabulary

    if args.k < 1 or args.threads < 1 or args.chunk_size < 1:
        raise LexretError("--k, --threads and --chunk-size must be at least 1")
    two_phase, given = two_phase_params(args)  # checks the values before any work
    if given and args.backend != "lucene-2phase":
        raise LexretError(
            "--prune-ratio, --expansion, --max-query-terms and --max-postings apply to --backend lucene-2phase only"
        )
    impact, given = impact_params(args)
    if given and args.backend != "impact":
        raise LexretError("--impact-postings and --impact-expansion apply to --backend impact only")
    if args.backend == "milvus" and not (args.uri and args.collection) or args.backend != "milvus" and args.uri:
        raise LexretError("--uri and --collection go with --backend milvus, which needs both")
    if args.backend != "milvus" and not args.index:
        raise LexretError(f"--backend {args.backend} needs --index (an index folder built by `lexret index`)")
    if args.backend in ("lucene", "lucene-2phase"):
        from lexret.backends.lucene import resolve_heap

        resolve_heap(args.heap)  # a bad --heap or $LEXRET_JAVA_HEAP is reported before any work
    vocab = load_vocabulary(args.vocab)
    qs = read_vectors(args.queries, vocab, on_error=args.on_error)
    spec = QuerySpec(
        model_id=args.model_id or qs.meta.get("model_id"),
        vocab_hash=qs.meta.get("vocab_hash", vocab.hash),
        scale=args.scale if args.scale is not None else qs.meta.get("scale"),
    )
    if args.backend == "milvus":
        from lexret.backends.milvus import MilvusSearcher

        searcher = MilvusSearcher(args.uri, args.collection, vocab, expect=spec)
    else:
        options = {
            "seismic": SeismicSearchParams(query_cut=args.query_cut, heap_factor=args.heap_factor),
            "two_phase": two_phase,
            "impact": impact,
        }
        searcher = open_searcher(
            args.index, vocab, expect=spec, backend=args.backend, heap=args.heap, ray=args.ray, **options
        )
    with searcher:
        chunks = searcher.iter_search(qs.ids, qs.batch, args.k, threads=args.threads, chunk_size=args.chunk_size)
        n = write_run_chunks(args.out, chunks, tag=args.tag)  # streamed: memory holds one chunk of hits
    log.info("wrote %s: %d queries, k=%d", args.out, n, args.k)
    return 0
