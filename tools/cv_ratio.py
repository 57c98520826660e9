"""The sparse / dense ratios of issue 17 per cross-validation fold, from ``lexret eval`` reports.

Each ``--fold`` is a report of ``lexret eval`` with a sparse and a dense system of one fold's models
(``lexret train --cv-fold F``) on that fold's held-out training images (``tools/cv_split.py``); each
``--val`` (optional, same order) a report of the same two models on val. For every report it prints
the RSUM ratio and the image->text part ratio (i2t R@1 + R@5 + R@10), then the mean and standard
deviation over folds, and, when val reports are given, the paired difference fold - val: whether the
ratio seen on val holds on images no model of the fold saw and no selection read.

python tools/cv_ratio.py --fold runs/cv/eval-f0.json runs/cv/eval-f1.json --val runs/cv/val-f0.json runs/cv/val-f1.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from _cv_reports import recall_part, run_tool, sparse_system

log = logging.getLogger("cv_ratio")


def ratios(report: dict, sparse: str | None = None, dense: str = "dense-faiss") -> dict[str, float]:
    """``rsum`` and ``i2t_part`` of the sparse system over the dense one's (percent), and both RSUMs.
    ``sparse`` None: the report's one system whose name starts with ``sparse-lucene``."""
    from lexret.errors import LexretError

    systems = report.get("systems", {})
    sparse, _ = sparse_system(systems, sparse)
    if dense not in systems:
        raise LexretError(f"the report needs systems {sparse!r} and {dense!r}, it has {sorted(systems)}")
    s, d = systems[sparse], systems[dense]
    return {
        "sparse_rsum": float(s["rsum"]),
        "dense_rsum": float(d["rsum"]),
        "rsum": 100.0 * float(s["rsum"]) / float(d["rsum"]),
        "i2t_part": 100.0 * recall_part(s, "i2t") / recall_part(d, "i2t"),
    }


def _line(name: str, r: dict[str, float]) -> str:
    return (f"{name:24s} sparse {r['sparse_rsum']:6.1f}  dense {r['dense_rsum']:6.1f}  "
            f"RSUM {r['rsum']:5.1f}%  i2t part {r['i2t_part']:5.1f}%")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_tool(_run, argv, log)


def _run(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fold", nargs="+", required=True, help="lexret eval reports on the held-out folds")
    p.add_argument("--val", nargs="*", default=[], help="reports of the same models on val (same order)")
    p.add_argument("--sparse", default=None, help="sparse system name (default: the report's sparse-lucene*)")
    p.add_argument("--dense", default="dense-faiss", help="dense system name (default: dense-faiss)")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from lexret.errors import LexretError

    if args.val and len(args.val) != len(args.fold):
        raise LexretError(f"{len(args.val)} val reports for {len(args.fold)} fold reports: give one per fold")
    out: dict = {"folds": [], "val": []}
    for kind, paths in (("folds", args.fold), ("val", args.val)):
        for path in paths:
            r = ratios(json.loads(Path(path).read_text()), args.sparse, args.dense)
            out[kind].append({"report": str(path), **r})
            print(_line(f"{kind[:-1] if kind == 'folds' else kind} {Path(path).stem}", r))
    for kind in ("folds", "val"):
        rows = out[kind]
        if rows:
            summary = {key: (float(np.mean([r[key] for r in rows])), float(np.std([r[key] for r in rows])))
                       for key in ("rsum", "i2t_part", "sparse_rsum", "dense_rsum")}  # fmt: skip
            out[f"{kind}_mean"] = summary
            print(f"{kind} mean over {len(rows)}: RSUM ratio {summary['rsum'][0]:.1f}% +- {summary['rsum'][1]:.1f}, "
                  f"i2t part ratio {summary['i2t_part'][0]:.1f}% +- {summary['i2t_part'][1]:.1f}")  # fmt: skip
    if args.val:
        for key in ("rsum", "i2t_part"):
            diff = np.array([f[key] - v[key] for f, v in zip(out["folds"], out["val"])])
            se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
            out[f"fold_minus_val_{key}"] = (float(diff.mean()), se)
            print(f"fold - val, {key} ratio: {diff.mean():+.1f} points (paired standard error {se:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
