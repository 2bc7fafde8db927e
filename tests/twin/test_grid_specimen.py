"""The whole-grid specimen: mesh, holes, ice, damage and contamination, and its ground truth.

Counts through ice follow the twin's zero-loss Beer–Lambert model, so the ice thickness of a
hole is recovered from an image as λ·ln(I₀/I) with I₀ read in the vacuum of a torn square.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from twin_helpers import QUIET_STAGE

from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import GridConfig, TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.coarse_grid import subsamples_per_side, trace_columns
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.specimen import GridSpecimen

SMALL = {"mesh_diameter_um": 420.0, "broken_fraction": 0.15, "empty_fraction": 0.1}


def _grid(seed: int = 3, **extra: object) -> GridSpecimen:
    return GridSpecimen(GridConfig.model_validate({**SMALL, **extra}), seed)


def test_a_full_grid_has_300_mesh_squares_in_the_stated_proportions() -> None:
    grid = GridSpecimen(GridConfig(), seed=1)
    squares = grid.squares()
    # A 2.6 mm disc of 85 µm pitch holds π·1300²/85² ≈ 735 squares, plus the rim's cut ones.
    whole = [s for s in squares if s.open_fraction == 1.0]
    assert abs(len(whole) - math.pi * 1300**2 / 85**2) < 60
    assert len(squares) - len(whole) < 4 * math.pi * 2600 / 85
    states = [s.state for s in squares]
    assert abs(states.count("broken") / len(squares) - 0.08) < 0.03
    assert abs(states.count("empty") / len(squares) - 0.05) < 0.03
    good = [s for s in squares if s.usable]
    ice = np.array([s.ice_nm for s in good])
    assert 60 < np.median(ice) < 160 and ice.min() >= 15
    # The gradient: ice grows along 30° by ~60 nm/mm (a fit over the squares' log ice).
    g = math.radians(30.0)
    along = np.array([s.centre_um[0] * math.cos(g) + s.centre_um[1] * math.sin(g) for s in good])
    slope = np.polyfit(along * 1e-3, ice, 1)[0]
    assert 35 < slope < 90
    assert all(s.torn_fraction > 0.05 for s in squares if s.state == "broken")
    # Same seed, same grid; another seed, another grid.
    again = GridSpecimen(GridConfig(), seed=1).squares()
    assert [s.ice_nm for s in again] == [s.ice_nm for s in squares]
    other = GridSpecimen(GridConfig(), seed=2).squares()
    assert [s.state for s in other] != states


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(-200, 200),
    y=st.floats(-200, 200),
    seed=st.integers(0, 50),
    angle=st.floats(-40, 40),
)
def test_what_a_ray_crosses_agrees_with_the_truth(
    x: float, y: float, seed: int, angle: float
) -> None:
    grid = _grid(seed, mesh_angle_deg=angle)
    cols = grid.columns(np.array([x]), np.array([y]))
    half = grid.config.opening_um / 2
    a = math.radians(angle)
    u = x * math.cos(a) + y * math.sin(a)
    v = -x * math.sin(a) + y * math.cos(a)
    p = grid.config.mesh_pitch_um
    lu, lv = u - round(u / p) * p, v - round(v / p) * p
    on_bar = abs(lu) > half or abs(lv) > half
    outside = math.hypot(x, y) > grid.config.mesh_diameter_um / 2
    if on_bar or outside:
        assert cols.opaque[0]
        return
    assert not cols.opaque[0]
    holes = grid.holes((x - 3, x + 3, y - 3, y + 3))
    if len(holes.centres_um):
        d = np.hypot(*(holes.centres_um - [x, y]).T)
        k = int(np.argmin(d))
        if d[k] < grid.config.hole_diameter_um / 2 - 1e-6 and holes.intact[k]:
            # Inside an intact hole: the square's ice and no carbon.
            assert cols.carbon_nm[0] == 0
            assert math.isclose(cols.ice_nm[0], holes.ice_nm[k])
    square = min(grid.squares(), key=lambda s: math.dist(s.centre_um, (x, y)))
    if square.state == "empty":
        assert cols.ice_nm[0] == 0
    assert cols.ice_nm[0] <= square.ice_nm + 1e-9


def test_hole_truth_marks_cut_torn_and_dry_holes() -> None:
    grid = _grid(3)
    squares = grid.squares()
    r = grid.config.hole_diameter_um / 2
    half = grid.config.opening_um / 2
    for square in squares:
        cx, cy = square.centre_um
        holes = grid.holes((cx - half - 5, cx + half + 5, cy - half - 5, cy + half + 5))
        mine = np.all(holes.squares == square.index, axis=1)
        intact = holes.intact[mine]
        if square.state == "empty":
            assert not intact.any()
        elif square.state == "good" and square.open_fraction == 1.0:
            # A whole good square of 60 µm holds ~(60/3)² = 400 holes, ~97 % of them with ice.
            assert 330 < intact.sum() < 420
            assert intact.mean() > 0.85  # the ones cut by the bars are not intact
        # Every intact hole's disc lies in the opening, on film, with the square's ice.
        pts = holes.centres_um[mine][intact]
        for dx, dy in ((r * 0.95, 0), (-r * 0.95, 0), (0, r * 0.95), (0, -r * 0.95)):
            cols = grid.columns(pts[:, 0] + dx, pts[:, 1] + dy)
            assert not cols.opaque.any()
            assert np.allclose(cols.ice_nm, square.ice_nm)


def test_ice_thickness_is_recovered_from_counts_by_beer_lambert() -> None:
    """A Hole-preset image at an intact hole: λ·ln(I₀/I) with I₀ from a torn square's vacuum
    gives the twin's ice within 4 %."""
    seed = 3
    config = TwinConfig.model_validate(
        {
            "seed": seed,
            "stage": QUIET_STAGE,
            "specimen": {"kind": "grid", **SMALL, "contamination": {"crystals_per_um2": 0.0}},
            "presets": {"view": {"camera_area_px": [1024, 1024], "binning": 8}},
        }
    )
    scope = TwinMicroscope(config)
    grid = scope.specimen
    assert isinstance(grid, GridSpecimen)
    squares = grid.squares()
    broken = next(s for s in squares if s.state == "broken" and s.torn_fraction > 0.3)
    # A vacuum point: sample the torn side of the broken square.
    cx, cy = broken.centre_um
    grid_pts = np.mgrid[-25:26:5, -25:26:5].reshape(2, -1).T + np.array([cx, cy])
    cols = grid.columns(grid_pts[:, 0], grid_pts[:, 1])
    vac = grid_pts[(cols.ice_nm == 0) & (cols.carbon_nm == 0) & ~cols.opaque]
    # The vacuum point farthest from any film: the middle of the torn region.
    film = grid_pts[cols.carbon_nm > 0]
    vacuum = vac[np.argmax([np.min(np.hypot(*(film - p).T)) for p in vac])]

    # Where a stage position puts the field: the stage's axis offset, measured once.
    scope.stage.move_to(x_um=0.0, y_um=0.0)
    probe = scope.ground_truth.exposure(scope.camera.acquire(LowDoseArea.VIEW).exposure_id)
    off_x, off_y, _ = probe.specimen_centre_um

    def centre_counts(x: float, y: float) -> tuple[float, tuple[float, float]]:
        scope.stage.move_to(x_um=x - off_x, y_um=y - off_y)
        image = scope.camera.acquire(LowDoseArea.VIEW)
        truth = scope.ground_truth.exposure(image.exposure_id)
        sx, sy, _ = truth.specimen_centre_um
        ny, nx = image.data.shape
        patch = image.data[ny // 4 : 3 * ny // 4, nx // 4 : 3 * nx // 4]  # 0.7 µm: in the hole
        return float(np.mean(patch)), (sx, sy)

    i0, _ = centre_counts(*vacuum)
    mfp = config.optics.ice_mfp_nm
    checked = 0
    for square in [s for s in squares if s.usable and s.open_fraction == 1.0][:3]:
        sx, sy = square.centre_um
        holes = grid.holes((sx - 10, sx + 10, sy - 10, sy + 10))
        k = int(np.argmax(holes.intact))
        counts, at = centre_counts(*holes.centres_um[k])
        assert math.dist(at, holes.centres_um[k]) < 0.2
        estimate = mfp * math.log(i0 / counts)
        assert abs(estimate - square.ice_nm) < 0.04 * square.ice_nm + 2, (estimate, square)
        checked += 1
    assert checked == 3


def _coarse_against_area_truth(
    grid: GridSpecimen, centre_um: tuple[float, float], shape: int, pixel_a: float, n: int
) -> tuple[int, int, NDArray[np.float64], NDArray[np.float64]]:
    """The render's coarse transmission of a field and the truth averaged over each cell
    (n × n points per cell of the flat film at 0°): (step, subsamples, render, truth)."""
    fov = FieldOfView(centre_um, (shape, shape), pixel_a, 0.0)
    pose = StagePose(np.eye(3), np.zeros(3), 0.0)
    optics = TwinConfig().optics
    columns = trace_columns(grid, pose, fov, optics)
    step = columns.step
    fine = (np.arange(n) + 0.5) / n - 0.5
    du, dv = (a.ravel() * step for a in np.meshgrid(fine, fine))
    ny, nx = columns.transmission.shape
    cols, rows = np.meshgrid(np.arange(nx) * step + step / 2, np.arange(ny) * step + step / 2)
    x, y = fov.lab_from_pixels(cols[..., None] + du, rows[..., None] + dv)
    material = grid.columns(x.ravel(), y.ravel())
    t = np.exp(-material.ice_nm / optics.ice_mfp_nm - material.carbon_nm / optics.carbon_mfp_nm)
    truth = np.where(material.opaque, 0.0, t).reshape(x.shape).mean(axis=-1)
    return step, subsamples_per_side(grid, step * fov.pixel_um), columns.transmission, truth


def test_the_render_averages_the_transmission_over_each_pixel_where_holes_are_small() -> None:
    """At atlas and square magnifications the holes are a few samples across or less; point
    samples would alias (a hole's contrast depends on where it falls between samples, a hole
    lattice beats against an atlas tile). The render's transmission is the area mean: per
    1.5 µm atlas pixel, and on cells fine enough for a square image's 1.2 µm holes."""
    clean = {"contamination": {"crystals_per_um2": 0.0, "blobs_per_um2": 0.0}}
    atlas_grid = _grid(3, **clean)
    square = next(s for s in atlas_grid.squares() if s.state == "good" and s.open_fraction == 1)
    step, n_sub, render, truth = _coarse_against_area_truth(
        atlas_grid, square.centre_um, 48, 15000.0, 12
    )
    assert (step, n_sub) == (1, 3)  # every atlas pixel its own cell, 3 × 3 area samples
    assert np.sqrt(np.mean((render - truth) ** 2)) < 0.02
    assert abs(float(render.mean() - truth.mean())) < 0.003
    # Square image of R1.2/1.3 film at 847 Å: 0.17 µm cells (≈ 7 across a hole), as the
    # truth averaged over the cell.
    fine_grid = _grid(2, hole_diameter_um=1.2, hole_spacing_um=1.3, **clean)
    square = next(s for s in fine_grid.squares() if s.state == "good" and s.open_fraction == 1)
    step, n_sub, render, truth = _coarse_against_area_truth(
        fine_grid, square.centre_um, 128, 847.0, 8
    )
    assert (step, n_sub) == (2, 1)
    assert np.sqrt(np.mean((render - truth) ** 2)) < 0.02
