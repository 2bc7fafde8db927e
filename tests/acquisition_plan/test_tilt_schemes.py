"""Tilt orders pinned against PACEtomo's grouped dose-symmetric scheme, and their properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.acquisition.plan.tilt_schemes import (
    TiltController,
    TiltScheme,
    TiltStep,
    auto_start_tilt_deg,
    bidirectional,
    dose_symmetric,
    shifted_tilt_range,
    unidirectional,
)


def tilts(steps: list[TiltStep]) -> list[float]:
    return [s.tilt_deg for s in steps]


# The issue's example: ±60°, step 3°, groups of 2, 41 angles.
ISSUE_ORDER = [0, 3, 6, -3, -6, 9, 12, -9, -12, 15, 18, -15, -18, 21, 24, -21, -24, 27, 30]
ISSUE_ORDER += [-27, -30, 33, 36, -33, -36, 39, 42, -39, -42, 45, 48, -45, -48, 51, 54, -51]
ISSUE_ORDER += [-54, 57, 60, -57, -60]


def test_issue_example_order_is_pinned() -> None:
    steps = dose_symmetric(0, -60, 60, 3, 2)
    assert len(steps) == 41
    assert tilts(steps) == ISSUE_ORDER
    assert [s.index for s in steps] == list(range(41))
    assert steps[0].branch == "start" and steps[0].group == 0
    assert [(s.branch, s.group, s.branch_step) for s in steps[1:5]] == [
        ("+", 1, 1),
        ("+", 1, 2),
        ("-", 1, 1),
        ("-", 1, 2),
    ]
    assert steps[-1].group == 10 and steps[-1].branch_step == 20


def test_approach_is_one_step_below_for_negative_tilts_and_the_start() -> None:
    steps = dose_symmetric(0, -60, 60, 3, 2)
    assert [(s.tilt_deg, s.approach_deg) for s in steps[:7]] == [
        (0, -3),
        (3, None),
        (6, None),
        (-3, -6),
        (-6, -9),
        (9, None),
        (12, None),
    ]
    slow = dose_symmetric(0, -60, 60, 3, 2, slow_tilt=True)
    assert all(s.approach_deg == s.tilt_deg - 3 for s in slow)


@pytest.mark.parametrize(
    ("group_size", "expected"),
    [
        (1, [0, 3, -3, 6, -6, 9, -9, 12, -12]),
        (2, [0, 3, 6, -3, -6, 9, 12, -9, -12]),
        (3, [0, 3, 6, 9, -3, -6, -9, 12, -12]),
        (4, [0, 3, 6, 9, 12, -3, -6, -9, -12]),
    ],
)
def test_group_sizes(group_size: int, expected: list[float]) -> None:
    assert tilts(dose_symmetric(0, -12, 12, 3, group_size)) == expected


def test_asymmetric_range_long_branch_comes_back_to_back() -> None:
    # Lamella with start 9, -51…60 (the autoStartTilt example): the + branch ends at 60 in
    # group 9, then the − branch's last groups follow back-to-back.
    expected = [9, 12, 15, 6, 3, 18, 21, 0, -3, 24, 27, -6, -9, 30, 33, -12, -15, 36, 39]
    expected += [-18, -21, 42, 45, -24, -27, 48, 51, -30, -33, 54, 57, -36, -39, 60]
    expected += [-42, -45, -48, -51]
    steps = dose_symmetric(9, -51, 60, 3, 2)
    assert tilts(steps) == expected
    assert len(steps) == 38
    assert [s.group for s in steps[-5:]] == [9, 9, 9, 10, 10]


def test_short_negative_branch_leaves_positive_groups_back_to_back() -> None:
    assert tilts(dose_symmetric(0, -6, 15, 3, 1)) == [0, 3, -3, 6, -6, 9, 12, 15]


def test_range_not_divisible_by_the_step_is_truncated_toward_the_start() -> None:
    assert tilts(dose_symmetric(0, -10, 10, 3, 2)) == [0, 3, 6, -3, -6, 9, -9]
    steps = dose_symmetric(0, -59, 59, 3, 2)
    assert len(steps) == 39
    assert max(tilts(steps)) == 57 and min(tilts(steps)) == -57


def test_start_at_the_top_of_the_range_runs_the_negative_branch_only() -> None:
    assert tilts(dose_symmetric(6, -3, 6, 3, 2)) == [6, 3, 0, -3]


def test_fractional_steps_land_on_exact_angles() -> None:
    assert tilts(dose_symmetric(0, -0.3, 0.3, 0.1, 1)) == [0, 0.1, -0.1, 0.2, -0.2, 0.3, -0.3]


def test_bidirectional_orders_and_approaches() -> None:
    plus = bidirectional(0, -9, 9, 3)
    assert tilts(plus) == [0, 3, 6, 9, -3, -6, -9]
    assert [s.approach_deg for s in plus] == [-3, None, None, None, -6, -9, -12]
    assert [s.group for s in plus] == [0, 1, 1, 1, 2, 2, 2]
    minus = bidirectional(0, -9, 9, 3, first="-")
    assert tilts(minus) == [0, -3, -6, -9, 3, 6, 9]
    assert [s.approach_deg for s in minus] == [-3, -6, -9, -12, None, None, None]
    assert [s.branch for s in minus] == ["start", "-", "-", "-", "+", "+", "+"]


def test_unidirectional_order() -> None:
    steps = unidirectional(-9, 10, 3)
    assert tilts(steps) == [-9, -6, -3, 0, 3, 6, 9]
    assert [s.approach_deg for s in steps] == [-12, None, None, None, None, None, None]
    assert steps[0].branch == "start" and {s.branch for s in steps[1:]} == {"+"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dose_symmetric(0, -60, 60, 0, 2), "step must be positive"),
        (lambda: dose_symmetric(0, -60, 60, 3, 0), "group size"),
        (lambda: dose_symmetric(70, -60, 60, 3, 2), "outside the range"),
        (lambda: bidirectional(-61, -60, 60, 3), "outside the range"),
    ],
)
def test_impossible_schemes_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_auto_start_tilt_compensates_the_pretilt_on_the_step_grid() -> None:
    assert auto_start_tilt_deg(-10, 0, 1) == 10
    assert auto_start_tilt_deg(-10, 0, 3) == 9
    assert auto_start_tilt_deg(10, 0, 2) == -10
    assert auto_start_tilt_deg(10, 90, 1) == 0
    # atan(tan 10° · cos 60°) = 5.04°
    assert auto_start_tilt_deg(10, 60, 1) == -5


def test_shifted_range_is_clipped_to_the_stage_limit() -> None:
    assert shifted_tilt_range(0, 9, -60, 60, 60) == (-51, 60)
    assert shifted_tilt_range(0, -12, -60, 60, 69.9) == (-69, 48)


def test_scheme_model_validates_serialises_and_counts() -> None:
    scheme = TiltScheme(start_deg=0, min_deg=-60, max_deg=60, step_deg=3, group_size=2)
    assert scheme.n_tilts == 41
    assert TiltScheme.model_validate_json(scheme.model_dump_json()) == scheme
    assert tilts(scheme.steps()) == ISSUE_ORDER
    with pytest.raises(ValueError, match="outside"):
        TiltScheme(start_deg=12, min_deg=-9, max_deg=9)
    with pytest.raises(ValueError, match="above"):
        TiltScheme(start_deg=0, min_deg=10, max_deg=-10)
    with pytest.raises(ValueError, match="starts at min_deg"):
        TiltScheme(kind="unidirectional", start_deg=0, min_deg=-9, max_deg=9)
    with pytest.raises(ValueError, match="frozen"):
        scheme.step_deg = 2  # type: ignore[misc]


def test_stage_travel_counts_approaches() -> None:
    scheme = TiltScheme(start_deg=0, min_deg=-3, max_deg=3, step_deg=3, group_size=1)
    # 0→-3→0 (approach, 6), 0→3 (3), 3→-6→-3 (9 + 3)
    assert scheme.stage_travel_deg() == pytest.approx(21)


def test_controller_skips_steps_of_an_ended_branch_without_tilting() -> None:
    ctl = TiltScheme(min_deg=-12, max_deg=12, step_deg=3, group_size=2).controller()
    done = [ctl.next_step() for _ in range(5)]  # 0, 3, 6, -3, -6
    assert tilts([s for s in done if s is not None]) == [0, 3, 6, -3, -6]
    ctl.end_branch("-")
    assert not ctl.is_alive("-") and ctl.is_alive("+")
    assert tilts(ctl.remaining()) == [9, 12]
    rest = list(ctl)
    assert tilts(rest) == [9, 12]
    assert tilts(ctl.skipped) == [-9, -12]
    assert ctl.next_step() is None
    with pytest.raises(ValueError, match="only the"):
        ctl.end_branch("start")


def test_controller_recomputes_the_approach_after_a_skip() -> None:
    # Bidirectional, negative branch first; ending "-" at once makes the first + step follow
    # the start tilt directly, which is a + move again: no approach.
    ctl = TiltScheme(kind="bidirectional", first_branch="-", min_deg=-6, max_deg=6).controller()
    start = ctl.next_step()
    assert start is not None and start.approach_deg == -3
    ctl.end_branch("-")
    nxt = ctl.next_step()
    assert nxt is not None and nxt.tilt_deg == 3 and nxt.approach_deg is None


def test_resume_after_an_index() -> None:
    scheme = TiltScheme(min_deg=-60, max_deg=60, step_deg=3, group_size=2)
    assert tilts(scheme.remaining_after(36)) == [57, 60, -57, -60]
    assert tilts(scheme.remaining_after(36, ended_branches=["+"])) == [-57, -60]
    ctl = scheme.controller(resume_after=36, ended_branches=["-"])
    first = ctl.next_step()
    # The stage position is unknown on resume: approach from below.
    assert first is not None and first.tilt_deg == 57 and first.approach_deg == 54
    assert tilts(list(ctl)) == [60]


# ---- properties ---------------------------------------------------------------------------

STEPS = st.sampled_from([1.0, 2.0, 2.5, 3.0, 4.0, 5.0])


@st.composite
def ranges(draw: st.DrawFn) -> tuple[float, float, float, float, int]:
    step = draw(STEPS)
    start = draw(st.integers(-8, 8)) * step
    up = draw(st.integers(0, 25)) * step + draw(st.sampled_from([0.0, 0.4, 0.9])) * step
    down = draw(st.integers(0, 25)) * step + draw(st.sampled_from([0.0, 0.3, 0.7])) * step
    group = draw(st.integers(1, 5))
    return start, start - down, start + up, step, group


def final_moves_are_positive(steps: list[TiltStep]) -> bool:
    here: float | None = None
    for s in steps:
        if s.approach_deg is not None:
            if not s.approach_deg < s.tilt_deg:
                return False
        elif here is None or not here < s.tilt_deg:
            return False
        here = s.tilt_deg
    return True


@settings(max_examples=300, deadline=None)
@given(ranges(), st.booleans())
def test_dose_symmetric_properties(r: tuple[float, float, float, float, int], slow: bool) -> None:
    start, low, high, step, group = r
    steps = dose_symmetric(start, low, high, step, group, slow_tilt=slow)
    angles = tilts(steps)
    n_plus = math.floor((high - start) / step + 1e-9)
    n_minus = math.floor((start - low) / step + 1e-9)
    assert len(steps) == 1 + n_plus + n_minus  # count formula
    assert len(set(angles)) == len(angles)  # each angle once
    assert all(low - 1e-9 <= a <= high + 1e-9 for a in angles)  # all within range
    assert angles[0] == start and steps[0].branch == "start"
    for s in steps[1:]:
        assert s.tilt_deg == pytest.approx(
            start + (1 if s.branch == "+" else -1) * s.branch_step * step
        )
    if n_plus:
        assert steps[1].branch == "+"  # positive first
    # group structure: g per branch per group, fewer only in the branch's last group; within a
    # group the + steps come before the − steps
    for branch, n in (("+", n_plus), ("-", n_minus)):
        groups = [s.group for s in steps if s.branch == branch]
        for g in set(groups):
            expected = group if g < max(groups) else n - group * (max(groups) - 1)
            assert groups.count(g) == expected
    key = [(s.group, s.branch == "-", s.branch_step) for s in steps[1:]]
    assert key == sorted(key)
    assert final_moves_are_positive(steps)


@settings(max_examples=200, deadline=None)
@given(ranges(), st.sampled_from(["+", "-"]))
def test_bidirectional_properties(r: tuple[float, float, float, float, int], first: str) -> None:
    start, low, high, step, _ = r
    steps = bidirectional(start, low, high, step, first)  # type: ignore[arg-type]
    angles = tilts(steps)
    assert len(set(angles)) == len(angles)
    assert sorted(angles) == sorted(tilts(dose_symmetric(start, low, high, step, 1)))
    assert final_moves_are_positive(steps)


@settings(max_examples=200, deadline=None)
@given(ranges(), st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["+", "-"])), max_size=3))
def test_controller_properties(
    r: tuple[float, float, float, float, int], ends: list[tuple[int, str]]
) -> None:
    start, low, high, step, group = r
    steps = dose_symmetric(start, low, high, step, group)
    ctl = TiltController(steps, step_deg=step)
    handed: list[TiltStep] = []
    ended: set[str] = set()
    while (s := ctl.next_step()) is not None:
        assert s.branch not in ended
        handed.append(s)
        for at, branch in ends:
            if at == len(handed):
                ctl.end_branch(branch)  # type: ignore[arg-type]
                ended.add(branch)
    assert final_moves_are_positive(handed)
    assert sorted(s.index for s in handed + ctl.skipped) == list(range(len(steps)))
    assert all(s.branch in ended for s in ctl.skipped)
    if not ended:
        assert tilts(handed) == tilts(steps)


@given(st.floats(-45, 45), st.floats(-180, 180), st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]))
def test_auto_start_tilt_properties(pretilt: float, rotation: float, step: float) -> None:
    alpha = auto_start_tilt_deg(pretilt, rotation, step)
    exact = -math.degrees(
        math.atan(math.tan(math.radians(pretilt)) * math.cos(math.radians(rotation)))
    )
    assert alpha / step == pytest.approx(round(alpha / step))
    assert abs(alpha - exact) <= step / 2 + 1e-9
