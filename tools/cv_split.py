"""Write a captions file whose splits are the cross-validation folds of the training images, so that
``lexret eval --split foldF`` measures the models of a ``lexret train --cv-fold F`` run on exactly the
images that run held out.

Training image ``i`` (in the order of the captions file) is in fold ``i % folds``, the rule of
``TrainConfig.cv_folds`` / ``cv_fold``; every other split is left out. Image paths are written
absolute, so the file can live anywhere.

python tools/cv_split.py --data ../shared/flickr8k/captions.jsonl --folds 5 --out runs/cv/folds.jsonl
lexret eval --data runs/cv/folds.jsonl --split fold0 --model runs/cv/sparse-f0 --dense-model runs/cv/dense-f0 ...

``--rest-of F`` writes instead the training images *outside* fold F, in order, as split ``train``: what a
tool that reads a model's training images (e.g. ``tools/prior_bank.py``, whose caption-prior bank must
hold no held-out image) should read for fold F's models.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("cv_split")


def fold_rows(data: str, split: str, folds: int) -> list[dict]:
    """One captions-file row per item of ``split``, its split renamed ``fold<i % folds>``."""
    from lexret.data import load_captions
    from lexret.errors import LexretError

    if folds < 2:
        raise LexretError(f"cross-validation needs at least 2 folds, not {folds}")
    items = load_captions(data, split=split).items
    if len(items) < folds:
        raise LexretError(f"{len(items)} {split} items cannot fill {folds} folds")
    return [
        {"image": str(Path(it.image).resolve()), "captions": list(it.captions), "split": f"fold{i % folds}"}
        for i, it in enumerate(items)
    ]


def rest_rows(rows: list[dict], fold: int, folds: int) -> list[dict]:
    """The rows of :func:`fold_rows` outside ``fold``, in order, as split ``train``."""
    from lexret.errors import LexretError

    if not 0 <= fold < folds:
        raise LexretError(f"--rest-of {fold} is not a fold of {folds} (0 ... {folds - 1})")
    return [{**r, "split": "train"} for r in rows if r["split"] != f"fold{fold}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="captions JSONL ({image, captions, split} lines)")
    p.add_argument("--split", default="train", help="the split the folds are cut from (default: train)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (the training config's cv_folds)")
    p.add_argument("--out", required=True, help="captions JSONL to write (splits fold0 ... fold<folds-1>)")
    p.add_argument("--rest-of", type=int, default=None, metavar="F",
                   help="write the images outside fold F as split train instead")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from lexret.errors import LexretError

    try:
        rows = fold_rows(args.data, args.split, args.folds)
        if args.rest_of is not None:
            rows = rest_rows(rows, args.rest_of, args.folds)
    except LexretError as e:  # a user error: the message, no traceback
        log.error("%s", e)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    what = f"outside fold {args.rest_of} (split train)" if args.rest_of is not None else f"in {args.folds} folds"
    log.info("wrote %s: %d items %s", out, len(rows), what)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
