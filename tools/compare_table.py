"""Print a ``lexret compare`` result (``DIR/compare.json``) as Markdown tables, with the ratios.

python tools/compare_table.py runs/compare/compare.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [
    ("R@1", "R@1", "{:.2f}"), ("R@5", "R@5", "{:.2f}"), ("R@10", "R@10", "{:.2f}"),
    ("index MB", "index_bytes", "mb"), ("build s", "build_s", "{:.1f}"), ("peak RSS MB", "peak_rss_bytes", "mb"),
    ("ms mean", "latency_ms_mean", "{:.2f}"), ("ms p50", "latency_ms_p50", "{:.2f}"),
    ("ms p95", "latency_ms_p95", "{:.2f}"), ("qps 1 thread", "qps_1thread", "{:.0f}"),
    ("qps 2 threads", "qps_2threads", "{:.0f}"), ("encode ms", "query_encode_ms", "{:.1f}"),
]  # fmt: skip


def _cell(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.1f}" if fmt == "mb" else fmt.format(value)


def markdown(records: list[dict]) -> str:
    head = "| system | corpus | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in sorted(records, key=lambda r: (r["corpus_size"], r["system"])):
        cells = [_cell(r.get(key), fmt) for _, key, fmt in COLUMNS]
        lines.append(f"| {r['system']} | {r['corpus_size']:,} | " + " | ".join(cells) + " |")
    lines += ["", "| corpus | real / synthetic distractors | Lucene qps / FAISS-flat qps (1 thread) | "
              "Lucene latency / FAISS-flat latency | Lucene bytes / FAISS-flat bytes | R@10 Lucene vs flat |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    by = {(r["system"], r["corpus_size"]): r for r in records}
    for size in sorted({r["corpus_size"] for r in records}):
        lu, ff = by.get(("sparse-lucene", size)), by.get(("dense-faiss-flat", size))
        if not (lu and ff):
            continue
        lines.append(
            f"| {size:,} | {lu['distractors_real']:,} / {lu['distractors_synthetic']:,} "
            f"| {lu['qps_1thread'] / ff['qps_1thread']:.2f}x | {lu['latency_ms_mean'] / ff['latency_ms_mean']:.2f}x "
            f"| {lu['index_bytes'] / ff['index_bytes']:.3f} | {lu['R@10']:.2f} vs {ff['R@10']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("compare_json", type=Path)
    args = p.parse_args(argv)
    print(markdown(json.loads(args.compare_json.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
