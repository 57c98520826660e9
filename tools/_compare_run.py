"""What the benchmarks that re-measure a finished ``lexret compare`` run share: their flags and the
checks on the run folder (``bench_query_terms.py``, ``bench_static_pruning.py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_run_arguments(p: argparse.ArgumentParser, sizes_help: str) -> None:
    p.add_argument("--compare-dir", required=True, help="OUT folder of a `lexret compare` run")
    p.add_argument("--data", required=True, help="the captions JSONL that run evaluated")
    p.add_argument("--split", default=None)
    p.add_argument("--sizes", default=None, help=sizes_help)
    p.add_argument("--k", type=int, default=10, help="hits per query")
    p.add_argument("--latency-queries", type=int, default=1000)
    p.add_argument("--heap", default=None, help="JVM heap, e.g. 6g")


def open_run(compare_dir: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """The run folder and its ``compare.json`` records; exits with a message if the run is not there."""
    out = Path(compare_dir)
    for need in ("compare.json", "queries-sparse.npz"):
        if not (out / need).is_file():
            raise SystemExit(f"{out / need} not found: run `lexret compare ... --out {out}` first")
    return out, json.loads((out / "compare.json").read_text())
