"""Short Lucene ids: round trips, string order kept, and an index under them that ranks exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexret.backends.scipy_sparse import ScipySparseBackend
from lexret.index_meta import read_meta
from lexret.indexer import IndexConfig, Indexer, IndexInfo
from lexret.lucene_ids import ALPHABET, SCHEME, decode, encode, string_ranks, width_for
from lexret.quantize import Quantizer
from lexret.searcher import Searcher
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary


def test_alphabet_is_ascending() -> None:
    assert list(ALPHABET) == sorted(ALPHABET) and len(set(ALPHABET)) == 62


@pytest.mark.parametrize(("n", "w"), [(1, 1), (62, 1), (63, 2), (3844, 2), (3845, 3), (1_000_000, 4)])
def test_width(n: int, w: int) -> None:
    assert width_for(n) == w


@given(st.integers(0, 62**4 - 1))
def test_encode_decode_round_trip(r: int) -> None:
    s = encode(r, 4)
    assert len(s) == 4 and decode(s) == r


def test_encode_refuses_ranks_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode(62, 1)


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=200, unique=True))
def test_short_ids_sort_like_the_real_ones(ids: list[str]) -> None:
    ranks = string_ranks(ids)
    w = width_for(len(ids))
    short = [encode(int(r), w) for r in ranks]
    # UTF-8 byte order (Lucene's) and code point order (Python's) agree
    assert sorted(ids, key=lambda s: s.encode()) == sorted(ids)
    assert [ids[i] for i in sorted(range(len(ids)), key=short.__getitem__)] == sorted(ids)


@pytest.mark.slow
def test_index_under_short_ids_returns_real_ids_and_breaks_ties_by_them(tmp_path, vocab: Vocabulary) -> None:
    rng = np.random.default_rng(5)
    n = 900
    # awkward ids: quotes, backslashes, non-ASCII, a common prefix, mixed case; scale 1 makes ties common
    prefixes = ["Ä", "a", "B", "x/", 'q\\"', "zz"]
    ids = [f"{prefixes[rng.integers(6)]}-{j}" for j in rng.permutation(n)]
    terms = np.array(vocab.ids(["dog", "cat", "red", "ball", "grass"]))
    rows = [(np.sort(rng.choice(terms, rng.integers(1, 4), replace=False)), rng.integers(1, 3, 4)) for _ in range(n)]
    docs = SparseBatch.from_rows([(t, w[: t.size].astype(float)) for t, w in rows], len(vocab))
    cfg = IndexConfig(scale=1.0, threads=2, short_ids=True)
    meta = Indexer(vocab, cfg).build([(ids, docs)], tmp_path / "ix", IndexInfo("m"))
    assert read_meta(tmp_path / "ix")["lucene_ids"] == meta["lucene_ids"] == {"scheme": SCHEME, "width": 2}
    qids = [f"q{i}" for i in range(60)]
    queries = SparseBatch.from_rows([(terms[rng.choice(5, 2, replace=False)], np.array([1.0, 2.0])) for _ in qids],
                                    len(vocab))  # fmt: skip
    want = ScipySparseBackend(ids, Quantizer(1.0)(docs)).search(qids, queries, 25)
    with Searcher(tmp_path / "ix", vocab) as s:
        got = s.search(qids, queries, 25, progress=False)
    assert got == want
    assert all(len({sc for _, sc in h}) < len(h) for h in want.values())  # ties inside every list
