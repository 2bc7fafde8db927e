"""Hole lattices and patterns on the twin's holey films, against its ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from targeting_helpers import NO_DRIFT, nm_from_nearest_hole, twin

from tomopilot.instrument import LowDoseArea
from tomopilot.targeting import (
    LatticeNotFoundError,
    find_lattice,
    hole_pattern,
    refine_vectors_at_runtime,
)

FILMS = {"R1.2/1.3": (1.2, 1.3), "R2/1": (2.0, 1.0)}


def _errors(found: tuple[float, float], truth: list[np.ndarray]) -> tuple[float, float]:
    """(length error %, angle error °) of a vector against the closest true lattice vector."""
    v = np.asarray(found)
    best = min(truth, key=lambda t: float(np.hypot(*(v - t))))
    length = 100 * abs(np.hypot(*v) / np.hypot(*best) - 1)
    angle = math.degrees(abs(math.atan2(v[1], v[0]) - math.atan2(best[1], best[0])))
    return length, min(angle, 360 - angle)


@pytest.mark.parametrize("film", FILMS)
@pytest.mark.parametrize("angle", [7.0, -31.0])
def test_lattice_vectors_within_one_percent(film: str, angle: float) -> None:
    diameter, spacing = FILMS[film]
    scope = twin(
        11,
        specimen={
            "kind": "holey_film",
            "hole_diameter_um": diameter,
            "hole_spacing_um": spacing,
            "lattice_angle_deg": angle,
        },
    )
    image = scope.camera.acquire(LowDoseArea.SEARCH)
    lattice = find_lattice(
        image.data,
        scope.camera.specimen_to_camera_matrix(LowDoseArea.SEARCH),
        hole_diameter_um=diameter,
    )
    a, b = scope.specimen.lattice_vectors_um()  # type: ignore[union-attr]
    truth = [a, -a, b, -b]
    assert lattice.method == "autocorrelation" and lattice.n_holes >= 9
    for vector in (lattice.vec_a_um, lattice.vec_b_um):
        length, angle_error = _errors(vector, truth)
        assert length < 1.0 and angle_error < 0.5
    assert lattice.vec_a_um[1] > 0 and lattice.vec_b_um[1] > 0
    assert lattice.vec_a_um[1] >= lattice.vec_b_um[1]


def test_fallback_with_few_holes() -> None:
    scope = twin(
        12,
        specimen={"kind": "holey_film", "lattice_angle_deg": 12.0},
        presets={"view": {"unbinned_pixel_size_a": 16.0}},  # a 6.6 µm View: 4 to 6 holes
    )
    image = scope.camera.acquire(LowDoseArea.VIEW)
    lattice = find_lattice(
        image.data,
        scope.camera.specimen_to_camera_matrix(LowDoseArea.VIEW),
        hole_diameter_um=1.2,
    )
    assert lattice.method.startswith("holes") and 2 <= lattice.n_holes < 9
    a, b = scope.specimen.lattice_vectors_um()  # type: ignore[union-attr]
    for vector in (lattice.vec_a_um, lattice.vec_b_um):
        length, angle_error = _errors(vector, [a, -a, b, -b])
        assert length < 2.0 and angle_error < 1.0
    blank = np.ones((256, 256), np.float32)
    with pytest.raises(LatticeNotFoundError, match="neighbouring hole"):
        find_lattice(blank, np.eye(2) * 50, hole_diameter_um=1.2)
    guessed = find_lattice(blank, np.eye(2) * 50, hole_diameter_um=1.2, neighbour_um=(2.5, 0.2))
    assert guessed.method == "neighbour" and guessed.vec_b_um == (2.5, 0.2)


@pytest.mark.parametrize("film", FILMS)
def test_pattern_targets_land_in_hole_centres(film: str) -> None:
    diameter, spacing = FILMS[film]
    scope = twin(
        13,
        stage=NO_DRIFT,
        specimen={
            "kind": "holey_film",
            "hole_diameter_um": diameter,
            "hole_spacing_um": spacing,
            "lattice_angle_deg": 12.0,
        },
    )
    scope.stage.move_to(x_um=3.0, y_um=2.0)
    pattern = hole_pattern(scope, size=2, hole_diameter_um=diameter)
    assert len(pattern.targets.targets) == 25 and len(pattern.targets.geo_points) == 5
    base_x, base_y = scope.optics.image_shift_um()
    distances = []
    for target in pattern.targets.targets:
        scope.optics.set_image_shift_um(base_x + target.ss_x_um, base_y + target.ss_y_um)
        distances.append(nm_from_nearest_hole(scope, scope.camera.acquire(LowDoseArea.RECORD)))
    assert max(distances) < 50.0
    # the refined vectors absorb the image-shift calibration error (1 % in the twin)
    refined, found = np.hypot(*pattern.vec_a_um), np.hypot(*pattern.lattice.vec_a_um)
    assert refined / found == pytest.approx(1 / 1.01, abs=0.004)


def test_refine_vec_at_run_time() -> None:
    scope = twin(14, stage=NO_DRIFT, specimen={"kind": "holey_film", "lattice_angle_deg": 5.0})
    pattern = hole_pattern(scope, size=1, hole_diameter_um=1.2, refine=False)
    refined, accepted = refine_vectors_at_runtime(scope, pattern.targets, hole_diameter_um=1.2)
    assert accepted
    base_x, base_y = scope.optics.image_shift_um()
    worst = 0.0
    for target in refined.targets:
        scope.optics.set_image_shift_um(base_x + target.ss_x_um, base_y + target.ss_y_um)
        worst = max(worst, nm_from_nearest_hole(scope, scope.camera.acquire(LowDoseArea.RECORD)))
    assert worst < 30.0
    bad = pattern.targets.model_copy(deep=True)
    bad.settings["vecA0"] += 0.7  # far off: refineVec must refuse
    bad.settings["vecB1"] += 0.7
    again, ok = refine_vectors_at_runtime(scope, bad, hole_diameter_um=1.2)
    assert not ok and again == bad
