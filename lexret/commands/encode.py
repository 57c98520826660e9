"""``lexret encode``: images (a folder or a captions JSONL) or texts -> a sparse vector file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "encode",
        help="encode images or texts into sparse vectors (JSONL)",
        description="Encode with the sparse model (default: the shipped checkpoint). Image ids are paths "
        "relative to the folder or the JSONL's image values; text ids are line numbers or the 'id' field.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of images, or a captions JSONL whose 'image' entries are encoded")
    src.add_argument("--texts", help="a text file (one text a line) or JSONL of {'id', 'text'}")
    p.add_argument("--out", required=True, help="output vectors (.jsonl, or .npz)")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the shipped sparse model)")
    p.add_argument("--batch-size", type=int, default=None, help="items per forward pass (default 32 images / 64 texts)")
    p.add_argument("--top-k", type=int, default=None, help="terms kept per item (default: the model's, 64/32)")
    p.add_argument("--split", default=None, help="with a captions JSONL: only items of this split")
    p.add_argument(
        "--on-error", choices=("stop", "skip"), default="stop", help="stop at the first bad item or skip and report"
    )
    p.set_defaults(func=run)


def _image_inputs(src: Path, split: str | None, on_error: str) -> tuple[list[str], list[Path]]:
    from lexret.data import list_images, load_captions

    if src.is_dir():
        files = list_images(src)
        return [f.relative_to(src).as_posix() for f in files], files
    coll = load_captions(src, split=split, on_error=on_error)
    return [it.key for it in coll.items], [it.image for it in coll.items]


def _check_images(ids: list[str], files: list[Path], on_error: str) -> tuple[list[str], list]:
    """Decode every image once up front so that a bad file is reported by name (or skipped)."""
    from lexret.data import load_image
    from lexret.errors import InputError

    keep_ids, imgs, skipped = [], [], []
    for i, f in zip(ids, files):
        try:
            load_image(f)
        except InputError as e:
            if on_error == "stop":
                raise
            skipped.append(str(e))
            continue
        keep_ids.append(i)
        imgs.append(f)
    if skipped:
        log.warning("skipped %d unreadable images:", len(skipped))
        for s in skipped[:20]:
            log.warning("  %s", s)
    return keep_ids, imgs


def write_vector_file(path: Path, ids: list[str], batch, vocab, meta: dict) -> None:
    from lexret.vectors import write_vectors

    write_vectors(path, ids, batch, vocab, meta=meta)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexret.encoders import SparseEncoder
    from lexret.errors import LexretError

    if args.batch_size is not None and args.batch_size < 1:
        raise LexretError("--batch-size must be at least 1")
    if args.top_k is not None and args.top_k < 1:
        raise LexretError("--top-k must be at least 1")
    enc = SparseEncoder.from_pretrained(args.model)
    meta = enc.metadata()
    if args.images:
        ids, files = _image_inputs(Path(args.images), args.split, args.on_error)
        ids, files = _check_images(ids, files, args.on_error)
        batch = enc.encode_images(files, batch_size=args.batch_size or 32, progress=True, top_k=args.top_k)
        meta["side"] = "image"
    else:
        from lexret.data import read_texts

        ids, texts = read_texts(args.texts, on_error=args.on_error)
        batch = enc.encode_texts(texts, batch_size=args.batch_size or 64, progress=True, top_k=args.top_k)
        meta["side"] = "text"
    meta["top_k"] = args.top_k or (enc.top_k_doc if args.images else enc.top_k_query)
    write_vector_file(Path(args.out), ids, batch, enc.vocab, meta)
    tpr = batch.terms_per_row()
    log.info("wrote %d vectors (%.1f terms each on average) to %s", len(ids), tpr.mean() if len(tpr) else 0, args.out)
    return 0
