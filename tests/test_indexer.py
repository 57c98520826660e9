"""Index folders: metadata, compatibility and integrity checks, interrupted builds and rebuilds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lexret.errors import IndexIntegrityError, IndexMismatchError, InputError, LexretError
from lexret.index_meta import FORMAT, QuerySpec, lucene_files, read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.types import SparseBatch
from lexret.vectors import write_vectors
from lexret.vocab import Vocabulary

pytestmark = pytest.mark.slow

MODEL = "test-model/v1"  # the model id of conftest's small_index


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# ----- metadata ---------------------------------------------------------------------------------


def test_metadata_contents(small_index, vocab: Vocabulary) -> None:
    path, meta = small_index.path, small_index.meta
    q = Quantizer()(small_index.docs)
    assert read_meta(path) == meta
    assert meta["format"] == FORMAT
    assert meta["backend"] == "lucene-impact"
    assert (meta["model_id"], meta["modality"], meta["source"]) == (MODEL, "text", "synthetic")
    assert meta["vocab_hash"] == vocab.hash and meta["vocab_size"] == len(vocab) == 30522
    assert meta["quantization"] == {"scale": 25.0, "max_impact": 1000}
    assert meta["num_docs"] == len(small_index.ids) == 300
    assert meta["num_postings"] == q.nnz
    assert meta["impact_sum"] == int(q.values.sum())
    assert meta["avg_doc_terms"] == pytest.approx(q.nnz / 300)
    assert meta["empty_docs"] == []
    assert meta["has_docvectors"] is True
    assert meta["config"]["scale"] == 25.0 and meta["config"]["threads"] == 1
    # every Lucene file, with its size; lexret's own files are not among them
    assert meta["files"] == lucene_files(path)
    assert any(name.startswith("segments_") for name in meta["files"])
    assert not {"lexret.json", "docids.txt", "docvectors.npz", "build.log", "write.lock"} & set(meta["files"])
    assert all((path / name).stat().st_size == size for name, size in meta["files"].items())
    assert meta["index_bytes"] == sum(meta["files"].values())
    # side files
    assert (path / "docids.txt").read_text().splitlines() == small_index.ids
    with np.load(path / "docvectors.npz") as z:
        assert np.array_equal(z["indptr"], q.indptr)
        assert np.array_equal(z["indices"], q.indices)
        assert np.array_equal(z["values"], q.values)
    assert "Indexing Complete" in (path / "build.log").read_text()
    assert not (path / "write.lock").exists()
    assert leftovers(path.parent, path.name) == []


def test_searcher_accepts_matching_queries(small_index, small_queries, vocab: Vocabulary) -> None:
    """Float queries are quantized by the index; queries declared quantized at the index's scale
    pass as they are; both give the same run."""
    qids, queries = small_queries
    with Searcher(small_index.path, vocab, expect=QuerySpec(MODEL, vocab.hash)) as s:
        run = s.search(qids, queries, 10, progress=False)
    assert len(run) == len(qids) and sum(len(h) > 0 for h in run.values()) > len(qids) // 2
    assert {d for h in run.values() for d, _ in h} <= set(small_index.ids)
    impacts = Quantizer(scale=25.0)(queries)
    with Searcher(small_index.path, vocab, expect=QuerySpec(MODEL, vocab.hash, 25.0)) as s:
        assert s.search(qids, impacts, 10, progress=False) == run
        with pytest.raises(LexretError, match="drop --scale"):
            s.search(qids, queries, 10, progress=False)


# ----- compatibility ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (QuerySpec(model_id="another/model"), ["'another/model'", repr(MODEL)]),
        (QuerySpec(vocab_hash="sha256:0123456789abcdef"), ["sha256:0123456789abcdef"]),
        (QuerySpec(scale=50.0), ["scale 25.0", "scale 50.0"]),
        (QuerySpec(model_id=MODEL, scale=10.0), ["scale 10.0"]),
    ],
)
def test_mismatched_queries_are_refused(small_index, vocab: Vocabulary, spec: QuerySpec, words: list[str]) -> None:
    with pytest.raises(IndexMismatchError) as e:
        Searcher(small_index.path, vocab, expect=spec, backend="scipy")
    msg = str(e.value)
    assert "Rebuild the index" in msg and "lexret index" in msg
    assert all(w in msg for w in words), msg


def test_other_vocabulary_is_refused(small_index) -> None:
    other = Vocabulary(["dog", "cat", "##s"])
    with pytest.raises(IndexMismatchError, match="Rebuild the index") as e:
        Searcher(small_index.path, other, backend="scipy")
    assert other.hash in str(e.value)


# ----- integrity --------------------------------------------------------------------------------


def edit_meta(path: Path, change) -> None:
    meta = json.loads((path / "lexret.json").read_text())
    change(meta)
    (path / "lexret.json").write_text(json.dumps(meta))


def largest_lucene_file(path: Path) -> Path:
    files = read_meta(path)["files"]
    return path / max(files, key=files.get)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "lexret.json").unlink(), "has no lexret.json"),
        (lambda p: (p / "lexret.json").write_text('{"format": "lexret-index/1", '), "unreadable"),
        (lambda p: edit_meta(p, lambda m: m.pop("vocab_hash")), "lacks required fields"),
        (lambda p: edit_meta(p, lambda m: m.update(format="lexret-index/0")), "index format"),
        (lambda p: edit_meta(p, lambda m: m["files"].update({min(m["files"]): 1})), "bytes, 1 when built"),
        (lambda p: os.truncate(largest_lucene_file(p), largest_lucene_file(p).stat().st_size // 2), "truncated"),
        (lambda p: largest_lucene_file(p).unlink(), "is missing"),
    ],
    ids=["no-meta", "bad-json", "missing-field", "format", "altered-size", "truncated-segment", "deleted-segment"],
)
def test_damaged_index_is_refused(copy_index, vocab: Vocabulary, damage, message: str) -> None:
    path = copy_index()
    damage(path)
    with pytest.raises(IndexIntegrityError, match=message) as e:
        Searcher(path, vocab)
    assert "rebuild" in str(e.value)


def test_corrupt_segments_file_of_same_size_is_refused(copy_index, vocab: Vocabulary) -> None:
    path = copy_index()
    seg = next(path.glob("segments_*"))
    seg.write_bytes(b"\0" * seg.stat().st_size)  # sizes still match lexret.json: Lucene itself must notice
    with pytest.raises(IndexIntegrityError, match="Lucene cannot open"):
        Searcher(path, vocab)


def test_missing_or_wrong_index_paths(tmp_path: Path, vocab: Vocabulary) -> None:
    with pytest.raises(IndexIntegrityError, match="does not exist"):
        Searcher(tmp_path / "nothing", vocab)
    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexIntegrityError, match="not a folder"):
        Searcher(tmp_path / "file", vocab)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexIntegrityError, match="has no lexret.json"):
        Searcher(tmp_path / "empty", vocab)


# ----- build errors (no Lucene needed) --------------------------------------------------------


def tiny_docs(vocab: Vocabulary, n: int = 5) -> SparseBatch:
    return zipf_batch(n, len(vocab), 5, seed=1)


def test_refuses_to_overwrite_a_folder_that_is_not_an_index(tmp_path: Path, vocab: Vocabulary) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(LexretError, match="not a lexret index"):
        Indexer(vocab).build([(synthetic_ids(5), tiny_docs(vocab))], out)
    assert (out / "precious.txt").read_text() == "keep me"
    assert leftovers(tmp_path, "mine") == []


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        (lambda v: [(["a", "b", "a"], tiny_docs(v, 3))], "'a' occurs twice"),
        (lambda v: [(["a", "b"], tiny_docs(v, 2)), (["c", "b"], tiny_docs(v, 2))], "'b' occurs twice"),
        (lambda v: [], "no documents"),
        (lambda v: [(["a"], SparseBatch.empty(1, 10))], "dim 10"),
    ],
)
def test_bad_input_leaves_nothing_behind(tmp_path: Path, vocab: Vocabulary, chunks, message: str) -> None:
    out = tmp_path / "idx"
    with pytest.raises(InputError, match=message):
        Indexer(vocab).build(chunks(vocab), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


# ----- interrupted builds and rebuilds ----------------------------------------------------------


@pytest.fixture(scope="module")
def big_vectors(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary) -> Path:
    """Enough impact mass (3,000 docs x ~85 terms at --scale 300) for Lucene to index for seconds."""
    path = tmp_path_factory.mktemp("big") / "docs.npz"
    write_vectors(path, synthetic_ids(3000, "big"), zipf_batch(3000, len(vocab), 100, seed=5), vocab)
    return path


def interrupt_during_lucene_indexing(vectors: Path, out: Path, tmp: Path, sig: int = signal.SIGKILL) -> None:
    """Run `lexret index` and send ``sig`` to it and its Lucene child (its process group, as a
    terminal's Ctrl-C does) once Lucene has started indexing."""
    cmd = [sys.executable, "-m", "lexret", "-q", "index", "--vectors", str(vectors), "--out", str(out)]
    cmd += ["--scale", "300", "--threads", "1"]
    with open(tmp / "index-stderr.txt", "wb") as err:
        # A shell starts background jobs with SIGINT ignored, and children inherit that (so `make test &`
        # would make Ctrl-C a no-op): give lexret the default disposition a terminal job has.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            logs = list(out.parent.glob(f".{out.name}.building-*/build.log"))
            text = logs[0].read_text(errors="replace") if logs else ""
            if "Starting to index" in text:
                assert "Indexing Complete" not in text, "indexing finished before it could be interrupted"
                break
            if proc.poll() is not None:
                pytest.fail(f"lexret index ended (exit {proc.returncode}) before Lucene started indexing")
            if time.monotonic() > deadline:
                pytest.fail("Lucene indexing did not start within 180 s")
            time.sleep(0.05)
        if sig == signal.SIGTERM:
            os.kill(proc.pid, sig)  # `kill PID`: lexret alone gets it and must stop its Lucene child itself
        else:
            os.killpg(proc.pid, sig)  # the process group of our own child: lexret index and its Lucene build
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    work = list(out.parent.glob(f".{out.name}.building-*"))
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        # the build was really cut off midway: its working folder is still there, unfinished
        assert len(work) == 1 and not (work[0] / "index" / "lexret.json").exists()
    else:
        assert proc.returncode == 130, (tmp / "index-stderr.txt").read_text()
        assert "interrupted" in (tmp / "index-stderr.txt").read_text()
        assert work == []  # cleaned up
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # and no Lucene process left behind


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["sigkill", "ctrl-c", "sigterm"])
def test_interrupted_build_leaves_no_index(tmp_path: Path, big_vectors: Path, vocab: Vocabulary, sig: int) -> None:
    out = tmp_path / "idx"
    interrupt_during_lucene_indexing(big_vectors, out, tmp_path, sig)
    assert not out.exists()
    with pytest.raises(IndexIntegrityError, match="does not exist"):
        Searcher(out, vocab)


def test_interrupted_rebuild_keeps_the_old_index(
    copy_index, small_index, small_queries, big_vectors: Path, vocab: Vocabulary
) -> None:
    out = copy_index("idx")
    qids, queries = small_queries
    before_meta = (out / "lexret.json").read_bytes()
    with Searcher(out, vocab) as s:
        before = s.search(qids, queries, 10, progress=False)
    interrupt_during_lucene_indexing(big_vectors, out, out.parent)
    assert (out / "lexret.json").read_bytes() == before_meta
    assert read_meta(out)["num_docs"] == 300  # file sizes verified too
    with Searcher(out, vocab, expect=QuerySpec(model_id=MODEL)) as s:
        assert s.search(qids, queries, 10, progress=False) == before


def test_rebuild_replaces_existing_index(copy_index, small_queries, vocab: Vocabulary) -> None:
    out = copy_index("idx")
    docs = zipf_batch(50, len(vocab), 30, seed=21)
    ids = synthetic_ids(50, "new")
    meta = Indexer(vocab, IndexConfig(threads=1, scale=10.0)).build([(ids, docs)], out, IndexInfo(model_id="m2"))
    assert meta["num_docs"] == 50 and meta["model_id"] == "m2"
    assert read_meta(out) == meta
    assert (out / "docids.txt").read_text().split() == ids
    assert leftovers(out.parent, "idx") == []  # neither the old index nor the work folder remain
    qids, queries = small_queries
    with Searcher(out, vocab) as s:
        assert s._lucene.num_docs == 50
        run = s.search(qids, queries, 100, progress=False)
    found = {d for h in run.values() for d, _ in h}
    assert found and found <= set(ids)
    with pytest.raises(IndexMismatchError):
        Searcher(out, vocab, expect=QuerySpec(model_id=MODEL))
