"""Two model families compared fold by fold, from ``lexret eval`` reports of the same folds.

``--a`` and ``--b`` are reports (same fold order) of ``lexret eval`` on each fold's held-out images
(``tools/cv_split.py``), one per fold and family, e.g. the Lite0 and the Lite2 sparse fold models of
``configs/ablations/cv_sparse.yaml`` / ``cv_sparse_lite2.yaml``. For every fold it prints each family's
sparse RSUM, t2i and i2t parts (R@1 + R@5 + R@10), term precision@10 and sparse / dense ratio (against
the dense system of its own report), then the mean of B - A over folds with its paired standard error,
and whether the difference is more than ``--z`` standard errors from 0 (a rule fixed before the runs:
the decision is printed, not chosen after reading the figures).

python tools/cv_compare.py --a runs/cv/eval-sparse-f0.json runs/cv/eval-sparse-f1.json \\
    --b runs/l2/eval-sparse-f0.json runs/l2/eval-sparse-f1.json --names lite0 lite2
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from _cv_reports import recall_part, run_tool, sparse_system

log = logging.getLogger("cv_compare")

FIGURES = ("rsum", "t2i", "i2t", "term_precision@10", "ratio")


def figures(report: dict, sparse: str | None = None, dense: str = "dense-faiss") -> dict[str, float]:
    """The ``sparse`` system (None: the report's one ``sparse-lucene*`` system): RSUM, t2i and i2t
    parts, term precision@10 (NaN when the report has none) and its RSUM over the dense system's
    (percent; NaN without a dense system)."""
    systems = report.get("systems", {})
    _, s = sparse_system(systems, sparse)
    d = systems.get(dense)
    return {
        "rsum": float(s["rsum"]),
        "t2i": recall_part(s, "t2i"),
        "i2t": recall_part(s, "i2t"),
        "term_precision@10": float(s.get("term_precision@10", float("nan"))),
        "ratio": 100.0 * float(s["rsum"]) / float(d["rsum"]) if d else float("nan"),
    }


def paired(a: list[dict[str, float]], b: list[dict[str, float]], z: float) -> dict[str, dict[str, float]]:
    """Per figure: mean of B - A over folds, its paired standard error and whether |mean| > z * se."""
    out = {}
    for key in FIGURES:
        diff = np.array([y[key] - x[key] for x, y in zip(a, b)], dtype=np.float64)
        if np.isnan(diff).any():
            continue
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
        out[key] = {"mean": float(diff.mean()), "se": se, "clear": bool(se == se and abs(diff.mean()) > z * se)}
    return out


def main(argv: list[str] | None = None) -> int:
    return run_tool(_run, argv, log)


def _run(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", nargs="+", required=True, help="family A's lexret eval reports, one per fold")
    p.add_argument("--b", nargs="+", required=True, help="family B's reports of the same folds, same order")
    p.add_argument("--names", nargs=2, default=("A", "B"), help="the two families' names")
    p.add_argument("--sparse", default=None, help="sparse system name (default: the one sparse-lucene*)")
    p.add_argument("--dense", default="dense-faiss", help="dense system name (default: dense-faiss)")
    p.add_argument("--z", type=float, default=2.0, help="standard errors a difference must pass (default 2)")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from lexret.errors import LexretError

    if args.names[0] == args.names[1]:
        raise LexretError(f"--names gives both families the name {args.names[0]!r}: name them apart")
    if len(args.a) != len(args.b):
        a, b = args.names
        raise LexretError(f"{len(args.a)} reports for {a}, {len(args.b)} for {b}: one per fold each")
    rows = {name: [figures(json.loads(Path(f).read_text()), args.sparse, args.dense) for f in files]
            for name, files in zip(args.names, (args.a, args.b))}  # fmt: skip
    head = "  ".join(f"{k:>17s}" for k in FIGURES)
    print(f"{'fold':>4s} {'family':>8s}  {head}")
    for i in range(len(args.a)):
        for name in args.names:
            r = rows[name][i]
            print(f"{i:4d} {name:>8s}  " + "  ".join(f"{r[k]:17.1f}" for k in FIGURES))
    diff = paired(rows[args.names[0]], rows[args.names[1]], args.z)
    for key, d in diff.items():
        if d["se"] != d["se"]:  # one fold: no spread to judge by
            note = "one fold: no standard error, no verdict"
        else:
            verdict = "clear" if d["clear"] else "within noise"
            note = f"paired standard error {d['se']:.2f}; {verdict} at {args.z:g} standard errors"
        print(f"{args.names[1]} - {args.names[0]}, {key}: {d['mean']:+.2f} ({note})")
    if args.json:
        out = {"names": list(args.names), "rows": rows, "b_minus_a": diff}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
