"""SparseBatch: CSR invariants, conversions, pruning and row selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from lexret.errors import InputError
from lexret.types import SparseBatch
from lexret.vocab import Vocabulary

TOKENS = ["[PAD]", "dog", "##s", "[unused5]", "cat", "café", "run", "##ning"]


def small_vocab() -> Vocabulary:
    return Vocabulary(TOKENS)


def rows_of(b: SparseBatch) -> list[dict[int, float]]:
    out = []
    for i in range(len(b)):
        idx, val = b.row(i)
        out.append(dict(zip(idx.tolist(), np.asarray(val, dtype=np.float64).tolist())))
    return out


def same(a: SparseBatch, b: SparseBatch) -> bool:
    return (
        a.dim == b.dim
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
        and np.array_equal(a.values, b.values)
    )


@pytest.fixture
def batch() -> SparseBatch:
    # row 0: 3 terms, row 1: empty, row 2: 2 terms, row 3: 1 negative term
    return SparseBatch(
        np.array([0, 3, 3, 5, 6]),
        np.array([1, 2, 4, 0, 7, 3]),
        np.array([0.5, 2.0, 1.25, 3.0, 0.75, -1.0], dtype=np.float32),
        8,
    )


# ----- construction and validation ------------------------------------------------------------


def test_constructor_normalises_dtypes(batch: SparseBatch) -> None:
    assert batch.indptr.dtype == np.int64
    assert batch.indices.dtype == np.int32
    assert batch.values.dtype == np.float32
    assert not batch.is_integer
    ints = SparseBatch(np.array([0, 2]), np.array([0, 3]), np.array([4, 5], dtype=np.int64), 4)
    assert ints.values.dtype == np.int32 and ints.is_integer
    f64 = SparseBatch(np.array([0, 1]), np.array([2]), np.array([0.1], dtype=np.float64), 4)
    assert f64.values.dtype == np.float32


def test_views(batch: SparseBatch) -> None:
    assert len(batch) == 4
    assert batch.nnz == 6
    assert batch.terms_per_row().tolist() == [3, 0, 2, 1]
    idx, val = batch.row(2)
    assert idx.tolist() == [0, 7] and val.tolist() == [3.0, 0.75]
    assert batch.row(1)[0].size == 0
    assert "rows=4" in repr(batch) and "nnz=6" in repr(batch)


@pytest.mark.parametrize(
    ("indptr", "indices", "values", "dim", "exc"),
    [
        ([1, 2], [0], [1.0], 3, ValueError),  # indptr does not start at 0
        ([], [], [], 3, ValueError),  # empty indptr
        ([0, 2, 1], [0], [1.0], 3, ValueError),  # decreasing
        ([0, 2], [0], [1.0], 3, ValueError),  # indptr[-1] != nnz
        ([0, 1], [0, 1], [1.0], 3, ValueError),  # indices / values differ in length
        ([0, 1], [3], [1.0], 3, ValueError),  # index beyond dim
        ([0, 1], [-1], [1.0], 3, ValueError),  # negative index
        ([0, 1], [0], ["x"], 3, TypeError),  # non-numeric values
        ([0, 1], [0], [True], 3, TypeError),  # booleans are not weights
    ],
)
def test_validation_errors(indptr, indices, values, dim, exc) -> None:
    with pytest.raises(exc):
        SparseBatch(np.array(indptr), np.array(indices), np.array(values), dim)


def test_empty() -> None:
    e = SparseBatch.empty(3, 10)
    assert len(e) == 3 and e.nnz == 0 and e.dim == 10
    assert e.to_dense().shape == (3, 10) and not e.to_dense().any()
    assert SparseBatch.empty(2, 5, np.int32).is_integer


def test_from_rows_sorts_sums_duplicates_and_drops_zeros() -> None:
    b = SparseBatch.from_rows(
        [
            (np.array([5, 1, 5, 3]), np.array([1.0, 2.0, 0.5, -1.0])),
            (np.array([2, 2]), np.array([1.0, -1.0])),  # cancels to nothing
            (np.array([], dtype=np.int64), np.array([])),
        ],
        dim=6,
    )
    assert rows_of(b) == [{1: 2.0, 3: -1.0, 5: 1.5}, {}, {}]
    assert b.row(0)[0].tolist() == [1, 3, 5]
    assert len(SparseBatch.from_rows([], dim=4)) == 0


# ----- conversions ------------------------------------------------------------------------------


def test_scipy_round_trip(batch: SparseBatch) -> None:
    m = batch.to_scipy()
    assert isinstance(m, sp.csr_matrix) and m.shape == (4, 8)
    assert m[0, 2] == 2.0 and m[3, 3] == -1.0 and m[1].nnz == 0
    assert same(SparseBatch.from_scipy(m), batch)


def test_from_scipy_sums_duplicates_and_drops_explicit_zeros() -> None:
    coo = sp.coo_matrix((np.array([1.0, 2.0, 0.0, 4.0]), (np.array([0, 0, 1, 1]), np.array([3, 3, 1, 0]))), (2, 5))
    b = SparseBatch.from_scipy(coo)
    assert rows_of(b) == [{3: 3.0}, {0: 4.0}]
    assert b.nnz == 2


def test_dense_round_trip(batch: SparseBatch) -> None:
    d = batch.to_dense()
    assert d.shape == (4, 8)
    assert d[0].tolist() == [0, 0.5, 2.0, 0, 1.25, 0, 0, 0]
    assert same(SparseBatch.from_dense(d), batch)
    with pytest.raises(ValueError):
        SparseBatch.from_dense(np.zeros(3))


def test_dicts_round_trip(batch: SparseBatch) -> None:
    v = small_vocab()
    dicts = batch.to_dicts(v)
    assert dicts == [{"dog": 0.5, "##s": 2.0, "cat": 1.25}, {}, {"[PAD]": 3.0, "##ning": 0.75}, {"[unused5]": -1.0}]
    assert all(isinstance(w, float) for d in dicts for w in d.values())
    assert same(SparseBatch.from_dicts(dicts, v), batch)


def test_dicts_of_integer_batch_hold_ints() -> None:
    v = small_vocab()
    b = SparseBatch(np.array([0, 2]), np.array([1, 5]), np.array([3, 7], dtype=np.int32), len(v))
    dicts = b.to_dicts(v)
    assert dicts == [{"dog": 3, "café": 7}]
    assert all(type(w) is int for w in dicts[0].values())


def test_to_dicts_rejects_vocabulary_of_other_size(batch: SparseBatch) -> None:
    with pytest.raises(InputError, match="dim 8"):
        batch.to_dicts(Vocabulary(TOKENS[:5]))


def test_from_dicts_unknown_term_raises_keyerror() -> None:
    with pytest.raises(KeyError):
        SparseBatch.from_dicts([{"dog": 1.0, "zebra": 2.0}], small_vocab())


# ----- pruning --------------------------------------------------------------------------------


def test_top_k_keeps_largest(batch: SparseBatch) -> None:
    t = batch.top_k(2)
    assert rows_of(t) == [{2: 2.0, 4: 1.25}, {}, {0: 3.0, 7: 0.75}, {3: -1.0}]
    assert rows_of(batch.top_k(1)) == [{2: 2.0}, {}, {0: 3.0}, {3: -1.0}]


def test_top_k_ties_go_to_lower_term_id() -> None:
    b = SparseBatch(
        np.array([0, 5]), np.array([0, 2, 4, 6, 7]), np.array([1.0, 2.0, 2.0, 2.0, 3.0], dtype=np.float32), 8
    )
    # among the three entries tied at 2.0, the ones kept are those with the lowest term ids
    assert rows_of(b.top_k(3)) == [{2: 2.0, 4: 2.0, 7: 3.0}]
    assert rows_of(b.top_k(2)) == [{2: 2.0, 7: 3.0}]
    assert rows_of(b.top_k(4)) == [{2: 2.0, 4: 2.0, 6: 2.0, 7: 3.0}]


def test_top_k_noop_and_errors(batch: SparseBatch) -> None:
    assert same(batch.top_k(3), batch)
    assert same(batch.top_k(100), batch)
    with pytest.raises(ValueError):
        batch.top_k(0)


def test_threshold(batch: SparseBatch) -> None:
    assert rows_of(batch.threshold(0)) == [{1: 0.5, 2: 2.0, 4: 1.25}, {}, {0: 3.0, 7: 0.75}, {}]
    assert rows_of(batch.threshold(1.25)) == [{2: 2.0}, {}, {0: 3.0}, {}]
    assert len(batch.threshold(10)) == 4 and batch.threshold(10).nnz == 0


# ----- stacking and selection ------------------------------------------------------------------


def test_concat(batch: SparseBatch) -> None:
    other = SparseBatch.from_rows([(np.array([6]), np.array([9.0]))], dim=8)
    c = SparseBatch.concat([batch, other, batch])
    assert len(c) == 9
    assert rows_of(c) == rows_of(batch) + [{6: 9.0}] + rows_of(batch)
    assert same(SparseBatch.concat([batch]), batch)
    with pytest.raises(ValueError):
        SparseBatch.concat([])
    with pytest.raises(ValueError, match="dim"):
        SparseBatch.concat([batch, SparseBatch.empty(1, 9)])


def test_slice(batch: SparseBatch) -> None:
    s = batch.slice(1, 3)
    assert len(s) == 2 and s.indptr[0] == 0
    assert rows_of(s) == rows_of(batch)[1:3]
    assert rows_of(batch.slice(2, 100)) == rows_of(batch)[2:]
    assert rows_of(batch.slice(-2, 4)) == rows_of(batch)[-2:]
    assert len(batch.slice(3, 3)) == 0
    for start, stop in [(3, 1), (-1, -3), (10, 2)]:  # empty, as list slicing gives
        empty = batch.slice(start, stop)
        assert len(empty) == len(list(range(4))[start:stop]) == 0 and empty.nnz == 0 and empty.dim == 8


def test_take(batch: SparseBatch) -> None:
    t = batch.take([3, 0, 0])
    assert rows_of(t) == [rows_of(batch)[3], rows_of(batch)[0], rows_of(batch)[0]]
    assert rows_of(batch.take(np.array([1]))) == [{}]


# ----- properties ----------------------------------------------------------------------------


@st.composite
def sparse_batches(draw, integer: bool | None = None) -> SparseBatch:
    dim = draw(st.integers(1, 24))
    n = draw(st.integers(0, 8))
    use_int = draw(st.booleans()) if integer is None else integer
    rows = []
    for _ in range(n):
        idx = sorted(draw(st.sets(st.integers(0, dim - 1), max_size=dim)))
        if use_int:
            vals = [draw(st.integers(-50, 50).filter(bool)) for _ in idx]
        else:
            vals = [draw(st.floats(-8, 8, width=32, allow_subnormal=False).filter(bool)) for _ in idx]
        rows.append((np.array(idx, dtype=np.int64), np.array(vals)))
    b = SparseBatch.from_rows(rows, dim, dtype=np.int32 if use_int else np.float32)
    assert b.nnz == sum(len(r[0]) for r in rows)
    return b


@given(sparse_batches())
def test_property_scipy_dense_round_trips(b: SparseBatch) -> None:
    assert same(SparseBatch.from_scipy(b.to_scipy()), b)
    assert same(SparseBatch.from_dense(b.to_dense()), b)
    back = SparseBatch.concat([b.slice(0, len(b) // 2), b.slice(len(b) // 2, len(b))])
    assert same(back, b)


@given(sparse_batches(), st.integers(1, 10))
def test_property_top_k(b: SparseBatch, k: int) -> None:
    t = b.top_k(k)
    assert len(t) == len(b) and t.dim == b.dim
    for i in range(len(b)):
        idx, val = b.row(i)
        kidx, kval = t.row(i)
        original = dict(zip(idx.tolist(), val.tolist()))
        kept = dict(zip(kidx.tolist(), kval.tolist()))
        assert len(kept) == min(k, len(original))
        assert kidx.tolist() == sorted(kidx.tolist())  # still sorted within the row
        assert all(original[j] == w for j, w in kept.items())  # a subset, values unchanged
        dropped = {j: w for j, w in original.items() if j not in kept}
        if kept and dropped:
            assert min(kept.values()) >= max(dropped.values())
            boundary = min(kept.values())
            # among entries equal to the boundary weight, the kept ones have the lowest ids
            tied_kept = [j for j, w in kept.items() if w == boundary]
            tied_dropped = [j for j, w in dropped.items() if w == boundary]
            if tied_dropped:
                assert max(tied_kept) < min(tied_dropped)


def test_postings_per_row_sums_the_document_frequencies_of_a_query_terms() -> None:
    docs = SparseBatch.from_rows(
        [(np.array([1, 2]), np.ones(2)), (np.array([2]), np.ones(1)), (np.array([3]), np.ones(1))], 5
    )
    df = docs.document_frequency()
    assert df.tolist() == [0, 1, 2, 1, 0]
    queries = SparseBatch.from_rows(
        [(np.array([2, 3]), np.ones(2)), (np.array([0]), np.ones(1)), (np.array([], int), np.ones(0))], 5
    )
    assert queries.postings_per_row(df).tolist() == [3.0, 0.0, 0.0]
