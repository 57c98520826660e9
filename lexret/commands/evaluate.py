"""``lexret evaluate``: metrics of a TREC run against qrels."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="R@K, MRR@10, nDCG@10 of a TREC run against qrels")
    p.add_argument("--run", required=True, help="TREC run file")
    p.add_argument("--qrels", required=True, help="qrels file (qid 0 docid relevance)")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    p.add_argument("--metrics", default="R@1,R@5,R@10,MRR@10,nDCG@10", help="comma-separated metric names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lexret.fileio import write_json
    from lexret.metrics import evaluate, format_table
    from lexret.trec import read_qrels, read_run

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    qrels = read_qrels(args.qrels)
    result = evaluate(read_run(args.run), qrels, metrics)
    print(format_table({args.run: result}, metrics))
    print(f"({len(qrels)} queries, values in percent)")
    if args.out:
        write_json(args.out, {"run": args.run, "qrels": args.qrels, "queries": len(qrels), "metrics": result})
    return 0
