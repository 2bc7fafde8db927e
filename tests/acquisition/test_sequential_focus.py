"""The sequential strategy's focus against the twin's truth: the defocus–tilt table and the
target's own height (prepare()'s focus), on a lamella whose plane lies off the tilt axis."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from acq_helpers import calm_stage

from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.setup.autofocus_scale import autofocus_with_scale
from tomopilot.acquisition.strategies import sequential as sequential_module
from tomopilot.acquisition.strategies.base import TargetInfo, Toolkit
from tomopilot.acquisition.strategies.sequential import SequentialStrategy
from tomopilot.acquisition.strategies.sequential_focus import measure_defocus_tilt_table
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.ground_truth import ExposureTruth


def _lamella(seed: int, height_um: float) -> TwinMicroscope:
    """A 10° lamella at eucentric height, then raised by ``height_um`` (the eucentric
    routine's error): its plane lies off the tilt axis, which lies 1 µm across the optic
    axis (the autoloader's offset); run-out 0.1 µm."""
    stage = calm_stage(runout_x_um=0.1, runout_y_um=0.1, runout_z_um=0.1)
    scope = TwinMicroscope(
        TwinConfig.model_validate(
            {
                "seed": seed,
                "specimen": {"kind": "lamella"},
                "stage": stage,
                "camera": {"render": False},
                "presets": {"record": {"camera_area_px": [1024, 1024], "binning": 8}},
            }
        )
    )
    scope.measurements.eucentricity(fine=True)
    scope.stage.move_by(dz_um=height_um)
    return scope


def _truth(scope: TwinMicroscope) -> ExposureTruth:
    return scope.ground_truth.exposures[-1]


def _point_defocus_um(exposure: ExposureTruth, point: Any) -> float:
    """The true defocus at a specimen point (the lens focus plus its depth in the lab)."""
    return float(exposure.focus_um + exposure.pose.to_lab(np.asarray(point))[2])


@pytest.mark.parametrize(("seed", "height_um", "across_um"), [(1, 0.8, 0.6), (2, -0.6, -0.9)])
def test_the_focus_keeps_a_lamella_target_at_its_defocus_up_to_60_degrees(
    seed: int, height_um: float, across_um: float
) -> None:
    """The set-up autofocuses and the strategy measures its defocus–tilt table at the Focus
    area at image shift 0; the start and + branch then follow a target ``across_um`` across
    the axis from there (its positions told exactly, as a perfect tracking would), Records at
    the focus prepare() asks for. The target's true defocus stays within 0.1 µm of its
    −4 µm from the start to 60° (RMS under 0.06 µm).

    Before, the table's odd part was put on every target: a table measured at a fixed place
    in the lab on a tilted plane off the axis follows d/cos(θ+p) + u·tan(θ+p), not the
    target's u·sin θ + z·(cos θ − 1), and the target's own height was left out: 0.3-1.6 µm
    off at 60° here."""
    scope = _lamella(seed, height_um)
    settings = AcquisitionSettings(
        min_tilt_deg=-60, max_tilt_deg=60, step_deg=3.0, pretilt_deg=10.0
    )
    options = SequentialSettings(drift_check="off", track_with_view=False, backlash_release=False)
    strategy = SequentialStrategy(settings, options)
    toolkit = Toolkit(scope, settings)
    start_is = (0.0, across_um)
    scope.stage.tilt_to(0.0)
    # The set-up's autofocus, at image shift (0, 0): the target lies across_um·tan(10°) off
    # that level (the engine's recentring moves a target as far).
    scope.optics.set_image_shift_um(0.0, 0.0)
    toolkit.autofocus_scale = autofocus_with_scale(scope, -4.0)
    focus0 = scope.optics.focus_um()
    target = TargetInfo(index=1, ss_um=(0.0, 0.0), defocus_um=-4.0, skip=False)
    strategy.setup([target], 0.0, focus0, {1: start_is}, toolkit, {})
    assert strategy.calibration is not None  # measured at the set-up's image shift (0, 0)

    def record(step: TiltStep) -> tuple[ExposureTruth, Any]:
        request = strategy.prepare(1, step)
        scope.optics.set_image_shift_um(*request.image_shift_um)
        assert request.focus_um is not None
        scope.optics.set_focus_um(request.focus_um)
        scope.camera.acquire(LowDoseArea.RECORD)
        return _truth(scope), request

    start = TiltStep(0.0, "start", 0, 0, None, 0)
    exposure, request = record(start)
    point = exposure.specimen_centre_um
    errors = [_point_defocus_um(exposure, point) + 4.0]
    strategy.targets[1].predictor.add_position(0, 0.0, *start_is)
    for k, tilt in enumerate(np.arange(3.0, 61.0, 3.0), start=1):
        step = TiltStep(float(tilt), "+", k, 1, None, k)
        scope.stage.tilt_to(float(tilt))
        exposure, request = record(step)
        errors.append(_point_defocus_um(exposure, point) + 4.0)
        # Where the target truly was (the tracking's measurement, without its error).
        dx, dy = np.array(exposure.offset_nm(point)) / 1e3
        ix, iy = request.image_shift_um
        strategy.targets[1].predictor.add_position(0, float(tilt), ix + dx, iy + dy)
    errors_um = np.array(errors)
    assert np.max(np.abs(errors_um)) < 0.1, errors_um.round(3)
    assert np.sqrt(np.mean(errors_um**2)) < 0.06, errors_um.round(3)


def test_the_focus_area_is_read_where_the_view_found_a_target_the_stage_slid_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run-away stage: at 30° the stage slides 1.5 µm across the axis (no prediction can
    know it), and the tracking View (here a perfect one: where the twin's truth says the
    target is) finds the target there. The Focus-area reading (focus_every) is taken at the
    View's position, beside the target, so every Record stays within 0.15 µm of its −4 µm.

    Read at the predicted image shift instead (before the View), it read the tilted lamella
    where the target no longer was: the Record at the slide 1.04 µm off (the autoloader
    bench's run-away branches were 0.75-0.80 µm RMS so)."""
    scope = _lamella(1, 0.8)
    settings = AcquisitionSettings(
        min_tilt_deg=-60, max_tilt_deg=60, step_deg=6.0, pretilt_deg=10.0
    )
    options = SequentialSettings(drift_check="off", track_with_view=True, backlash_release=False)
    strategy = SequentialStrategy(settings, options)
    toolkit = Toolkit(scope, settings)
    scope.stage.tilt_to(0.0)
    scope.optics.set_image_shift_um(0.0, 0.0)
    toolkit.autofocus_scale = autofocus_with_scale(scope, -4.0)
    target = TargetInfo(index=1, ss_um=(0.0, 0.0), defocus_um=-4.0, skip=False)
    strategy.setup([target], 0.0, scope.optics.focus_um(), {1: (0.0, 0.0)}, toolkit, {})
    point: list[Any] = []

    def perfect_view(
        toolkit: Toolkit, images: Any, t: Any, step: TiltStep, predicted: Any, fraction: float
    ) -> tuple[float, float]:
        scope.optics.set_image_shift_um(*predicted)
        scope.camera.acquire(LowDoseArea.VIEW)
        if not point:
            return predicted
        dx, dy = np.array(_truth(scope).offset_nm(point[0])) / 1e3
        return (predicted[0] + dx, predicted[1] + dy)

    monkeypatch.setattr(sequential_module, "track_with_view", perfect_view)
    errors = []
    for k, tilt in enumerate(np.arange(0.0, 61.0, 6.0)):
        step = TiltStep(float(tilt), "+" if k else "start", k, 1 if k else 0, None, k)
        scope.stage.tilt_to(float(tilt))
        if tilt == 30.0:
            scope.stage.move_by(dy_um=1.5)  # the run-away slide
        request = strategy.prepare(1, step)
        scope.optics.set_image_shift_um(*request.image_shift_um)
        assert request.focus_um is not None
        scope.optics.set_focus_um(request.focus_um)
        scope.camera.acquire(LowDoseArea.RECORD)
        exposure = _truth(scope)
        if not point:
            point.append(exposure.specimen_centre_um)
        errors.append(_point_defocus_um(exposure, point[0]) + 4.0)
        dx, dy = np.array(exposure.offset_nm(point[0])) / 1e3
        ix, iy = request.image_shift_um
        strategy.targets[1].predictor.add_position(0, float(tilt), ix + dx, iy + dy)
    errors_um = np.array(errors)
    assert np.max(np.abs(errors_um)) < 0.15, errors_um.round(3)


def test_the_defocus_tilt_table_reaches_the_ends_of_a_60_degree_stage() -> None:
    """A side-entry holder's ±60° travel and a −60…+60° series: the table is read at both ends
    (its approach from below at −60° cannot go to −61°, beyond the travel: the set-up used to
    stop there with a StageLimitError), and each value is the focus change the twin's truth
    gives for the Focus-area exposures read at that tilt, to a reading's noise and the
    autofocus's 2 % scale."""
    twin = TwinMicroscope(
        TwinConfig.model_validate({"seed": 2, "stage": {**calm_stage(), "tilt_limit_deg": 60.0}})
    )
    toolkit = Toolkit(twin, AcquisitionSettings())
    table = measure_defocus_tilt_table(toolkit, [-60.0, -30.0, 30.0, 60.0], 0.0)
    assert sorted(table) == [-60.0, -30.0, 0.0, 30.0, 60.0]
    assert twin.stage.position().tilt_deg == pytest.approx(0.0, abs=0.1)
    read: dict[float, list[float]] = {}
    for e in twin.ground_truth.exposures:
        read.setdefault(round(e.tilt_deg), []).append(e.defocus_um)
    truth = {t: float(np.mean(v)) for t, v in read.items()}
    for tilt, change in table.items():
        expected = truth[round(tilt)] - truth[0]
        assert change == pytest.approx(expected, abs=0.06 + 0.03 * abs(expected)), (tilt, truth)
