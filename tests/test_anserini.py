"""A lexret index is a standard Anserini index: stock ``SearchCollection -impact -pretokenized`` (the
jar Pyserini ships, in a JVM of its own) returns the collection's ids and lexret's scores. Short ids
are an opt-in that only lexret maps back; format-2 folders read as short-id folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lexret.backends.lucene import run_search_collection
from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.errors import IndexIntegrityError
from lexret.index_meta import FORMAT, read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.lucene_ids import COLLECTION_SCHEME, SCHEME, decode
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.trec import read_run, write_impact_topics
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

pytestmark = pytest.mark.slow

K = 25
# word pieces and unused tokens as well as whole words: Anserini's whitespace tokens must keep them
TERMS = ["dog", "cat", "##ing", "[unused3]", "grass", "red", "##s"]


def collection(vocab: Vocabulary, n: int = 900, seed: int = 5) -> tuple[list[str], SparseBatch]:
    """Awkward ids (quotes, backslashes, non-ASCII, slashes, mixed case) and small integer weights
    at scale 1, so that score ties are common."""
    rng = np.random.default_rng(seed)
    prefixes = ["Ä", "a", "B", "x/", 'q\\"', "zz", "Z:9"]
    ids = [f"{prefixes[rng.integers(len(prefixes))]}-{j}" for j in rng.permutation(n)]
    terms = np.array(vocab.ids(TERMS))
    rows = []
    for _ in range(n):
        t = np.sort(rng.choice(terms, rng.integers(1, 5), replace=False))
        rows.append((t, rng.integers(1, 4, t.size).astype(float)))
    return ids, SparseBatch.from_rows(rows, len(vocab))


def queries(vocab: Vocabulary, n: int = 50, seed: int = 7) -> tuple[list[str], SparseBatch]:
    """Small weights (many ties) and, for every fifth query, weights in the hundreds: more tokens
    in the topic line than Lucene's default of 1,024 clauses."""
    rng = np.random.default_rng(seed)
    terms = np.array(vocab.ids(TERMS))
    rows = []
    for i in range(n):
        t = np.sort(rng.choice(terms, rng.integers(1, 5), replace=False))
        high = 400 if i % 5 == 0 else 3
        rows.append((t, rng.integers(1, high, t.size).astype(float)))
    return [f"q{i}" for i in range(n)], SparseBatch.from_rows(rows, len(vocab))


def anserini_run(index: Path, qids: list[str], q: SparseBatch, vocab: Vocabulary, tmp: Path) -> dict:
    """Stock Anserini's run over ``index`` for integer queries ``q``, scores as Anserini wrote them."""
    toks = vocab.tokens
    dicts = [{toks[j]: int(v) for j, v in zip(*(x.tolist() for x in q.row(i)))} for i in range(len(q))]
    write_impact_topics(tmp / "topics.tsv", qids, dicts)
    run_search_collection(index, tmp / "topics.tsv", tmp / "anserini.run", k=K)
    return read_run(tmp / "anserini.run")


def rounded(run: dict) -> dict:
    # Anserini nudges tied scores apart by tiny decrements to show their order (docid ascending);
    # scores are integer sums, so rounding restores them (as lexret's Lucene backend does)
    return {qid: [(d, float(round(s))) for d, s in hits] for qid, hits in run.items()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, vocab: Vocabulary) -> dict:
    ids, docs = collection(vocab)
    root = tmp_path_factory.mktemp("anserini")
    default = root / "default"
    short = root / "short"
    Indexer(vocab, IndexConfig(scale=1.0, threads=2)).build([(ids, docs)], default, IndexInfo("m"))
    Indexer(vocab, IndexConfig(scale=1.0, threads=2, short_ids=True)).build([(ids, docs)], short, IndexInfo("m"))
    qids, q = queries(vocab)
    exact = ScipySparseBackend(ids, Quantizer(1.0)(docs)).search(qids, q, K)
    return {"ids": ids, "default": default, "short": short, "qids": qids, "q": q, "exact": exact, "root": root}


def test_stock_anserini_returns_collection_ids_and_lexret_scores(built: dict, vocab: Vocabulary, tmp_path) -> None:
    assert read_meta(built["default"])["lucene_ids"] == {"scheme": COLLECTION_SCHEME}
    assert read_meta(built["default"])["format"] == FORMAT
    with Searcher(built["default"], vocab) as s:
        ours = s.search(built["qids"], built["q"], K, progress=False)
    theirs = rounded(anserini_run(built["default"], built["qids"], built["q"], vocab, tmp_path))
    # queries that match nothing are absent from a TREC run
    assert theirs == {qid: hits for qid, hits in ours.items() if hits}
    assert ours == built["exact"]
    assert all(len({sc for _, sc in h}) < len(h) for h in list(ours.values())[1::5])  # ties are exercised
    assert any(sum(v for v in built["q"].row(i)[1]) > 1024 for i in range(len(built["q"])))


def test_short_ids_are_opt_in_and_only_lexret_maps_them_back(built: dict, vocab: Vocabulary, tmp_path) -> None:
    meta = read_meta(built["short"])
    assert meta["lucene_ids"] == {"scheme": SCHEME, "width": 2}
    with Searcher(built["short"], vocab) as s:
        assert s.search(built["qids"], built["q"], K, progress=False) == built["exact"]
    theirs = rounded(anserini_run(built["short"], built["qids"], built["q"], vocab, tmp_path))
    real = sorted(built["ids"])
    assert {h[0] for hits in theirs.values() for h in hits}.isdisjoint(built["ids"])
    mapped = {qid: [(real[decode(d)], s) for d, s in hits] for qid, hits in theirs.items()}
    assert mapped == {qid: hits for qid, hits in built["exact"].items() if hits}
    default_bytes = read_meta(built["default"])["index_bytes"]
    assert meta["index_bytes"] < default_bytes


def relabel(src: Path, dst: Path, **changes) -> Path:
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "lexret.json").read_text())
    meta.update(changes)
    (dst / "lexret.json").write_text(json.dumps(meta))
    return dst


def test_format_2_folders_are_read_as_short_id_folders(built: dict, vocab: Vocabulary, tmp_path) -> None:
    old = relabel(built["short"], tmp_path / "v2", format="lexret-index/2")
    with Searcher(old, vocab) as s:
        assert s.search(built["qids"], built["q"], K, progress=False) == built["exact"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "lexret-index/1"}, "index format 'lexret-index/1'"),
        ({"lucene_ids": {"scheme": "base36"}}, "rebuild the index"),
        ({"lucene_ids": {"scheme": SCHEME}}, "rebuild the index"),
    ],
)
def test_unknown_formats_and_id_schemes_are_refused(built: dict, vocab: Vocabulary, tmp_path, changes, message) -> None:
    bad = relabel(built["short"], tmp_path / "bad", **changes)
    with pytest.raises(IndexIntegrityError, match=message):
        Searcher(bad, vocab)
