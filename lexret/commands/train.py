"""``lexret train``: train the sparse model or the dense baseline from a YAML config."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the sparse lexicon model or the dense baseline",
        description="Train on cached frozen-backbone features (cached once under the output folder); "
        "select the best epoch on val RSUM; write a checkpoint folder.",
    )
    p.add_argument("--config", required=True, help="YAML config (kind: sparse|dense), e.g. configs/sparse.yaml")
    p.add_argument("--data", default=None, help="captions JSONL with train/val splits (overrides the config)")
    p.add_argument("--out", default=None, help="checkpoint folder (default: runs/<config name>)")
    p.add_argument("--cache-dir", default=None, help="backbone feature cache (default: <out>/../.feature-cache)")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: config, 2)")
    p.add_argument("--cv-fold", type=int, default=None,
                   help="hold out this fold of the training images (needs cv_folds > 1 in the config or --cv-folds); "
                   "the run's validation figures are then that fold's, and val is not read")  # fmt: skip
    p.add_argument("--cv-folds", type=int, default=None, help="override the number of cross-validation folds")
    p.add_argument("--distill-from", default=None,
                   help="override the dense teacher (e.g. a dense model trained without the same fold)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lexret.training.config import TrainConfig
    from lexret.training.train import train

    cfg = TrainConfig.from_yaml(args.config)
    over = {}
    if args.data:
        over["data"] = args.data
    if args.cache_dir:
        over["cache_dir"] = args.cache_dir
    if args.epochs is not None:
        over["epochs"] = args.epochs
    if args.threads is not None:
        over["threads"] = args.threads
    if args.cv_folds is not None:
        over["cv_folds"] = args.cv_folds
    if args.cv_fold is not None:
        over["cv_fold"] = args.cv_fold
    if args.distill_from is not None:
        over["distill_from"] = args.distill_from
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **over}, args.config)  # checked like the file
    if args.cv_fold is not None and not cfg.model_id.endswith(f"-fold{cfg.cv_fold}"):
        # each fold's model is another model: its own id keeps indexes and caches of the folds apart
        cfg = cfg.replace(model_id=f"{cfg.model_id}-fold{cfg.cv_fold}")
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    metrics = train(cfg, out)
    val = metrics["val"]
    print(
        f"{cfg.model_id}: val RSUM {val['rsum']:.1f} (best epoch {metrics['best_epoch']}, "
        f"{metrics['train_minutes']:.1f} min); checkpoint in {out}"
    )
    return 0
