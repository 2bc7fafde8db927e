"""Travel checks and backlash-compensated approaches shared by the twin and SerialEM stages."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tomopilot.instrument.errors import StageLimitError
from tomopilot.instrument.stage_moves import (
    check_stage_xyz,
    check_tilt,
    tilt_approach_deg,
    xy_approach_um,
)
from tomopilot.instrument.types import StageLimits

LIMITS = StageLimits(xy_um=1000.0, z_um=300.0, tilt_deg=70.0)
coordinate = st.floats(-1000, 1000, allow_nan=False)


@given(coordinate, coordinate, coordinate, coordinate, st.floats(0.5, 20))
def test_every_axis_that_moves_down_is_approached_from_below(
    cx: float, cy: float, x: float, y: float, overshoot: float
) -> None:
    via = xy_approach_um((cx, cy), (x, y), overshoot)
    if x >= cx and y >= cy:
        assert via is None
        return
    assert via is not None
    for current, target, step in ((cx, x, via[0]), (cy, y, via[1])):
        if target < current:
            assert step == pytest.approx(target - overshoot)  # then up to the target
        else:
            assert step == target  # an axis moving up goes straight there


@given(st.floats(-70, 70), st.floats(-70, 70), st.floats(0.5, 5))
def test_a_tilt_down_overshoots_within_the_range_and_a_tilt_up_does_not(
    current: float, target: float, overshoot: float
) -> None:
    via = tilt_approach_deg(current, target, overshoot, 70.0)
    if target >= current:
        assert via is None
    else:
        assert via is not None
        assert -70.0 <= via <= target
        assert via == pytest.approx(max(-70.0, target - overshoot))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1000.5, 1000.5])
def test_travel_checks_refuse_what_the_stage_cannot_reach(bad: float) -> None:
    check_stage_xyz(LIMITS, 1000.0, -1000.0, 300.0)
    check_tilt(LIMITS, -70.0)
    with pytest.raises(StageLimitError, match="stage x"):
        check_stage_xyz(LIMITS, bad, 0.0, 0.0)
    with pytest.raises(StageLimitError, match="stage tilt"):
        check_tilt(LIMITS, bad / 10)
