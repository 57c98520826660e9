"""``lexret ensemble``: fuse trained sparse models into one checkpoint (vectors added in term space)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _floats(raw: str) -> list[float]:
    try:
        return [float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a comma-separated list of numbers") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="fuse sparse checkpoints into one model whose vectors are their weighted sum",
        description=(
            "Each member's vector is pruned to its own top-k and L2-normalised; the weighted sum is pruned "
            "to the ensemble's top-k. The result is a checkpoint folder like any other (--model DIR): one "
            "vector per item, so the index and query cost are those of a single model. Members are stored "
            "inference-only (float16, without the training-only decoder)."
        ),
    )
    p.add_argument("members", nargs="+", type=Path, metavar="CHECKPOINT", help="sparse checkpoint folders")
    p.add_argument("--out", required=True, type=Path, help="new checkpoint folder")
    p.add_argument("--model-id", required=True, help="id of the fused model, stored in every index built with it")
    p.add_argument("--weights", type=_floats, default=None, help="one weight per member, e.g. 1,1,0.5 (default: 1)")
    p.add_argument("--top-k-image", type=int, default=None, help="terms kept per image (default: the first member's)")
    p.add_argument("--top-k-text", type=int, default=None, help="terms kept per text (default: the first member's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import shutil

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexret.encoders import SparseEncoder
    from lexret.errors import LexretError
    from lexret.model.checkpoint import save_ensemble

    for k in (args.top_k_image, args.top_k_text):
        if k is not None and k < 1:
            raise LexretError("--top-k-image and --top-k-text must be at least 1")
    cfg = save_ensemble(args.out, args.members, args.model_id, args.weights, args.top_k_image, args.top_k_text)
    try:  # load as users will, so that a member that cannot run fails here, not at the first search
        enc = SparseEncoder.from_pretrained(args.out)
        terms = enc.decode(enc.encode_texts(["a dog runs on the beach"]), top=5)[0]
    except BaseException:
        shutil.rmtree(args.out, ignore_errors=True)
        raise
    terms = ", ".join(f"{t} {w:.2f}" for t, w in terms)
    log.info(
        "wrote %s (%s): %d members, top-%d image / top-%d text terms; 'a dog runs on the beach' -> %s",
        args.out,
        cfg["model_id"],
        len(cfg["ensemble"]["members"]),
        cfg["top_k_image"],
        cfg["top_k_text"],
        terms,
    )
    return 0
