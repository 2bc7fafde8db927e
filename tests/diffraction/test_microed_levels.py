"""Leginon's offset and pedestal rules, and the clipped-pixel counts of the uint16 conversion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tomopilot.processing.microed import LEGINON_OFFSET_CAP, series_levels, to_uint16


def test_worked_example_of_the_leginon_documentation() -> None:
    levels = series_levels([-10000, -145, -200])
    assert LEGINON_OFFSET_CAP == 2000
    assert levels.offset == 2000
    assert levels.pedestal == 1855.0  # 2000 + (-145)
    assert levels.capped
    assert (levels.lowest_minimum, levels.highest_minimum) == (-10000.0, -145.0)


def test_uncapped_offset_is_minus_the_lowest_minimum() -> None:
    levels = series_levels([-145, -200, -50])
    assert (levels.offset, levels.pedestal, levels.capped) == (200, 150.0, False)


def test_positive_minima_need_no_offset() -> None:
    levels = series_levels([12, 40, 3])
    assert (levels.offset, levels.pedestal) == (0, 40.0)


def test_the_cap_can_be_chosen() -> None:
    assert series_levels([-10000, -145], cap=500).offset == 500
    assert series_levels([-10000, -145], cap=0).offset == 0


def test_fractional_minimum_rounds_the_offset_up() -> None:
    assert series_levels([-10.25]).offset == 11


@pytest.mark.parametrize("minima", [[], [float("nan")], [-1.0, float("-inf")]])
def test_bad_minima_are_refused(minima: list[float]) -> None:
    with pytest.raises(ValueError):
        series_levels(minima)


def test_values_below_minus_offset_are_clipped_and_counted() -> None:
    frame = np.array([[-10000, -2001, -2000, -1999, 0], [63535, 63536, 70000, 2**31 - 1, 5]])
    converted = to_uint16(frame.astype(np.int32), 2000)
    assert converted.data.dtype == np.uint16
    assert converted.data.tolist() == [[0, 0, 0, 1, 2000], [65535, 65535, 65535, 65535, 2005]]
    assert converted.clipped_low == 2  # -10000 and -2001
    assert converted.clipped_high == 3  # uint16 overflow: 63536, 70000 and 2**31 - 1


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        to_uint16(np.array([[0.0, np.nan]]), 10)


@settings(deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=50), st.integers(0, 5000))
def test_offset_and_pedestal_rules_hold_for_any_series(minima: list[int], cap: int) -> None:
    levels = series_levels(minima, cap=cap)
    assert 0 <= levels.offset <= cap
    assert levels.offset == min(max(-min(minima), 0), cap)
    assert levels.pedestal == levels.offset + max(minima)
    assert levels.capped == (-min(minima) > cap)


@settings(deadline=None)
@given(
    arrays(np.int32, (6, 7), elements=st.integers(-(2**31), 2**31 - 1)),
    st.integers(0, 2000),
)
def test_conversion_equals_shift_and_clip(frame: np.ndarray, offset: int) -> None:
    converted = to_uint16(frame, offset)
    shifted = frame.astype(np.int64) + offset
    assert np.array_equal(converted.data, np.clip(shifted, 0, 65535))
    assert converted.clipped_low == int(np.count_nonzero(shifted < 0))
    assert converted.clipped_high == int(np.count_nonzero(shifted > 65535))
