"""Benchmark tools run end to end at a small N (figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

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


def test_bench_lucene_smoke_on_real_vectors(tmp_path, vocab):
    """--docvectors/--query-vectors: an index folder's quantized documents and float queries."""
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.synthetic import synthetic_ids, zipf_batch
    from lexret.vectors import write_vectors

    index = tmp_path / "index"
    Indexer(vocab, IndexConfig(threads=1)).build(
        [(synthetic_ids(600), zipf_batch(600, len(vocab), 20, seed=3))], index, IndexInfo("m", "image")
    )
    queries = tmp_path / "q.npz"
    write_vectors(queries, synthetic_ids(25, "q"), zipf_batch(25, len(vocab), 12, seed=4), vocab)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_lucene.py"), "--docvectors", str(index / "docvectors.npz"),
         "--query-vectors", str(queries), "--queries", "25"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "600 docs" in proc.stdout and "25 queries" in proc.stdout
    assert "optimize=True" in proc.stdout and "qps" in proc.stdout


def test_bench_top_k_smoke(tmp_path):
    sample = ROOT / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"
    out = tmp_path / "topk.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_top_k.py"), "--data", str(sample), "--limit", "6",
         "--top-k", "4,16", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| 4 / 4 |" in proc.stdout and "| 16 / 16 |" in proc.stdout
    rows = json.loads(out.read_text())
    assert [r["k"] for r in rows] == [4, 16]
    assert rows[0]["avg_doc_terms"] <= 4 < rows[1]["avg_doc_terms"] <= 16
    assert 0 < rows[0]["index_bytes"] < rows[1]["index_bytes"]


def test_bench_reorder_smoke():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_reorder.py"), "--docs", "1500", "--queries", "40"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1,500 documents" in proc.stdout and "gap bits" in proc.stdout
    assert "identical ranked lists: 40 of 40 queries" in proc.stdout


def test_static_pruning_keeps_each_terms_heaviest_postings():
    """tools/bench_static_pruning.py's cut against a column-by-column brute force (ties at the cut kept)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from bench_static_pruning import prune_postings
    finally:
        sys.path.remove(str(ROOT / "tools"))
    from lexret.types import SparseBatch

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(60):
        idx = np.sort(rng.choice(25, rng.integers(0, 9), replace=False))
        rows.append((idx, rng.integers(1, 6, size=len(idx)).astype(np.float32)))
    batch = SparseBatch.from_rows(rows, 25)
    for cap in (1, 4, 1000):
        got = prune_postings(batch, cap).to_scipy().toarray()
        dense = batch.to_scipy().toarray()
        for t in range(25):
            col = dense[:, t]
            nz = np.sort(col[col > 0])[::-1]
            want = np.where(col >= nz[cap - 1], col, 0) if len(nz) > cap else col
            assert np.array_equal(got[:, t], want)
        assert (got[dense == 0] == 0).all()


def test_profile_lucene_smoke(tmp_path, vocab):
    """A compare-style corpus from 200 'split images', 1,500 items, one index, every part of the profile."""
    import numpy as np

    from lexret.compare import Encoded
    from lexret.synthetic import synthetic_ids, zipf_batch

    rng = np.random.default_rng(1)
    images, captions = tmp_path / "images.npz", tmp_path / "texts.npz"
    Encoded(synthetic_ids(200, "img"), zipf_batch(200, len(vocab), 20, seed=3), rng.normal(size=(200, 16))).save(images)
    Encoded(synthetic_ids(40, "cap"), zipf_batch(40, len(vocab), 8, seed=3), rng.normal(size=(40, 16))).save(captions)
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "profile_lucene.py"), "--images", str(images), "--captions",
         str(captions), "--sizes", "1500", "--queries", "12", "--warmup", "3", "--settings", "default",
         "--two-phase", "0:1,0.5:2:4,0:3::200", "--work", str(tmp_path / "work"), "--json", str(out), "--heap", "1g"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "corpus 1,500 items" in proc.stdout and "two-phase vs Lucene" in proc.stdout
    rec = json.loads(out.read_text())["sizes"]["1500"]
    assert rec["two_phase"]["2phase r=0 x1"]["overlap@10"] == 1.0  # no cut: exact
    assert "2phase r=0 x3 b=200" in rec["two_phase"]
    assert rec["pruning"]["matching"] <= rec["pruning"]["postings"]


def test_bench_exact_smoke(tmp_path, small_index, small_queries, vocab):
    from lexret.vectors import write_vectors

    qids, queries = small_queries
    qfile = tmp_path / "q.npz"
    write_vectors(qfile, qids, queries, vocab)
    out = tmp_path / "exact.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_exact.py"), "--index", str(small_index.path), "--queries",
         str(qfile), "--num-queries", "20", "--k", "10,100", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "300 documents" in proc.stdout and "| 100 | batch | 2 |" in proc.stdout
    assert len(json.loads(out.read_text())["rows"]) == 6


def test_bench_impact_smoke(tmp_path, small_index, small_queries, vocab):
    """tools/bench_impact.py: a budget that holds every list finds the exact top 10; a tiny one reads at most
    its budget."""
    from lexret.vectors import write_vectors

    qids, queries = small_queries
    qfile = tmp_path / "q.npz"
    write_vectors(qfile, qids, queries, vocab)
    out = tmp_path / "impact.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_impact.py"), "--index", str(small_index.path), "--queries",
         str(qfile), "--num-queries", "20", "--budgets", "5,1000000000", "--expansions", "1,3", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "300 documents" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["engine"] for r in rows] == ["exact"] + ["impact"] * 4
    assert all(r["overlap"] == 1.0 for r in rows if r.get("budget") == 1000000000)
    assert all(0 < r["postings_per_query"] <= 5 for r in rows if r.get("budget") == 5)


def test_bench_postings_budget_smoke(tmp_path, vocab):
    """tools/bench_postings_budget.py on a compare-style folder: a budget nothing exceeds is exact, a small
    one reads at most its budget (impact-ordered) and loses some of the exact top-10."""
    from lexret.data import load_captions
    from lexret.evaluation import SplitIds
    from lexret.indexer import IndexConfig, Indexer, IndexInfo
    from lexret.synthetic import synthetic_ids, zipf_batch
    from lexret.types import SparseBatch
    from lexret.vectors import write_vectors

    sample = ROOT / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"
    ids = SplitIds.from_collection(load_captions(sample))
    docs = zipf_batch(600, len(vocab), 20, seed=4)
    docids = ids.image_ids + synthetic_ids(600 - len(ids.image_ids), "synthetic-")
    out = tmp_path / "cmp"
    Indexer(vocab, IndexConfig(scale=25.0, threads=1)).build([(docids, docs)], out / "corpus-600" / "lucene",
                                                             IndexInfo("m"))  # fmt: skip
    # caption j of image i: the 8 heaviest terms of image i's vector
    queries = SparseBatch.from_rows([docs.row(int(o)) for o in ids.caption_owner], len(vocab)).top_k(8)
    write_vectors(out / "queries-sparse.npz", ids.caption_ids, queries, vocab, {"model_id": "m"})
    (out / "compare.json").write_text(json.dumps([{"system": "sparse-exact", "corpus_size": 600}]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_postings_budget.py"), "--compare-dir", str(out), "--data",
         str(sample), "--budgets", "40,1000000", "--candidates", "10,50", "--stride", "5"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "corpus 600: 100 caption queries" in proc.stdout
    records = json.loads((out / "postings_budget.json").read_text())
    recs = {(r["policy"], r["budget"], r["candidates"]): r for r in records}
    exact = recs[("exact", None, None)]
    assert exact["R@1"] > 50  # each query is its image's own heaviest terms
    for policy in ("terms", "impacts"):
        whole = recs[(policy, 1000000, 10)]
        assert whole["overlap@10"] == 1.0 and whole["R@10"] == exact["R@10"]
        assert whole["postings_per_query"] == exact["postings_per_query"] > 40
    assert recs[("impacts", 40, 50)]["postings_per_query"] <= 40
    assert recs[("impacts", 40, 10)]["overlap@10"] < 1.0
    assert recs[("impacts", 40, 10)]["overlap@10"] <= recs[("impacts", 40, 50)]["overlap@10"]


def test_profile_query_encoding_smoke(tmp_path):
    sample = ROOT / "lexret" / "resources" / "flickr8k_sample" / "captions.jsonl"
    out = tmp_path / "enc.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "profile_query_encoding.py"), "--data", str(sample), "--queries", "3",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 captions, one at a time" in proc.stdout
    network, table = json.loads(out.read_text())
    assert network["minilm_ms"] > 0 and network["heads_ms"] > 0 and network["heads"] == 3
    assert table["inference_free"] and "minilm_ms" not in table


def test_cv_ratio_reads_eval_reports(tmp_path):
    """tools/cv_ratio.py: per-report ratios, fold means and the paired fold - val difference."""

    def report(path, s_t2i, s_i2t, d_t2i, d_i2t):
        def system(t2i, i2t):
            return {"t2i": dict(zip(("R@1", "R@5", "R@10"), t2i)), "i2t": dict(zip(("R@1", "R@5", "R@10"), i2t)),
                    "rsum": float(sum(t2i) + sum(i2t))}  # fmt: skip

        path.write_text(json.dumps({"systems": {"sparse-lucene": system(s_t2i, s_i2t),
                                                "dense-faiss": system(d_t2i, d_i2t)}}))  # fmt: skip
        return str(path)

    f0 = report(tmp_path / "f0.json", (20, 40, 50), (25, 45, 55), (20, 40, 50), (30, 50, 60))
    f1 = report(tmp_path / "f1.json", (10, 30, 40), (20, 40, 50), (10, 30, 40), (20, 40, 50))
    v0 = report(tmp_path / "v0.json", (20, 40, 50), (30, 50, 60), (20, 40, 50), (30, 50, 60))
    v1 = report(tmp_path / "v1.json", (10, 30, 40), (20, 40, 50), (10, 30, 40), (20, 40, 50))
    out = tmp_path / "cv.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "cv_ratio.py"), "--fold", f0, f1, "--val", v0, v1, "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    assert abs(got["folds"][0]["rsum"] - 100 * 235 / 250) < 1e-9
    assert abs(got["folds"][0]["i2t_part"] - 100 * 125 / 140) < 1e-9
    assert got["folds"][1]["rsum"] == 100.0 and got["val"][0]["rsum"] == 100.0
    diff, _ = got["fold_minus_val_rsum"]
    assert abs(diff - (100 * 235 / 250 - 100) / 2) < 1e-9
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "cv_ratio.py"), "--fold", f0, "--val", v0, v1],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0 and "one per fold" in bad.stderr


def test_cv_compare_pairs_two_families_by_fold(tmp_path):
    """tools/cv_compare.py: per-fold figures of two families, the paired B - A mean, its standard error
    and the rule's verdict; unequal fold counts end with the message, not a traceback."""

    def report(path, s_t2i, s_i2t, tp, dense=(30, 50, 60)):
        def system(t2i, i2t):
            return {"t2i": dict(zip(("R@1", "R@5", "R@10"), t2i)), "i2t": dict(zip(("R@1", "R@5", "R@10"), i2t)),
                    "rsum": float(sum(t2i) + sum(i2t))}  # fmt: skip

        sparse = {**system(s_t2i, s_i2t), "term_precision@10": tp}
        path.write_text(json.dumps({"systems": {"sparse-lucene": sparse, "dense-faiss": system(dense, dense)}}))
        return str(path)

    a = [report(tmp_path / f"a{i}.json", (10, 30, 40), (20, 40, 50), 38.0) for i in range(3)]
    b = [report(tmp_path / f"b{i}.json", (10 + i, 30, 40), (20, 40, 50 + 2 * i), 40.0 + i) for i in range(3)]
    out = tmp_path / "cmp.json"
    tool = str(ROOT / "tools" / "cv_compare.py")
    proc = subprocess.run([sys.executable, tool, "--a", *a, "--b", *b, "--names", "x", "y", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    assert got["rows"]["x"][0]["ratio"] == 100.0 * 190 / 280
    tp = got["b_minus_a"]["term_precision@10"]
    assert abs(tp["mean"] - 3.0) < 1e-9 and abs(tp["se"] - 1.0 / np.sqrt(3)) < 1e-9 and tp["clear"]
    rsum = got["b_minus_a"]["rsum"]
    assert abs(rsum["mean"] - 3.0) < 1e-9 and abs(rsum["se"] - 3.0 / np.sqrt(3)) < 1e-9 and not rsum["clear"]
    assert "y - x, rsum: +3.00" in proc.stdout
    bad = subprocess.run([sys.executable, tool, "--a", *a, "--b", *b[:2]], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "one per fold each" in bad.stderr
    same = subprocess.run([sys.executable, tool, "--a", *a, "--b", *b, "--names", "x", "x"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert same.returncode == 2 and "name them apart" in same.stderr
    # a report with priors holds two sparse systems: the tool asks which one, and reads the one named
    two = json.loads(Path(a[0]).read_text())
    two["systems"]["sparse-lucene-no-prior"] = two["systems"]["sparse-lucene"]
    Path(a[0]).write_text(json.dumps(two))
    bad = subprocess.run([sys.executable, tool, "--a", *a, "--b", *b], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--sparse" in bad.stderr
    ok = subprocess.run([sys.executable, tool, "--a", *a, "--b", *b, "--sparse", "sparse-lucene"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    # one fold has no spread: the difference is printed without a verdict
    one = subprocess.run([sys.executable, tool, "--a", a[1], "--b", b[1], "--names", "x", "y"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    assert "y - x, rsum: +3.00 (one fold: no standard error, no verdict)" in one.stdout
    assert "within noise" not in one.stdout and "nan" not in one.stdout
