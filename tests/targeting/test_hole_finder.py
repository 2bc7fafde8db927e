"""The hole finder on Square-preset images of the twin's whole grid, against its hole truth."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.instrument.presets import PresetManager
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.specimen import GridSpecimen, SquareTruth
from tomopilot.targeting.hole_finder import (
    HoleFinding,
    _square_lattice,
    choose_targets,
    find_holes_in_square,
)
from tomopilot.targeting.map_image import MapImage

GRID: dict[str, Any] = {"kind": "grid", "mesh_diameter_um": 420.0, "broken_fraction": 0.2}
# Square preset: Search at about a quarter of its magnification, the table's 510×: 1024² at
# 847 Å (an 87 µm field).
PRESETS = {"search": {"camera_area_px": [4096, 4096], "binning": 4}}
QUIET = {"drift_nm_s": 0.0, "drift_floor_nm_s": 0.0, "jump_probability": 0.0}
MATCH_UM = 0.5  # a found hole within half a hole radius of a true one is that hole


@pytest.fixture(scope="module")
def looked_at() -> list[tuple[SquareTruth, MapImage, HoleFinding, GridSpecimen]]:
    scope = TwinMicroscope(
        TwinConfig.model_validate({"seed": 3, "stage": QUIET, "specimen": GRID, "presets": PRESETS})
    )
    grid = scope.specimen
    assert isinstance(grid, GridSpecimen)
    presets = PresetManager.from_scope(scope)
    whole = [s for s in grid.squares() if s.open_fraction == 1.0]
    picks = [next(s for s in whole if s.state == st) for st in ("good", "broken")]
    out = []
    for square in picks:
        scope.stage.move_to(x_um=square.centre_um[0], y_um=square.centre_um[1])
        image = presets.acquire("Square")
        # Compared in the specimen frame: the map is centred where the field truly was (in use
        # the stage's axis offset is common to every map and target and cancels).
        truth = scope.ground_truth.exposure(image.exposure_id)
        matrix = scope.camera.specimen_to_camera_matrix(image.area)
        square_map = MapImage(image.data, truth.specimen_centre_um[:2], matrix)
        out.append((square, square_map, find_holes_in_square(square_map, 2.0, pitch_um=3.0), grid))
    return out


def _score(
    square_map: MapImage, finding: HoleFinding, grid: GridSpecimen
) -> tuple[int, int, int, float]:
    """(true intact holes in view, of them found, false holes, median position error µm)."""
    cx, cy = square_map.centre_um
    truth = grid.holes((cx - 45, cx + 45, cy - 45, cy + 45))
    px = square_map.to_pixels(truth.centres_um)
    ny, nx = square_map.data.shape
    r = finding.radius_px
    in_view = (px[:, 0] > r) & (px[:, 0] < nx - r) & (px[:, 1] > r) & (px[:, 1] < ny - r)
    centres, intact = truth.centres_um[in_view], truth.intact[in_view]
    found = np.array([h.centre_um for h in finding.intact]).reshape(-1, 2)
    distance = np.hypot(*(found[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    nearest, gap = distance.argmin(axis=1), distance.min(axis=1)
    hit = (gap < MATCH_UM) & intact[nearest]
    return int(intact.sum()), len(set(nearest[hit])), int(np.sum(~hit)), float(np.median(gap[hit]))


def test_the_finder_finds_the_intact_holes_of_a_square_and_few_false_ones(
    looked_at: list[tuple[SquareTruth, MapImage, HoleFinding, GridSpecimen]],
) -> None:
    totals = np.zeros(3)
    for square, square_map, finding, grid in looked_at:
        n_true, n_found, n_false, error_um = _score(square_map, finding, grid)
        recall, false_rate = n_found / n_true, n_false / max(1, len(finding.intact))
        assert recall >= 0.95, (square.state, recall)
        assert error_um < 0.085  # centres to better than a pixel (85 nm)
        if square.state == "good":
            assert n_true > 300  # a whole opening: ~20 × 20 holes less those at the bars
            assert false_rate <= 0.02, false_rate
        else:
            assert n_true < 300 and finding.dropped["torn film"] > 50
        totals += (n_true, n_found, n_false)
    assert totals[2] / totals[1] <= 0.02  # false holes over both squares


def test_chosen_targets_are_intact_holes_apart_with_focus_on_carbon_along_the_axis(
    looked_at: list[tuple[SquareTruth, MapImage, HoleFinding, GridSpecimen]],
) -> None:
    _, square_map, finding, grid = looked_at[0]
    targets = choose_targets(finding, 2.0, count=6, min_separation_um=6.0)
    assert len(targets) == 6
    cx, cy = square_map.centre_um
    truth = grid.holes((cx - 45, cx + 45, cy - 45, cy + 45))
    for k, target in enumerate(targets):
        gap = np.hypot(*(truth.centres_um - target.centre_um).T)
        assert gap.min() < MATCH_UM and truth.intact[int(gap.argmin())]
        # Focus: on the tilt axis (x), 2-5 µm away, on carbon (clear of every hole).
        dx, dy = np.subtract(target.focus_um, target.centre_um)
        assert abs(dy) < 1e-9 and 2.0 <= abs(dx) <= 5.0
        focus_gap = np.hypot(*(truth.centres_um - target.focus_um).T).min()
        assert focus_gap > grid.config.hole_diameter_um / 2
        cols = grid.columns(np.array([target.focus_um[0]]), np.array([target.focus_um[1]]))
        assert cols.carbon_nm[0] > 0
        for other in targets[:k]:
            assert math.dist(target.centre_um, other.centre_um) >= 6.0


@settings(max_examples=40, deadline=None)
@given(
    angle_deg=st.floats(-45.0, 45.0),
    pitch_px=st.floats(10.0, 40.0),
    origin=st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 50.0)),
    missing=st.floats(0.0, 0.4),
    seed=st.integers(0, 10_000),
)
def test_the_lattice_fit_recovers_a_square_lattice_from_imperfect_detections(
    angle_deg: float,
    pitch_px: float,
    origin: tuple[float, float],
    missing: float,
    seed: int,
) -> None:
    """Holes on a turned square lattice, some missing, 0.3 px of jitter and 5 % stray
    detections: the fitted lattice puts every true hole within a pixel of a lattice point."""
    rng = np.random.default_rng(seed)
    a = math.radians(angle_deg)
    basis = pitch_px * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    idx = np.stack(np.meshgrid(np.arange(-12, 13), np.arange(-12, 13)), -1).reshape(-1, 2)
    true = idx @ basis.T + np.asarray(origin) + 500.0
    true = true[(true >= 0).all(axis=1) & (true <= 1000).all(axis=1)]
    seen = true[rng.random(len(true)) >= missing]
    seen = seen + rng.normal(0, 0.3, seen.shape)
    stray = rng.uniform(0, 1000, (max(1, len(seen) // 20), 2))
    fitted = _square_lattice(np.vstack([seen, stray]), pitch_px * rng.uniform(0.97, 1.03))
    assert fitted is not None
    fit_origin, fit_basis = fitted
    frac = (true - fit_origin) @ np.linalg.inv(fit_basis).T
    residual = np.hypot(*((true - fit_origin) - np.round(frac) @ fit_basis.T).T)
    assert residual.max() < 1.0, residual.max()


def _square_finding(
    seed: int, hole_um: float, spacing_um: float, state: str
) -> tuple[int, int, int, int, float]:
    """One square of the given state on a grid of that film: (true intact holes, found, false,
    holes called intact, median centre error µm)."""
    film = {"hole_diameter_um": hole_um, "hole_spacing_um": spacing_um}
    scope = TwinMicroscope(
        TwinConfig.model_validate(
            {"seed": seed, "stage": QUIET, "specimen": {**GRID, **film}, "presets": PRESETS}
        )
    )
    grid = scope.specimen
    assert isinstance(grid, GridSpecimen)
    square = next(s for s in grid.squares() if s.open_fraction == 1.0 and s.state == state)
    scope.stage.move_to(x_um=square.centre_um[0], y_um=square.centre_um[1])
    image = PresetManager.from_scope(scope).acquire("Square")
    truth = scope.ground_truth.exposure(image.exposure_id)
    matrix = scope.camera.specimen_to_camera_matrix(image.area)
    square_map = MapImage(image.data, truth.specimen_centre_um[:2], matrix)
    finding = find_holes_in_square(square_map, hole_um, pitch_um=hole_um + spacing_um)
    n_true, n_found, n_false, error_um = _score(square_map, finding, grid)
    return n_true, n_found, n_false, len(finding.intact), error_um


def test_small_holes_of_a_finer_film_are_found_too() -> None:
    """R1.2/1.3 film (1.2 µm holes, 14 px at 847 Å) besides R2/1, other grids (seeds) and a
    broken square: the disc/ring contrast of small holes is lower than R2/1's, so the torn-film
    test scales with the square's own hole contrast. The twin renders these holes on 0.17 µm
    cells (it used to sample 0.5 µm cells, and hole contrast then varied 3-17 % with where a
    hole fell between samples: recall was 0.84-0.93). Now R1.2/1.3 as R2/1: >= 0.95 of the
    intact holes in every square, few false holes everywhere."""
    cases = [(2, 1.2, 1.3, "good"), (3, 1.2, 1.3, "broken"), (5, 2.0, 1.0, "broken")]
    totals = {1.2: np.zeros(4), 2.0: np.zeros(4)}
    for seed, hole_um, spacing_um, state in cases:
        n_true, n_found, n_false, n_called, error_um = _square_finding(
            seed, hole_um, spacing_um, state
        )
        assert error_um < 0.085, (seed, hole_um)
        assert n_found / n_true >= 0.95, (seed, hole_um, state)
        assert n_false / n_called <= 0.02, (seed, hole_um, state)
        totals[hole_um] += (n_true, n_found, n_false, n_called)
    small, large = totals[1.2], totals[2.0]
    assert small[1] / small[0] >= 0.95 and large[1] / large[0] >= 0.95
    assert (small[2] + large[2]) / (small[3] + large[3]) <= 0.02
