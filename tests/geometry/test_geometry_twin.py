"""Geometry measured on the twin, against its ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_helpers import QUIET, twin

from tomopilot.geometry import (
    PlaneFit,
    apply_tilt_axis_offset,
    eucentricity,
    measure_geometry,
    measure_tilt_axis_offset,
)
from tomopilot.instrument import LowDoseArea

GEO_POINTS = [(0.0, 0.0), (5.0, 4.0), (-5.0, 4.0), (-5.0, -4.0), (5.0, -4.0)]
LAMELLAE = [(-15.0, 0.0), (-8.0, 12.0), (-3.0, -20.0), (6.0, -10.0), (11.0, 18.0), (15.0, 5.0)]


@pytest.mark.parametrize(("pretilt", "rotation"), LAMELLAE)
def test_pretilt_and_rotation_from_five_geo_points(pretilt: float, rotation: float) -> None:
    scope = twin(
        int(pretilt * 10 + rotation) % 1000,
        specimen={"kind": "lamella", "pretilt_deg": pretilt, "rotation_deg": rotation},
    )
    result = measure_geometry(scope, GEO_POINTS)
    fit = result.fit
    assert isinstance(fit, PlaneFit) and fit.n_points == 5 and not result.skipped
    assert abs(fit.pretilt_deg - pretilt) < 1.0
    if abs(pretilt) >= 5.0:  # below a few degrees the rotation is undetermined
        assert abs(fit.rotation_deg - rotation) < 5.0
    assert not fit.warnings
    # the Focus preset and the image shift are restored
    assert scope.optics.preset(LowDoseArea.FOCUS).offset_along_axis_um == 3.0
    assert scope.optics.image_shift_um() == (0.0, 0.0)


def test_geo_points_on_targets_are_skipped() -> None:
    scope = twin(5, specimen={"kind": "lamella", "pretilt_deg": 9.0})
    points = [*GEO_POINTS, (1.0, 1.0), (0.0, 40.0)]
    result = measure_geometry(scope, points, targets_um=[(1.0, 1.3)])
    reasons = dict(result.skipped)
    assert "expose a target" in reasons[(1.0, 1.0)]
    assert "image-shift limit" in reasons[(0.0, 40.0)]
    assert result.fit.n_points == 5
    assert len(scope.ground_truth.exposures) == 10  # two Focus exposures per reading, no others


def _effective_offset(scope, tilts: list[float]) -> float:  # type: ignore[no-untyped-def]
    """The axis a small tilt range sees: the mechanical one shifted by the run-out's z slope."""
    t = np.radians(tilts)
    runout_z = np.array([scope.true_runout_um(a)[2] for a in tilts])
    design = np.stack([np.tan(t), 1 / np.cos(t) - 1, np.ones_like(t)], axis=1)
    slope = np.linalg.lstsq(design, runout_z, rcond=None)[0][0]
    return float(scope.true_tilt_axis_offset_um(1.0) - slope)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tilt_axis_offset_quiet_stage(seed: int) -> None:
    stage = {**QUIET, "runout_x_um": 0.0, "runout_y_um": 0.0, "runout_z_um": 0.0}
    scope = twin(seed, stage=stage, specimen={"kind": "holey_film"})
    result = measure_tilt_axis_offset(scope)
    assert abs(result.offset_um - scope.true_tilt_axis_offset_um(1.0)) < 0.1
    assert scope.stage.position().tilt_deg == 0.0
    apply_tilt_axis_offset(scope, result)
    assert scope.stage.tilt_axis_offset_um == result.offset_um


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tilt_axis_offset_with_runout(seed: int) -> None:
    """With run-out the small tilt range sees the axis shifted by the run-out's z slope."""
    scope = twin(seed, stage=QUIET, specimen={"kind": "holey_film"})
    result = measure_tilt_axis_offset(scope)
    assert abs(result.offset_um - _effective_offset(scope, list(result.tilts_deg))) < 0.1


def test_side_entry_branches_differ() -> None:
    stage = {"profile": "side-entry", **QUIET, "runout_z_um": 0.0, "runout_y_um": 0.0}
    scope = twin(4, stage=stage, specimen={"kind": "holey_film"})
    result = measure_tilt_axis_offset(scope, max_tilt_deg=20.0)
    truth_neg, truth_pos = scope.true_tilt_axis_offset_um(-1.0), scope.true_tilt_axis_offset_um(1.0)
    assert abs(result.negative_branch_um - truth_neg) < 0.4  # half the data each
    assert abs(result.positive_branch_um - truth_pos) < 0.4
    assert abs(result.offset_um - (truth_neg + truth_pos) / 2) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rough_then_fine_eucentricity(seed: int) -> None:
    scope = twin(seed, specimen={"kind": "lamella", "pretilt_deg": 0.0})
    start = abs(scope.stage.position().z_um - scope.true_eucentric_z_um())
    rough = eucentricity(scope)
    after_rough = abs(scope.stage.position().z_um - scope.true_eucentric_z_um())
    fine = eucentricity(scope, fine=True)
    after_fine = abs(scope.stage.position().z_um - scope.true_eucentric_z_um())
    assert rough.rounds <= 3 and fine.rounds <= 3
    assert after_rough < max(0.7, 0.3 * start)
    assert after_fine < 0.35
    assert math.isfinite(fine.z_change_um)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_goniometer_jump_moves_the_axis_the_measurement_sees(seed: int) -> None:
    """A lab-frame jump moves the rotating assembly, axis included: the measured offset follows
    the axis the specimen really rotates about, not the mechanical one."""
    stage = {**QUIET, "runout_x_um": 0.0, "runout_y_um": 0.0, "runout_z_um": 0.0}
    scope = twin(
        seed, stage={**stage, "branch_start_jump_um": 0.6}, specimen={"kind": "holey_film"}
    )
    result = measure_tilt_axis_offset(scope)  # the sweep starts with a reversal: the jump
    effective = scope.true_rotation_axis_offset_um(1.0)
    mechanical = scope.true_tilt_axis_offset_um(1.0)
    assert abs(effective - mechanical) > 0.15  # the jump moved the axis
    assert abs(result.offset_um - effective) < 0.1
