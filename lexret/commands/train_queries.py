"""``lexret train-queries``: learn an inference-free query map over a sparse model's documents."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from lexret.training.config import QueryMapConfig

    d = QueryMapConfig()

    p = subparsers.add_parser(
        "train-queries",
        help="learn inference-free caption queries (no network at query time) for a sparse model's documents",
        description=(
            "Learns a map from a caption's own wordpieces to weighted terms (with expansions) against the "
            "fixed image vectors of --documents, distilled from that model's own caption vectors, with a "
            "penalty on terms held by many images (long posting lists). The result is a checkpoint folder "
            "(--model DIR) whose queries cost a tokenizer call and a few look-ups; images and caption "
            "documents are still encoded by --documents, so its vectors and priors are that model's. "
            "Settings are checked on --dev-items training images held out of the map's training; val is "
            "never read. Uses lexret train's feature cache."
        ),
    )
    p.add_argument("--data", required=True, help="captions JSONL with train/val splits")
    p.add_argument("--out", required=True, type=Path, help="new checkpoint folder")
    p.add_argument(
        "--documents", default=None, help="sparse checkpoint whose documents the map serves (default: shipped)"
    )
    p.add_argument("--cache-dir", default=None, help="backbone feature cache (default: <out>/../.feature-cache)")
    p.add_argument("--model-id", default="", help="id of the new model (default: <documents' id>-querymap-v1)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument(
        "--dev-items",
        type=int,
        default=None,
        help=f"last training images held out for the printed figures (0: none; default {d.dev_items}, "
        "0 with --cv-folds)",
    )
    p.add_argument("--cv-fold", type=int, default=d.cv_fold,
                   help="with --cv-folds: hold out fold F of the training images (image i when i %% K == F) as the "
                   "dev images, as `lexret train --cv-fold` does")  # fmt: skip
    p.add_argument("--cv-folds", type=int, default=d.cv_folds, help="number of cross-validation folds (0: off)")
    p.add_argument("--w-df", type=float, default=d.w_df, help="weight of the posting-length penalty")
    p.add_argument(
        "--w-distill", type=float, default=d.w_distill, help="weight of distillation from the documents' model"
    )
    p.add_argument(
        "--no-expansion", action="store_true", help="learn weights for a caption's own words only (a diagonal map)"
    )
    p.add_argument("--top-k-text", type=int, default=d.top_k_text, help="terms kept per query")
    p.add_argument("--per-row", type=int, default=d.per_row, help="terms kept per wordpiece in the stored map")
    p.add_argument(
        "--df-floor",
        type=float,
        default=d.df_floor,
        help="the posting penalty counts each term as held by at least this share of the images, so that "
        "terms (almost) no image holds are not free to add to a query",
    )
    p.add_argument(
        "--image-terms",
        action="store_true",
        help="also learn a scale and an offset per image term (relu(a w - b)), trained with image->text too; "
        "the images change, so the model gets its own id and indexes",
    )
    p.add_argument("--w-i2t", type=float, default=d.w_i2t, help="with --image-terms: weight of the image->text loss")
    p.add_argument(
        "--w-image-df",
        type=float,
        default=d.w_image_df,
        help="with --image-terms: weight of the images' posting penalty (sum of df_t x weight)",
    )
    p.add_argument(
        "--w-presence",
        type=float,
        default=d.w_presence,
        help="with --image-terms: weight of the term-presence loss (an image's heaviest content terms should be "
        "words of its own captions; raises term precision@10; 0: off)",
    )
    p.add_argument(
        "--presence-temperature",
        type=float,
        default=d.presence_temperature,
        help="softmax temperature of the term-presence loss over an image's terms (normalised weights)",
    )
    p.add_argument(
        "--df-cap",
        type=float,
        default=d.df_cap,
        help="cap each term's postings at this share of the images, keeping its heaviest (0: no cap); the "
        "images, and so every index of this model, change: it gets its own model id",
    )
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--temperature", type=float, default=d.temperature, help="softmax temperature of both losses")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--limit-items", type=int, default=0, help="first N training images only (smoke runs)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexret.encoders import shipped_checkpoint
    from lexret.training.config import QueryMapConfig
    from lexret.training.query_map import train_query_map

    dev_items = args.dev_items
    if dev_items is None:  # a fold is the dev set under cross-validation
        dev_items = 0 if args.cv_folds > 1 else QueryMapConfig.dev_items
    cfg = QueryMapConfig(
        documents=str(args.documents or shipped_checkpoint("sparse")),
        data=args.data,
        cache_dir=args.cache_dir or "",
        model_id=args.model_id,
        epochs=args.epochs,
        dev_items=dev_items,
        cv_folds=args.cv_folds,
        cv_fold=args.cv_fold,
        w_df=args.w_df,
        w_distill=args.w_distill,
        expansion=not args.no_expansion,
        top_k_text=args.top_k_text,
        per_row=args.per_row,
        df_cap=args.df_cap,
        df_floor=args.df_floor,
        image_terms=args.image_terms,
        w_i2t=args.w_i2t,
        w_image_df=args.w_image_df,
        w_presence=args.w_presence,
        presence_temperature=args.presence_temperature,
        lr=args.lr,
        temperature=args.temperature,
        seed=args.seed,
        limit_items=args.limit_items,
        threads=args.threads,
    )
    conf = train_query_map(cfg, args.out)
    spec = conf["query_map"]
    capped = f", images capped at a {spec['df_cap']:g} share per term" if spec.get("df_cap") else ""
    capped += ", images through learned per-term scales" if spec.get("image_terms") else ""
    log.info("wrote %s (%s), queries by its map over %s's documents%s", args.out, conf["model_id"],
             spec["documents_model_id"], capped)  # fmt: skip
    return 0
