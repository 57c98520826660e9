"""`lexret index / search / evaluate` end to end, and user errors: exit code 2, no traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lexret.cli import main
from lexret.index_meta import read_meta
from lexret.metrics import evaluate
from lexret.synthetic import zipf_batch
from lexret.trec import read_qrels, read_run, write_qrels
from lexret.types import SparseBatch
from lexret.vectors import write_vectors
from lexret.vocab import Vocabulary

pytestmark = pytest.mark.slow

MODEL = "cli-model/v2"
N_IMAGES = 200
N_QUERY_IMAGES = 20
RUN_LINE = re.compile(r"^(\S+) Q0 (\S+) (\d+) (-?\d+\.\d{6}) (\S+)$")


@dataclass(frozen=True)
class Collection:
    root: Path
    docs: Path
    queries: Path
    qrels: Path
    index: Path
    image_ids: list[str]
    caption_ids: list[str]


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary) -> Collection:
    """200 "images" and 5 "captions" for each of the first 20, indexed through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    images = zipf_batch(N_IMAGES, len(vocab), 20, seed=31)
    image_ids = [f"img{i}" for i in range(N_IMAGES)]
    write_vectors(root / "images.jsonl", image_ids, images, vocab, meta={"model_id": MODEL, "modality": "image"})
    # caption j of image i: the image's j + 1 strongest terms (a single term often ranks other images first)
    rows, caption_ids = [], []
    for i in range(N_QUERY_IMAGES):
        for j in range(5):
            rows.append(images.slice(i, i + 1).top_k(1 + j))
            caption_ids.append(f"img{i}#{j}")
    captions = SparseBatch.concat(rows)
    write_vectors(root / "captions.jsonl", caption_ids, captions, vocab, meta={"model_id": MODEL})
    write_qrels(root / "qrels.txt", {c: {c.split("#")[0]: 1} for c in caption_ids})
    index = root / "index"
    assert main(["-q", "index", "--vectors", str(root / "images.jsonl"), "--out", str(index), "--threads", "1"]) == 0
    return Collection(
        root, root / "images.jsonl", root / "captions.jsonl", root / "qrels.txt", index, image_ids, caption_ids
    )


def lexret(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lexret", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# ----- end to end -------------------------------------------------------------------------------


def test_index_records_the_vector_file_metadata(coll: Collection, vocab: Vocabulary) -> None:
    meta = read_meta(coll.index)
    assert meta["model_id"] == MODEL and meta["modality"] == "image"
    assert meta["source"] == str(coll.docs.resolve())
    assert meta["num_docs"] == N_IMAGES and meta["vocab_hash"] == vocab.hash
    assert meta["quantization"]["scale"] == 25.0
    assert (coll.index / "docids.txt").read_text().split() == coll.image_ids


@pytest.fixture(scope="module")
def run_file(coll: Collection) -> Path:
    out = coll.root / "runs" / "lucene.txt"
    args = ["search", "--index", str(coll.index), "--queries", str(coll.queries), "--out", str(out)]
    assert main(["-q", *args, "--k", "7", "--tag", "lx1"]) == 0
    return out


def test_search_writes_a_trec_run(coll: Collection, run_file: Path) -> None:
    lines = run_file.read_text().splitlines()
    parsed = [RUN_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:3]
    by_query: dict[str, list[tuple[str, int, float]]] = {}
    for m in parsed:
        qid, docid, rank, score, tag = m.groups()
        assert tag == "lx1" and docid in coll.image_ids
        by_query.setdefault(qid, []).append((docid, int(rank), float(score)))
    assert list(by_query) == coll.caption_ids  # every query, in input order
    for hits in by_query.values():
        assert 1 <= len(hits) <= 7
        assert [r for _, r, _ in hits] == list(range(1, len(hits) + 1))
        scores = [s for _, _, s in hits]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
        assert all(s == int(s) for s in scores)  # integer impact scores


def test_scipy_backend_writes_the_same_run(coll: Collection, run_file: Path) -> None:
    out = coll.root / "runs" / "scipy.txt"
    args = ["search", "--index", str(coll.index), "--queries", str(coll.queries), "--out", str(out)]
    assert main(["-q", *args, "--k", "7", "--tag", "lx1", "--backend", "scipy"]) == 0
    assert out.read_text() == run_file.read_text()


def test_evaluate_writes_metrics_json(coll: Collection, run_file: Path, capsys: pytest.CaptureFixture) -> None:
    out = coll.root / "metrics.json"
    assert main(["-q", "evaluate", "--run", str(run_file), "--qrels", str(coll.qrels), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R@1" in printed and "nDCG@10" in printed and "(100 queries, values in percent)" in printed
    result = json.loads(out.read_text())
    assert result["run"] == str(run_file) and result["qrels"] == str(coll.qrels) and result["queries"] == 100
    assert list(result["metrics"]) == ["R@1", "R@5", "R@10", "MRR@10", "nDCG@10"]
    expected = evaluate(read_run(run_file), read_qrels(coll.qrels))
    assert result["metrics"] == pytest.approx(expected)
    # captions are their image's strongest terms: retrieval is good, yet one-term captions miss sometimes
    assert 50 <= result["metrics"]["R@1"] < 100
    assert result["metrics"]["R@1"] <= result["metrics"]["R@5"] <= result["metrics"]["R@10"]


def test_evaluate_custom_metrics(coll: Collection, run_file: Path) -> None:
    out = coll.root / "m2.json"
    args = ["evaluate", "--run", str(run_file), "--qrels", str(coll.qrels), "--out", str(out), "--metrics", "R@2,MRR@3"]
    assert main(["-q", *args]) == 0
    assert list(json.loads(out.read_text())["metrics"]) == ["R@2", "MRR@3"]


def test_index_on_error_skip(coll: Collection, vocab: Vocabulary, caplog: pytest.LogCaptureFixture) -> None:
    lines = coll.docs.read_text().splitlines()[:30]
    lines[4] = '{"id": "broken", "vector": {"dog": "heavy"}}'
    bad = coll.root / "skip.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = coll.root / "skip-index"
    assert main(["index", "--vectors", str(bad), "--out", str(out), "--threads", "1"]) == 2
    assert not out.exists()
    assert f"{bad}:5:" in caplog.text
    caplog.clear()
    assert main(["index", "--vectors", str(bad), "--out", str(out), "--threads", "1", "--on-error", "skip"]) == 0
    meta = read_meta(out)
    assert meta["num_docs"] == 29
    assert "broken" not in (out / "docids.txt").read_text().split()
    assert "skipped 1 bad line" in caplog.text and f"{bad}:5:" in caplog.text


def test_user_error_in_process_returns_2(coll: Collection, caplog: pytest.LogCaptureFixture) -> None:
    out = coll.root / "never.txt"
    code = main(["search", "--index", str(coll.root / "no-index"), "--queries", str(coll.queries), "--out", str(out)])
    assert code == 2
    assert "does not exist" in caplog.text and not out.exists()


# ----- user errors as the shell sees them ------------------------------------------------------


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", ["EMPTY.jsonl", "blank.jsonl"])
def test_cli_empty_vector_file_is_named(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("" if name == "EMPTY.jsonl" else "\n\n")
    proc = lexret("index", "--vectors", name, "--out", "idx", cwd=tmp_path)
    assert_user_error(proc, f"{tmp_path / name}: no documents to index")
    assert not (tmp_path / "idx").exists()


def test_cli_missing_vector_file(tmp_path: Path) -> None:
    proc = lexret("index", "--vectors", "missing.jsonl", "--out", "idx", cwd=tmp_path)
    assert_user_error(proc, "missing.jsonl", "vector file not found")
    assert not (tmp_path / "idx").exists()


def test_cli_bad_jsonl_line(tmp_path: Path) -> None:
    lines = ['{"id": "a", "vector": {"dog": 1.5}}', '{"id": "b", "vector": {"cat": 0.5}}', '{"id": "c", "vector": {}']
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    proc = lexret("index", "--vectors", "docs.jsonl", "--out", "idx", cwd=tmp_path)
    assert_user_error(proc, "docs.jsonl:3:", "not valid JSON")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]  # no index, no work folder


def test_cli_unknown_term(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "vector": {"xylophonist": 1.0}}\n')
    proc = lexret("search", "--index", "idx", "--queries", "q.jsonl", "--out", "run.txt", cwd=tmp_path)
    assert_user_error(proc, "q.jsonl:1:", "'xylophonist' is not in the vocabulary")


def test_cli_mismatched_model(coll: Collection, tmp_path: Path) -> None:
    args = ["search", "--index", str(coll.index), "--queries", str(coll.queries), "--out", "run.txt"]
    proc = lexret(*args, "--model-id", "some-other-model", cwd=tmp_path)
    assert_user_error(proc, "some-other-model", MODEL, "Rebuild the index")
    assert not (tmp_path / "run.txt").exists()


def test_cli_mismatch_from_query_sidecar(coll: Collection, tmp_path: Path, vocab: Vocabulary) -> None:
    queries = tmp_path / "q.npz"
    q = zipf_batch(3, len(vocab), 5, seed=31)
    write_vectors(queries, ["a", "b", "c"], q, vocab, meta={"model_id": "encoder-b"})
    proc = lexret("search", "--index", str(coll.index), "--queries", str(queries), "--out", "r.txt", cwd=tmp_path)
    assert_user_error(proc, "'encoder-b'", "Rebuild the index")


def test_cli_mismatched_scale(coll: Collection, tmp_path: Path) -> None:
    args = ["search", "--index", str(coll.index), "--queries", str(coll.queries), "--out", "run.txt"]
    proc = lexret(*args, "--scale", "10", cwd=tmp_path)
    assert_user_error(proc, "scale 25.0", "scale 10.0")


def test_cli_evaluate_missing_qrels(tmp_path: Path, run_file: Path) -> None:
    proc = lexret("evaluate", "--run", str(run_file), "--qrels", "nope.txt", cwd=tmp_path)
    assert_user_error(proc, "nope.txt", "qrels file not found")


def test_cli_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = lexret("--debug", "index", "--vectors", "missing.jsonl", "--out", "idx", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "InputError" in proc.stderr


def test_cli_no_command_prints_help(tmp_path: Path) -> None:
    proc = lexret(cwd=tmp_path)
    assert proc.returncode == 2 and "usage: lexret" in proc.stdout


def test_cli_search_results_match_int_query_file(coll: Collection, vocab: Vocabulary, tmp_path: Path) -> None:
    """Integer query files declared quantized (--scale = the index's) are taken as impacts as they are:
    same ranking as their float form, which the index's quantizer turns into the same impacts."""
    q = zipf_batch(10, len(vocab), 6, seed=31)
    ints = SparseBatch(q.indptr, q.indices, np.maximum(1, np.rint(q.values * 25)).astype(np.int32), q.dim)
    qids = [f"q{i}" for i in range(10)]
    write_vectors(tmp_path / "qi.jsonl", qids, ints, vocab)
    write_vectors(tmp_path / "qf.jsonl", qids, q, vocab)
    for name, extra in (("qi", ["--scale", "25"]), ("qf", [])):
        args = ["search", "--index", str(coll.index), "--queries", str(tmp_path / f"{name}.jsonl"), *extra]
        assert main(["-q", *args, "--out", str(tmp_path / f"{name}.run"), "--backend", "scipy"]) == 0
    assert (tmp_path / "qi.run").read_text() == (tmp_path / "qf.run").read_text()


# ----- resource bounds: JVM heap, chunk sizes ---------------------------------------------------


@pytest.mark.parametrize("value", ["64m", "512M", "4g", "65536k"])
def test_heap_sizes_the_jvm_takes(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lexret.backends.lucene import DEFAULT_HEAP, HEAP_ENV, resolve_heap

    monkeypatch.delenv(HEAP_ENV, raising=False)
    assert resolve_heap(value) == value and resolve_heap(None) == DEFAULT_HEAP
    monkeypatch.setenv(HEAP_ENV, value)
    assert resolve_heap(None) == value and resolve_heap("1g") == "1g"  # the flag wins over the variable


@pytest.mark.parametrize(
    "value,needle",
    [
        ("12q", "is not a JVM heap size"),
        ("4 gb", "is not a JVM heap size"),
        ("-1g", "is not a JVM heap size"),
        ("0", "is not a JVM heap size"),
        ("1m", "is too small: Lucene needs at least 64m"),
        ("100000t", "is more than this machine's memory"),
    ],
)
def test_out_of_range_heap_is_refused_before_any_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, value: str, needle: str
) -> None:
    monkeypatch.delenv("LEXRET_JAVA_HEAP", raising=False)
    search = ["search", "--index", "idx", "--queries", "q.jsonl", "--out", str(tmp_path / "run.txt")]
    assert main([*search, f"--heap={value}"]) == 2
    assert f"--heap {value!r} {needle}" in caplog.text
    caplog.clear()
    monkeypatch.setenv("LEXRET_JAVA_HEAP", value)
    assert main(["index", "--vectors", "docs.jsonl", "--out", str(tmp_path / "idx")]) == 2
    assert f"$LEXRET_JAVA_HEAP {value!r} {needle}" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--chunk-size", "--threads", "--k"])
def test_search_counts_must_be_positive(tmp_path: Path, caplog: pytest.LogCaptureFixture, flag: str) -> None:
    args = ["search", "--index", "idx", "--queries", "q.jsonl", "--out", str(tmp_path / "run.txt"), flag, "0"]
    assert main(args) == 2
    assert "must be at least 1" in caplog.text
