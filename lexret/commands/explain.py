"""``lexret explain``: the top terms of one image or one text under the sparse model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="print the top terms and weights of an image or a text",
        description="An argument naming an existing image file is encoded as an image, anything else as text.",
    )
    p.add_argument("item", metavar="IMAGE_OR_TEXT", help="an image path, or a text (quote it)")
    p.add_argument("--top", type=int, default=20, help="terms to print (default 20)")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the shipped sparse model)")
    p.add_argument("--text", action="store_true", help="treat the argument as text even if a file has that name")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexret.data import IMAGE_SUFFIXES
    from lexret.encoders import SparseEncoder
    from lexret.errors import LexretError

    if args.top < 1:
        raise LexretError("--top must be at least 1")
    enc = SparseEncoder.from_pretrained(args.model)
    p = Path(args.item)
    is_image = not args.text and p.is_file()
    if not is_image and not args.text and p.suffix.lower() in IMAGE_SUFFIXES and len(args.item.split()) == 1:
        raise LexretError(f"image file {p} not found (pass --text to encode the string as text)")
    batch = enc.encode_images([p]) if is_image else enc.encode_texts([args.item])
    terms = enc.decode(batch, top=args.top)[0]
    n = int(batch.terms_per_row()[0])
    if args.json:
        print(
            json.dumps(
                {
                    "item": args.item,
                    "kind": "image" if is_image else "text",
                    "model_id": enc.model_id,
                    "n_terms": n,
                    "terms": [[t, round(w, 4)] for t, w in terms],
                }
            )
        )
        return 0
    print(f"{'image' if is_image else 'text'}: {args.item}  ({n} terms, model {enc.model_id})")
    for t, w in terms:
        print(f"  {t:<16} {w:.3f}")
    return 0
