"""Concurrent use: parallel searches agree with a single one; a rebuild does not disturb searches
on the old index until it is swapped in."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.searcher import Searcher
from lexret.synthetic import synthetic_ids, zipf_batch
from lexret.vectors import write_vectors

pytestmark = pytest.mark.slow


def _search_cmd(index: Path, queries: Path, out: Path, threads: int = 1) -> list[str]:
    return [sys.executable, "-m", "lexret", "-q", "search", "--index", str(index), "--queries", str(queries),
            "--k", "20", "--out", str(out), "--threads", str(threads), "--chunk-size", "7"]  # fmt: skip


def test_parallel_processes_and_threads_match_a_single_search(small_index, small_queries, vocab, tmp_path):
    qids, queries = small_queries
    qfile = tmp_path / "q.jsonl"
    write_vectors(qfile, qids, queries, vocab, {"model_id": small_index.info.model_id})
    with Searcher(small_index.path, vocab) as s:
        reference = s.search(qids, queries, 20, progress=False)
    ref_file = tmp_path / "ref.trec"
    from lexret.trec import read_run, write_run

    write_run(ref_file, reference)
    # three processes at once, one of them with four search threads
    procs = [
        subprocess.Popen(_search_cmd(small_index.path, qfile, tmp_path / f"p{i}.trec", threads=4 if i == 0 else 1))
        for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    for i in range(3):
        assert read_run(tmp_path / f"p{i}.trec") == read_run(ref_file)


def test_rebuild_does_not_disturb_open_searches(tmp_path, vocab):
    ids = synthetic_ids(400)
    old_docs = zipf_batch(400, len(vocab), 20, seed=1)
    new_docs = zipf_batch(400, len(vocab), 20, seed=2)
    queries = zipf_batch(30, len(vocab), 6, seed=1)
    qids = synthetic_ids(30, "q")
    index = tmp_path / "index"
    cfg = IndexConfig(threads=1)
    Indexer(vocab, cfg).build([(ids, old_docs)], index, IndexInfo("m"))
    searcher = Searcher(index, vocab)
    before = searcher.search(qids, queries, 10, progress=False)

    during: list[dict] = []
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            Indexer(vocab, cfg).build([(ids, new_docs)], index, IndexInfo("m"))
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=rebuild)
    t.start()
    while t.is_alive():
        during.append(searcher.search(qids, queries, 10, progress=False))
        # a search opened while the rebuild runs finds a complete index, old or new
        with Searcher(index, vocab) as fresh:
            assert fresh.meta["num_docs"] == 400
    t.join()
    assert not errors
    assert during and all(r == before for r in during)
    assert searcher.search(qids, queries, 10, progress=False) == before  # still the old files, held open
    searcher.close()
    with Searcher(index, vocab) as new:
        after = new.search(qids, queries, 10, progress=False)
    with Searcher(index, vocab, backend="scipy") as exact:
        assert after == exact.search(qids, queries, 10, progress=False)
    assert after != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def test_meta_check_repeats_when_a_rebuild_swaps_the_folder_mid_check(tmp_path, vocab, monkeypatch):
    """A searcher opening while a rebuild swaps folders may read one folder's metadata and list the
    other's files; the check is repeated instead of calling a sound index damaged."""
    import os

    import lexret.index_meta as index_meta

    ids = synthetic_ids(300)
    index, other = tmp_path / "index", tmp_path / "other"
    for seed, folder in ((1, index), (2, other)):
        Indexer(vocab, IndexConfig(threads=1)).build([(ids, zipf_batch(300, len(vocab), 20, seed=seed))], folder,
                                                     IndexInfo("m"))  # fmt: skip
    new_meta = index_meta.read_meta(other)
    real = index_meta.lucene_files
    swapped = []

    def swap_then_list(d):
        if not swapped:  # the rebuild's exchange lands between reading lexret.json and listing the files
            os.rename(index, tmp_path / "old")
            os.rename(other, index)
            swapped.append(True)
        return real(d)

    monkeypatch.setattr(index_meta, "lucene_files", swap_then_list)
    assert index_meta.read_meta(index) == new_meta
    assert swapped
    # without a swap a mismatch is still damage
    victim = next(p for p in sorted(index.iterdir()) if p.name.endswith(".doc"))
    victim.write_bytes(victim.read_bytes() + b"x")
    with pytest.raises(index_meta.IndexIntegrityError, match="truncated or altered"):
        index_meta.read_meta(index)
