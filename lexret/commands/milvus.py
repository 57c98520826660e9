"""``lexret milvus load``: put sparse vectors into a Milvus collection for serving.

``lexret search --backend milvus --uri URI --collection NAME`` searches it afterwards.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lexret.commands._common import add_on_error_flag, add_vocab_flag

log = logging.getLogger(__name__)


def add_milvus_flags(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--uri", required=required,
        help="Milvus: a local .db file (embedded milvus-lite) or http://HOST:19530 (a server or cluster; "
        "token from $LEXRET_MILVUS_TOKEN)",
    )  # fmt: skip
    p.add_argument("--collection", required=required, help="Milvus collection name")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("milvus", help="serve sparse vectors with Milvus (load a collection)")
    msub = p.add_subparsers(dest="milvus_command", metavar="ACTION", required=True)
    load = msub.add_parser(
        "load",
        help="insert quantized vectors into a Milvus collection (created if absent; resumable)",
        description="Create (if absent) a collection with a SPARSE_FLOAT_VECTOR field indexed by "
        "SPARSE_INVERTED_INDEX for inner product, and insert the quantized vectors with their ids in "
        "batches. Rerunning the same command after an interruption skips the ids already stored.",
    )
    load.add_argument("--vectors", required=True, help="vector file (JSONL or .npz) or a folder of `encode --ray`")
    add_milvus_flags(load, required=True)
    load.add_argument("--scale", type=float, default=None, help="impact = round(weight * scale) (default as index)")
    load.add_argument("--max-impact", type=int, default=None, help="clip impacts to this value")
    load.add_argument("--model-id", default=None, help="model of the vectors (default: the file's metadata)")
    load.add_argument("--modality", default=None, help="what the documents are: image, text, ...")
    load.add_argument("--chunk-size", type=int, default=10_000, help="vectors read per chunk (bounds memory)")
    load.add_argument("--replace", action="store_true", help="drop an existing collection of that name first")
    add_vocab_flag(load)
    add_on_error_flag(load)
    load.set_defaults(func=run_load)


def run_load(args: argparse.Namespace) -> int:
    from lexret.backends.milvus import MilvusCollection, check_same_documents
    from lexret.errors import LexretError
    from lexret.index_meta import UNKNOWN_MODEL
    from lexret.quantize import DEFAULT_MAX_IMPACT, DEFAULT_SCALE, Quantizer
    from lexret.vectors import iter_vectors, read_meta
    from lexret.vocab import load_vocabulary

    if args.chunk_size < 1:
        raise LexretError("--chunk-size must be at least 1")
    vocab = load_vocabulary(args.vocab)
    src_meta = read_meta(args.vectors)
    if src_meta.get("vocab_hash") not in (None, vocab.hash):
        raise LexretError(
            f"{args.vectors} was encoded with vocabulary {src_meta['vocab_hash']}, not {vocab.hash}; pass its --vocab"
        )
    quantizer = Quantizer(
        args.scale if args.scale is not None else DEFAULT_SCALE,
        args.max_impact if args.max_impact is not None else DEFAULT_MAX_IMPACT,
    )
    meta = {
        "model_id": args.model_id or src_meta.get("model_id", UNKNOWN_MODEL),
        "modality": args.modality or src_meta.get("modality", "unknown"),
        "vocab_hash": vocab.hash,
        "vocab_size": len(vocab),
        "quantization": quantizer.to_dict(),
        "source": str(Path(args.vectors).resolve()),
    }
    coll = MilvusCollection(args.uri, args.collection)
    if args.replace:
        coll.drop()
    resuming = coll.exists()
    if resuming:
        check_same_documents(coll.meta(), meta, coll.where())
        log.info("%s exists with %d vectors; ids already stored are skipped", coll.where(), coll.count())
    else:
        coll.create(meta)
    skipped = 0

    def todo():
        nonlocal skipped
        for ids, batch in iter_vectors(args.vectors, vocab, chunk_size=args.chunk_size, on_error=args.on_error):
            done = coll.stored(ids) if resuming else set()
            keep = [i for i, d in enumerate(ids) if d not in done]
            skipped += len(ids) - len(keep)
            if keep:
                yield [ids[i] for i in keep], quantizer(batch.take(keep))

    n = coll.insert(todo(), total=None)
    log.info("inserted %d vectors into %s (%d were there already); it holds %d", n, coll.where(), skipped,
             coll.count())  # fmt: skip
    return 0
