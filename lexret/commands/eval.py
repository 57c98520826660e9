"""``lexret eval``: the sparse model in Lucene against the dense baseline in FAISS, end to end."""

from __future__ import annotations

import argparse
import logging

from lexret.commands._common import add_heap_flag, add_on_error_flag

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="encode a split, index it (Lucene impact + FAISS), run t2i and i2t, report metrics and costs",
    )
    p.add_argument("--data", required=True, help="captions JSONL ({image, captions, split} lines)")
    p.add_argument("--split", default=None, help="split to evaluate (default: every item)")
    p.add_argument("--out", required=True, help="report JSON to write")
    p.add_argument("--model", default=None, help="sparse model checkpoint folder (default: the shipped one)")
    p.add_argument("--dense-model", default=None, help="dense baseline checkpoint folder (default: shipped)")
    p.add_argument("--no-dense", action="store_true", help="evaluate the sparse model only")
    p.add_argument("--work-dir", default=None, help="keep indexes, runs and encoded vectors here")
    p.add_argument(
        "--scale", type=float, default=None, help="quantization scale (default: lexret.quantize.DEFAULT_SCALE, 25)"
    )
    p.add_argument("--k", type=int, default=10, help="hits per query")
    p.add_argument(
        "--top-k-image", type=int, default=None, help="terms kept per image (default: the sparse model's; shipped: 48)"
    )
    p.add_argument(
        "--top-k-text", type=int, default=None, help="terms kept per caption (default: the sparse model's; shipped: 32)"
    )
    p.add_argument(
        "--no-caption-prior", action="store_true",
        help="index captions without the model's caption priors (image->text; see lexret.document_prior)",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images of the split")
    p.add_argument("--batch-size", type=int, default=64, help="encoding batch size")
    add_on_error_flag(p)
    add_heap_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from lexret.data import load_captions
    from lexret.encoders import DenseEncoder, SparseEncoder, encode_images_both, encode_texts_both
    from lexret.errors import LexretError
    from lexret.evaluation import (
        SplitIds,
        evaluate_dense,
        evaluate_sparse,
        format_report,
        per_query_encode_ms,
        save_report,
        term_precision_at_10,
    )

    if args.k < 1 or args.batch_size < 1:
        raise LexretError("--k and --batch-size must be at least 1")
    for flag, v in (("--top-k-image", args.top_k_image), ("--top-k-text", args.top_k_text)):
        if v is not None and not 1 <= v <= 4096:
            raise LexretError(f"{flag} must be between 1 and 4096 terms, got {v}")
    if args.heap:
        import os

        os.environ["LEXRET_JAVA_HEAP"] = args.heap
    coll = load_captions(args.data, split=args.split, on_error=args.on_error, limit=args.limit)
    ids = SplitIds.from_collection(coll)
    images = [it.image for it in coll.items]
    captions = coll.captions
    log.info("%s: %d images, %d captions", args.data, len(images), len(captions))
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lexret-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "data": {"images": len(images), "captions": len(captions), "split": args.split, "path": str(args.data)},
        "systems": {},
    }
    try:
        sparse = SparseEncoder.from_pretrained(args.model)
        if args.top_k_image is not None:
            sparse.top_k_doc = args.top_k_image
        if args.top_k_text is not None:
            sparse.top_k_query = args.top_k_text
        dense = None if args.no_dense else DenseEncoder.from_pretrained(args.dense_model)
        if dense is None:
            img_s = sparse.encode_images(images, batch_size=args.batch_size, progress=True)
            cap_s = sparse.encode_texts(captions, batch_size=args.batch_size, progress=True)
        else:  # the frozen backbones run once for both models
            img_s, img_d = encode_images_both(images, sparse, dense, batch_size=args.batch_size, progress=True)
            cap_s, cap_d = encode_texts_both(captions, sparse, dense, batch_size=args.batch_size, progress=True)
        cap_docs = None
        if sparse.encoded_documents:  # caption documents through the text network, queries by the table
            cap_docs = sparse.encode_text_documents(captions, batch_size=args.batch_size, progress=True)
        cap_meta, plain_docs = None, cap_docs
        if not args.no_caption_prior and sparse.caption_prior() is not None:
            cap_docs, cap_meta = sparse.with_caption_priors(cap_s if cap_docs is None else cap_docs)
            log.info("caption documents carry priors over %d bank images (T=%s)",
                     cap_meta["query_prior"]["bank_images"], cap_meta["query_prior"]["temperature"])  # fmt: skip
        res = evaluate_sparse(
            ids, img_s, cap_s, vocab=sparse.vocab, model_id=sparse.model_id, work=work / "sparse", k=args.k,
            scale=args.scale, caption_documents=cap_docs, caption_meta=cap_meta,
        )  # fmt: skip
        res["caption_prior"] = None if cap_meta is None else cap_meta["query_prior"]
        if cap_meta is not None:  # side by side: the same vectors without the priors (image->text changes)
            plain = evaluate_sparse(
                ids, img_s, cap_s, vocab=sparse.vocab, model_id=sparse.model_id, work=work / "sparse-no-prior",
                k=args.k, scale=args.scale,
                caption_documents=plain_docs,
            )  # fmt: skip
            report["systems"]["sparse-lucene-no-prior"] = {**plain, "model_id": sparse.model_id}
        res["term_precision@10"] = term_precision_at_10(img_s, coll, sparse.vocab.tokens)
        res["query_encode_ms"] = per_query_encode_ms(sparse.encode_texts, captions)
        res["model_id"] = sparse.model_id
        res["top_k"] = {"image": sparse.top_k_doc, "text": sparse.top_k_query}
        report["systems"]["sparse-lucene"] = res
        if dense is not None:
            res = evaluate_dense(ids, img_d, cap_d, work=work / "dense", k=args.k)
            res["query_encode_ms"] = per_query_encode_ms(dense.encode_texts, captions)
            res["model_id"] = dense.model_id
            report["systems"]["dense-faiss"] = res
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    save_report(Path(args.out), report)
    print(format_report(report))
    return 0
