"""Benchmark tools run end to end at a small N (figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_backends_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_backends.py"), "--docs", "800", "--queries", "30",
         "--dense-dim", "64", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for system in ("sparse-lucene", "sparse-scipy", "dense-faiss-flat-64d"):
        assert system in proc.stdout
    figures = json.loads(out.read_text())
    for vals in figures.values():
        assert vals["index_bytes"] > 0 and vals["latency_ms_p95"] >= vals["latency_ms_p50"] > 0
