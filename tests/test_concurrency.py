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
