"""Quantizer: float weights -> positive integer impacts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexret.quantize import DEFAULT_MAX_IMPACT, DEFAULT_SCALE, Quantizer, empty_rows
from lexret.types import SparseBatch


def batch_of(rows: list[dict[int, float]], dim: int = 10) -> SparseBatch:
    return SparseBatch.from_rows(
        [(np.array(list(r), dtype=np.int64), np.array(list(r.values()), dtype=np.float64)) for r in rows], dim
    )


def rows_of(b: SparseBatch) -> list[dict[int, int]]:
    return [dict(zip(b.row(i)[0].tolist(), b.row(i)[1].tolist())) for i in range(len(b))]


def test_defaults() -> None:
    q = Quantizer()
    assert (q.scale, q.max_impact) == (DEFAULT_SCALE, DEFAULT_MAX_IMPACT) == (25.0, 1000)
    assert q.to_dict() == {"scale": 25.0, "max_impact": 1000}


def test_rounds_to_nearest_integer() -> None:
    b = batch_of([{0: 0.123, 1: 1.006, 2: 2.994, 3: 0.5, 4: 4.449}])
    out = Quantizer(100)(b)
    assert out.is_integer and out.values.dtype == np.int32
    assert rows_of(out) == [{0: 12, 1: 101, 2: 299, 3: 50, 4: 445}]
    assert rows_of(Quantizer(10).quantize(b)) == [{0: 1, 1: 10, 2: 30, 3: 5, 4: 44}]


def test_clips_to_max_impact_and_never_to_zero() -> None:
    b = batch_of([{0: 20.0, 1: 1e-6, 2: 0.004, 3: 9.99}])
    assert rows_of(Quantizer(100)(b)) == [{0: 1000, 1: 1, 2: 1, 3: 999}]
    assert rows_of(Quantizer(100, max_impact=5)(b)) == [{0: 5, 1: 1, 2: 1, 3: 5}]


def test_non_positive_weights_are_dropped() -> None:
    b = batch_of([{0: -0.5, 1: 0.5, 2: -3.0}, {4: -1.0}, {}, {7: 2.0}])
    out = Quantizer(100)(b)
    assert rows_of(out) == [{1: 50}, {}, {}, {7: 200}]
    assert len(out) == 4  # rows are kept, even when emptied
    assert empty_rows(out).tolist() == [1, 2]


def test_explicit_zero_entries_are_dropped() -> None:
    b = SparseBatch(np.array([0, 3]), np.array([0, 1, 2]), np.array([0.0, 0.3, 0.0], dtype=np.float32), 4)
    assert rows_of(Quantizer(10)(b)) == [{1: 3}]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad: float) -> None:
    b = SparseBatch(np.array([0, 2]), np.array([0, 1]), np.array([1.0, bad], dtype=np.float32), 4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        Quantizer()(b)


def test_integer_input_scale_one_is_identity() -> None:
    b = SparseBatch(np.array([0, 3]), np.array([0, 2, 3]), np.array([1, 3, 7], dtype=np.int32), 4)
    assert rows_of(Quantizer(1)(b)) == [{0: 1, 2: 3, 3: 7}]
    assert rows_of(Quantizer(2)(b)) == [{0: 2, 2: 6, 3: 14}]


@pytest.mark.parametrize(("scale", "max_impact"), [(0, 10), (-1, 10), (float("nan"), 10), (float("inf"), 10), (1, 0)])
def test_invalid_settings(scale: float, max_impact: int) -> None:
    with pytest.raises(ValueError):
        Quantizer(scale, max_impact)


def test_dequantize_approximates() -> None:
    b = batch_of([{0: 0.123, 3: 2.5}])
    q = Quantizer(100)
    back = q.dequantize(q(b))
    assert np.allclose(back.values, [0.12, 2.5])
    assert back.row(0)[0].tolist() == [0, 3]


weights = st.floats(-3, 50, allow_nan=False, width=32).filter(bool)


@st.composite
def float_batches(draw) -> SparseBatch:
    dim = draw(st.integers(1, 20))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        idx = sorted(draw(st.sets(st.integers(0, dim - 1), max_size=dim)))
        rows.append((np.array(idx, dtype=np.int64), np.array([draw(weights) for _ in idx], dtype=np.float32)))
    return SparseBatch.from_rows(rows, dim)


@given(float_batches(), st.sampled_from([1.0, 3.0, 100.0, 1000.0]), st.integers(1, 2000))
def test_property_quantize(b: SparseBatch, scale: float, max_impact: int) -> None:
    q = Quantizer(scale, max_impact)(b)
    assert len(q) == len(b) and q.dim == b.dim and q.is_integer
    for i in range(len(b)):
        idx, val = b.row(i)
        qidx, qval = q.row(i)
        positive = val > 0
        assert qidx.tolist() == idx[positive].tolist()  # exactly the positive entries survive
        assert np.all((qval >= 1) & (qval <= max_impact))
        target = val[positive].astype(np.float64) * scale
        inside = (target >= 1) & (target <= max_impact)
        assert np.all(np.abs(qval[inside] - target[inside]) <= 0.5)
        assert np.all(qval[target < 1] == 1)
        assert np.all(qval[target > max_impact] == max_impact)
        if positive.any():
            assert qidx.size > 0  # a positive weight never vanishes
