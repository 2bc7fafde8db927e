"""SerialEM-style positioning on the twin: realign-to-item, reset IS, acquire-to-match, align-to."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from targeting_helpers import beam_offset_nm, twin

from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import FaultSpec
from tomopilot.targeting import (
    MapImage,
    acquire_to_match,
    align_to,
    realign,
    realign_to_item,
    reset_image_shift,
)


def _map_here(scope, area: LowDoseArea = LowDoseArea.VIEW):  # type: ignore[no-untyped-def]
    image = scope.camera.acquire(area)
    centre = scope.ground_truth.exposure(image.exposure_id).specimen_centre_um
    return MapImage.from_exposure(scope, image), centre


@pytest.mark.parametrize("profile", ["autoloader", "side-entry"])
@pytest.mark.parametrize("seed", [1, 2])
def test_realign_to_item_lands_on_the_map_centre(profile: str, seed: int) -> None:
    scope = twin(seed, stage={"profile": profile})
    scope.stage.move_to(x_um=2.0, y_um=-1.5)
    map_image, centre = _map_here(scope)
    scope.stage.move_to(x_um=120.0, y_um=80.0)
    # a sudden 0.8 µm jump on the way back, on top of backlash and lead-screw error
    scope.inject_fault(
        FaultSpec(kind="stage_jump", at_move=scope._core.stage.n_moves + 1, magnitude_um=0.8)
    )
    result = realign_to_item(scope, map_image)
    assert result.converged and result.iterations <= 3
    assert beam_offset_nm(scope, centre) < 20.0
    assert scope.optics.preset(LowDoseArea.VIEW).binning == 8  # Record conditions restored


def test_realign_to_an_item_off_the_map_centre() -> None:
    scope = twin(3)
    map_image, _ = _map_here(scope)
    item = (map_image.centre_um[0] + 0.6, map_image.centre_um[1] - 0.4)
    scope.stage.move_to(x_um=-40.0, y_um=30.0)
    result = realign_to_item(scope, map_image, item)
    assert result.iterations <= 3
    image = scope.camera.acquire(LowDoseArea.VIEW)
    truth = scope.ground_truth.exposure(image.exposure_id)
    map_truth = scope.ground_truth.exposure(map_image.image.exposure_id)  # type: ignore[union-attr]
    expected = np.array(map_truth.specimen_centre_um[:2]) + np.array([0.6, -0.4])
    assert np.hypot(*(np.array(truth.specimen_centre_um[:2]) - expected)) * 1e3 < 30.0


@pytest.mark.parametrize("profile", ["autoloader", "side-entry"])
def test_whole_positioning_routine(profile: str) -> None:
    scope = twin(4, stage={"profile": profile})
    map_image, centre = _map_here(scope)
    scope.stage.move_to(x_um=60.0, y_um=-50.0)
    first, final = realign(scope, map_image)
    assert first.iterations <= 3 and final.applied
    assert beam_offset_nm(scope, centre) < 20.0
    assert abs(scope.optics.image_shift_um()[0]) < 0.05  # the stage carries the move now


def test_reset_image_shift_moves_the_stage() -> None:
    scope = twin(5, stage={"xy_periodic_error_um": 0.0, "jump_probability": 0.0})
    map_image, centre = _map_here(scope)
    scope.optics.set_image_shift_um(1.2, -0.7)
    stage_before = scope.stage.position()
    moved = reset_image_shift(scope)
    after = scope.stage.position()
    assert moved == pytest.approx((1.2, -0.7))
    assert after.x_um == pytest.approx(stage_before.x_um + 1.2 - 0.025)
    assert scope.optics.image_shift_um() == (0.0, 0.0)
    # the field is where the image shift had put it, to within the IS calibration error
    image = scope.camera.acquire(LowDoseArea.VIEW)
    truth = scope.ground_truth.exposure(image.exposure_id)
    moved_um = np.array(truth.specimen_centre_um[:2]) - np.array(centre[:2])
    assert np.hypot(*(moved_um - [1.2, -0.7])) < 0.05
    del map_image


def test_reset_image_shift_when_tilted_keeps_the_target_defocus() -> None:
    scope = twin(6)
    scope.stage.tilt_to(20.0)
    scope.optics.set_image_shift_um(0.0, 1.0)
    focus = scope.optics.focus_um()
    reset_image_shift(scope)
    assert scope.stage.position().y_um == pytest.approx(1.0 / np.cos(np.radians(20.0)), abs=1e-3)
    assert scope.optics.focus_um() == pytest.approx(focus + np.tan(np.radians(20.0)))


def test_acquire_to_match_uses_the_reference_conditions() -> None:
    scope = twin(7)
    scope.optics.set_preset(
        LowDoseArea.PREVIEW,
        scope.optics.preset(LowDoseArea.PREVIEW).model_copy(
            update={"binning": 1, "exposure_s": 0.2}
        ),
    )
    reference = scope.camera.acquire(LowDoseArea.PREVIEW)
    small = dataclasses.replace(
        reference, data=reference.data[100:300, 50:350], binning=2, exposure_s=0.7
    )
    preset_before = scope.optics.preset(LowDoseArea.PREVIEW)
    image = acquire_to_match(scope, small)
    assert image.data.shape == (200, 300) and image.binning == 2 and image.exposure_s == 0.7
    assert scope.optics.preset(LowDoseArea.PREVIEW) == preset_before


def _darken(scope, image, centre_x_um: float):  # type: ignore[no-untyped-def]
    """Darken a disc of film (centre x given) that moves with the specimen."""
    where = MapImage.from_exposure(scope, image)
    ny, nx = image.data.shape
    rows, cols = np.mgrid[0:ny, 0:nx]
    spec = where.to_specimen(np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1))
    dark = (np.hypot(spec[:, 0] - centre_x_um, spec[:, 1] - 0.4) < 0.8).reshape(ny, nx)
    return dataclasses.replace(image, data=np.where(dark, image.data * 0.05, image.data))


def test_align_to_without_trimming_on_dark_film() -> None:
    scope = twin(8, stage={"jump_probability": 0.0})
    reference = scope.camera.acquire(LowDoseArea.VIEW)
    reference = _darken(scope, reference, -0.6)
    scope.optics.set_image_shift_um(0.3, -0.2)
    image = _darken(scope, scope.camera.acquire(LowDoseArea.VIEW), -0.6)
    result = align_to(scope, reference, image, trim=False, apply=False)
    assert result.correction_um == pytest.approx((-0.3 * 1.01, 0.2 * 1.01), abs=0.02)
    applied = align_to(scope, reference, image, trim=False)
    assert applied.applied and np.hypot(*scope.optics.image_shift_um()) < 0.02


def test_align_to_trims_a_dark_border_fixed_on_the_camera() -> None:
    scope = twin(9, stage={"jump_probability": 0.0})
    reference = scope.camera.acquire(LowDoseArea.VIEW)
    scope.optics.set_image_shift_um(0.25, 0.15)
    image = scope.camera.acquire(LowDoseArea.VIEW)
    shade = np.ones_like(reference.data)
    shade[:, :100] = 0.02  # an aperture edge or shadow: the same pixels in every image
    reference = dataclasses.replace(reference, data=reference.data * shade)
    image = dataclasses.replace(image, data=image.data * shade)
    result = align_to(scope, reference, image, trim=True, apply=False)
    assert result.correction_um == pytest.approx((-0.25 * 1.01, -0.15 * 1.01), abs=0.02)
