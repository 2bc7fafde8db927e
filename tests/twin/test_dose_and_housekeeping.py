"""Dose bookkeeping, measurements and housekeeping of the twin, against its ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from twin_helpers import QUIET_STAGE, small_config

from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinMicroscope


def _specimen_point(scope: TwinMicroscope, x_um: float, y_um: float) -> tuple[float, float, float]:
    z = float(scope.specimen.surface_height_um(np.array(x_um), np.array(y_um)))
    return (x_um, y_um, z)


@pytest.mark.parametrize("tilt_deg", [0.0, 60.0])
def test_neighbour_beams_dose_targets_inside_the_stretched_ellipse(tilt_deg: float) -> None:
    config = small_config(
        41, size=128, stage=QUIET_STAGE, specimen={"kind": "lamella", "pretilt_deg": 0.0}
    )
    scope = TwinMicroscope(config)
    scope.stage.tilt_to(tilt_deg)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    truth = scope.ground_truth.exposure(image.exposure_id)
    centre = truth.specimen_centre_um
    radius_um = scope.optics.preset(LowDoseArea.RECORD).beam_diameter_um / 2  # 0.75 µm
    across = _specimen_point(scope, centre[0], centre[1] + 1.2)  # across the tilt axis
    along = _specimen_point(scope, centre[0] + 1.2, centre[1])  # along the tilt axis
    half = 0.05
    dose_across = scope.ground_truth.dose_received(across, half)
    dose_along = scope.ground_truth.dose_received(along, half)
    own = scope.ground_truth.dose_received(centre, half)
    assert own.intended_e_a2 == pytest.approx(truth.dose_e_a2)
    assert dose_along.total_e_a2 == 0.0  # 1.2 µm along the axis is outside a 0.75 µm beam
    stretched = 1.2 * math.cos(math.radians(tilt_deg)) < radius_um
    if stretched:  # on the specimen the beam reaches 0.75 / cos 60° = 1.5 µm across the axis
        assert dose_across.unintended_e_a2 == pytest.approx(truth.dose_e_a2)
        assert dose_across.intended_e_a2 == 0.0
    else:
        assert dose_across.total_e_a2 == 0.0


def test_partial_overlap_books_a_fraction_of_the_dose() -> None:
    scope = TwinMicroscope(small_config(42, size=128, stage=QUIET_STAGE))
    image = scope.camera.acquire(LowDoseArea.RECORD)
    truth = scope.ground_truth.exposure(image.exposure_id)
    centre = truth.specimen_centre_um
    edge = _specimen_point(scope, centre[0] + 0.75, centre[1])  # area straddles the beam edge
    received = scope.ground_truth.dose_received(edge, 0.2, samples=21)
    assert 0.3 * truth.dose_e_a2 < received.total_e_a2 < 0.7 * truth.dose_e_a2


def test_autofocus_and_eucentricity_are_accurate_and_cost_dose_and_time() -> None:
    scope = TwinMicroscope(small_config(43, size=128, stage=QUIET_STAGE))
    height_before = abs(scope.true_pose().to_lab(np.zeros(3))[2])
    t0 = scope.clock.now_s()
    scope.measurements.eucentricity()
    scope.measurements.eucentricity(fine=True)
    assert scope.clock.now_s() - t0 > 100  # rough 30 s + fine 90 s and their exposures
    scope.optics.set_focus_um(-3.0)
    errors = []
    for _ in range(8):
        measured = scope.measurements.measure_defocus_um()
        focus_truth = [t for t in scope.ground_truth.exposures if t.area == "Focus"][-1].defocus_um
        errors.append(measured - focus_truth)
    assert np.std(errors) < 0.1 and abs(np.mean(errors)) < 0.15
    scope.measurements.autofocus(-4.0)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    truth = scope.ground_truth.exposure(image.exposure_id)
    assert truth.defocus_um == pytest.approx(-4.0, abs=0.3)
    assert height_before > 0.5 or abs(truth.pose.to_lab(np.zeros(3))[2]) < 0.5
    focus_dose = sum(t.dose_e_a2 for t in scope.ground_truth.exposures if t.area == "Focus")
    assert focus_dose > 0


def test_dewar_refill_is_waited_out_on_the_simulated_clock() -> None:
    config = small_config(
        44, size=128, housekeeping={"dewar_first_fill_s": 100.0, "dewar_refill_duration_s": 600.0}
    )
    scope = TwinMicroscope(config)
    assert not scope.housekeeping.dewar_status().filling
    scope.stage.move_to(x_um=200.0)  # takes several seconds
    scope.clock.advance(120.0 - scope.clock.now_s())  # a shared clock may be advanced by others
    status = scope.housekeeping.dewar_status()
    assert status.filling and 0 < status.seconds_left_in_fill <= 600
    waited = scope.housekeeping.wait_for_dewar()
    assert waited == pytest.approx(status.seconds_left_in_fill, abs=0.2)
    assert not scope.housekeeping.dewar_status().filling
    assert scope.housekeeping.dewar_status().seconds_until_next_fill > 3 * 3600


def test_a_forced_refill_fault_starts_a_fill() -> None:
    config = small_config(
        45,
        size=128,
        faults=[{"kind": "dewar_refill", "at_time_s": 10.0}],
        housekeeping={"dewar_first_fill_s": 1e6},
    )
    scope = TwinMicroscope(config)
    scope.stage.tilt_to(30.0)
    scope.stage.tilt_to(-30.0)
    scope.stage.move_to(x_um=300.0)
    scope.camera.acquire(LowDoseArea.RECORD)
    assert scope.housekeeping.dewar_status().filling


def test_feg_decay_and_zlp_drift_dim_the_image_until_serviced() -> None:
    config = small_config(
        46,
        size=128,
        optics={"zlp_drift_ev_per_h": 40.0},
        housekeeping={
            "feg_flash_interval_s": 3600.0,
            "feg_decay_per_h": 0.1,
            "dewar_first_fill_s": 1e6,
        },
        specimen={
            "kind": "lamella",
            "particles": {"density_per_um3": 0.0},
            "crowding": {"density_per_um3": 0.0},
        },
    )
    scope = TwinMicroscope(config)
    scope.housekeeping.flash_feg()
    scope.housekeeping.refine_zlp()
    fresh = scope.camera.acquire(LowDoseArea.RECORD).mean_counts
    scope.clock.advance(0.3 * 3600)  # the ZLP drifts 12 eV: out of the 20 eV slit's half-width
    drifted = scope.camera.acquire(LowDoseArea.RECORD).mean_counts
    assert drifted < 0.2 * fresh
    scope.housekeeping.refine_zlp()
    refined = scope.camera.acquire(LowDoseArea.RECORD).mean_counts
    assert refined == pytest.approx(fresh * 0.9**0.3, rel=0.05)
    assert not scope.housekeeping.flash_advised()
    scope.clock.advance(3600.0)
    assert scope.housekeeping.flash_advised()
    scope.housekeeping.flash_feg()
    scope.housekeeping.refine_zlp()
    assert not scope.housekeeping.flash_advised()
    assert scope.camera.acquire(LowDoseArea.RECORD).mean_counts == pytest.approx(fresh, rel=0.05)
