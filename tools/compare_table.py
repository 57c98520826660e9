"""Print a ``lexret compare`` result (``DIR/compare.json``) as Markdown tables, with the ratios.

python tools/compare_table.py runs/compare/compare.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# the exact sparse systems, in the order compare picks its reference from (lexret.compare.EXACT_SPARSE)
EXACT_SPARSE = ("sparse-exact", "sparse-scipy", "sparse-lucene", "sparse-lucene-sharded")
COLUMNS = [
    ("R@1", "R@1", "{:.2f}"), ("R@5", "R@5", "{:.2f}"), ("R@10", "R@10", "{:.2f}"),
    ("index MB", "index_bytes", "mb"), ("build s", "build_s", "{:.1f}"), ("peak RSS MB", "peak_rss_bytes", "mb"),
    ("ms mean", "latency_ms_mean", "{:.2f}"), ("ms p50", "latency_ms_p50", "{:.2f}"),
    ("ms p95", "latency_ms_p95", "{:.2f}"), ("qps 1 thread", "qps_1thread", "{:.0f}"),
    ("qps 2 threads", "qps_2threads", "{:.0f}"), ("encode ms", "query_encode_ms", "{:.1f}"),
    ("overlap@10 vs exact", "overlap@10_vs_exact", "{:.3f}"), ("postings/query", "postings_per_query", "{:,.0f}"),
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
    lines += ["", "| corpus | real / synthetic distractors | system | qps / FAISS-flat qps (1 thread) | "
              "p50 latency / FAISS-flat p50 | qps / HNSW qps (1 thread) | bytes / FAISS-flat bytes | "
              "bytes / HNSW bytes | R@10 vs flat | R@10 / exact R@10 |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    by = {(r["system"], r["corpus_size"]): r for r in records}
    for size in sorted({r["corpus_size"] for r in records}):
        ff, hn = by.get(("dense-faiss-flat", size)), by.get(("dense-faiss-hnsw", size))
        exact = next((by[(s, size)] for s in EXACT_SPARSE if (s, size) in by), None)
        if not ff:
            continue
        for system in sorted(s for s, n in by if n == size and s.startswith("sparse")):
            sp = by[(system, size)]
            vs_hnsw = f"{sp['qps_1thread'] / hn['qps_1thread']:.2f}x" if hn else "-"
            bytes_hnsw = f"{sp['index_bytes'] / hn['index_bytes']:.3f}" if hn else "-"
            of_exact = f"{sp['R@10'] / exact['R@10']:.3f}" if exact and exact["R@10"] else "-"
            lines.append(
                f"| {size:,} | {sp['distractors_real']:,} / {sp['distractors_synthetic']:,} | {system} "
                f"| {sp['qps_1thread'] / ff['qps_1thread']:.2f}x | {sp['latency_ms_p50'] / ff['latency_ms_p50']:.3f}x "
                f"| {vs_hnsw} | {sp['index_bytes'] / ff['index_bytes']:.3f} | {bytes_hnsw} "
                f"| {sp['R@10']:.2f} vs {ff['R@10']:.2f} | {of_exact} |"
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
