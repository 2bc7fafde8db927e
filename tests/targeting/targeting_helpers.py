"""Twin configurations and ground-truth measures for the targeting tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument import Image, LowDoseArea
from tomopilot.instrument.presets import PresetManager
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.specimen import GridSpecimen, SquareTruth
from tomopilot.targeting.atlas import Atlas
from tomopilot.targeting.hole_finder import HoleFinding, find_holes_in_square
from tomopilot.targeting.map_image import MapImage

FloatArray = NDArray[np.float64]

NO_DRIFT: dict[str, Any] = {"drift_nm_s": 0.0, "drift_floor_nm_s": 0.0, "jump_probability": 0.0}


def twin(
    seed: int,
    *,
    stage: dict[str, Any] | None = None,
    specimen: dict[str, Any] | None = None,
    presets: dict[str, Any] | None = None,
) -> TwinMicroscope:
    """A twin with small, fast images: View 512² over 3.3 µm, Search 512² over 20 µm."""
    base: dict[str, Any] = {
        "view": {"camera_area_px": [4096, 4096], "binning": 8},
        "search": {"camera_area_px": [4096, 4096], "binning": 8},
        "preview": {"camera_area_px": [512, 512], "binning": 2},
        "record": {"camera_area_px": [256, 256]},
        "focus": {"camera_area_px": [256, 256]},
        "trial": {"camera_area_px": [256, 256]},
    }
    for name, values in (presets or {}).items():
        base[name] = {**base.get(name, {}), **values}
    return TwinMicroscope(
        TwinConfig.model_validate(
            {
                "seed": seed,
                "stage": stage or {},
                "specimen": specimen or {"kind": "lamella"},
                "presets": base,
            }
        )
    )


def nm_from_nearest_hole(scope: TwinMicroscope, image: Image) -> float:
    """Distance (nm) from the specimen point at an exposure's centre to the nearest hole centre."""
    truth = scope.ground_truth.exposure(image.exposure_id)
    x, y, _ = truth.specimen_centre_um
    holes = scope.specimen.hole_centres_um((x - 4, x + 4, y - 4, y + 4))  # type: ignore[union-attr]
    return float(np.min(np.hypot(holes[:, 0] - x, holes[:, 1] - y)) * 1e3)


def beam_offset_nm(scope: TwinMicroscope, point: tuple[float, float, float]) -> float:
    """How far a specimen point is from the beam centre now (a fresh Record exposure), in nm."""
    image = scope.camera.acquire(LowDoseArea.RECORD)
    dx, dy = scope.ground_truth.exposure(image.exposure_id).offset_nm(point)
    return float(np.hypot(dx, dy))


# --- The atlas measured against the twin's truth (tests/targeting and bench/atlas.py) --------

HOLE_MATCH_UM = 0.5  # a found hole within half a hole radius of a true one is that hole
# Square preset for the hole finder: Search at about a quarter of its magnification, the table's
# 510×, 1024² at 847 Å (an 87 µm field).
SQUARE_PRESETS: dict[str, Any] = {"search": {"camera_area_px": [4096, 4096], "binning": 4}}
HOLE_GRID: dict[str, Any] = {"kind": "grid", "mesh_diameter_um": 420.0, "broken_fraction": 0.2}


@dataclass(frozen=True)
class HoleScore:
    """The hole finder on one square against the twin's holes: intact holes in view (a hole
    radius inside the image), of them found, holes called intact that are no intact hole
    (false), holes called intact, and the median centre error of the hits (µm)."""

    n_true: int
    n_found: int
    n_false: int
    n_called: int
    error_um: float

    @property
    def recall(self) -> float:
        return self.n_found / max(1, self.n_true)

    @property
    def false_share(self) -> float:
        return self.n_false / max(1, self.n_called)


def score_holes(square_map: MapImage, finding: HoleFinding, grid: GridSpecimen) -> HoleScore:
    """Score a finding on a map centred where its field truly was (specimen frame)."""
    cx, cy = square_map.centre_um
    half = square_map.pixel_um * max(square_map.data.shape)
    truth = grid.holes((cx - half, cx + half, cy - half, cy + half))
    px = square_map.to_pixels(truth.centres_um)
    ny, nx = square_map.data.shape
    r = finding.radius_px
    in_view = (px[:, 0] > r) & (px[:, 0] < nx - r) & (px[:, 1] > r) & (px[:, 1] < ny - r)
    centres, intact = truth.centres_um[in_view], truth.intact[in_view]
    found = np.array([h.centre_um for h in finding.intact]).reshape(-1, 2)
    distance = np.hypot(*(found[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    nearest, gap = distance.argmin(axis=1), distance.min(axis=1)
    hit = (gap < HOLE_MATCH_UM) & intact[nearest]
    error = float(np.median(gap[hit])) if hit.any() else math.inf
    n_found = len(set(nearest[hit]))
    return HoleScore(int(intact.sum()), n_found, int(np.sum(~hit)), len(found), error)


def square_map_in_truth(scope: TwinMicroscope, image: Image) -> MapImage:
    """An exposure as a map centred where its field truly was (in use the stage's axis offset
    is common to every map and target and cancels)."""
    truth = scope.ground_truth.exposure(image.exposure_id)
    matrix = scope.camera.specimen_to_camera_matrix(image.area)
    return MapImage(image.data, truth.specimen_centre_um[:2], matrix)


def film(hole_um: float, spacing_um: float) -> dict[str, float]:
    """A holey film's specimen keys (R<hole>/<spacing>)."""
    return {"hole_diameter_um": hole_um, "hole_spacing_um": spacing_um}


def grid_twin(
    seed: int, specimen: dict[str, Any], stage: dict[str, Any], presets: dict[str, Any]
) -> tuple[TwinMicroscope, GridSpecimen]:
    """A twin whose specimen is a whole grid, and that grid (its truth)."""
    scope = TwinMicroscope(
        TwinConfig.model_validate(
            {"seed": seed, "stage": stage, "specimen": specimen, "presets": presets}
        )
    )
    assert isinstance(scope.specimen, GridSpecimen)
    return scope, scope.specimen


def square_hole_score(
    seed: int, hole_um: float, spacing_um: float, state: str
) -> tuple[SquareTruth, HoleScore] | None:
    """The first whole square of ``state`` on a quiet twin grid of that film, imaged with the
    Square preset and scored; None if the grid has no whole square in that state."""
    scope, grid = grid_twin(
        seed, {**HOLE_GRID, **film(hole_um, spacing_um)}, NO_DRIFT, SQUARE_PRESETS
    )
    square = next((s for s in grid.squares() if s.open_fraction == 1.0 and s.state == state), None)
    if square is None:
        return None
    scope.stage.move_to(x_um=square.centre_um[0], y_um=square.centre_um[1])
    image = PresetManager.from_scope(scope).acquire("Square")
    square_map = square_map_in_truth(scope, image)
    finding = find_holes_in_square(square_map, hole_um, pitch_um=hole_um + spacing_um)
    return square, score_holes(square_map, finding, grid)


def nearest_square(grid: GridSpecimen, centre: tuple[float, float]) -> tuple[SquareTruth, float]:
    """The twin's square nearest a point and how far its centre is (µm)."""
    nearest = min(grid.squares(), key=lambda q: math.dist(q.centre_um, centre))
    return nearest, math.dist(nearest.centre_um, centre)


def piece_errors_px(scope: TwinMicroscope, atlas: Atlas) -> tuple[FloatArray, FloatArray]:
    """Each montage piece's distance (atlas px) from where its content truly belongs relative
    to piece 0: (nominal, i.e. at the stage's reported positions; after edge alignment)."""
    true_px = []
    for k, image in enumerate(atlas.images):
        sx, sy, _ = scope.ground_truth.exposure(image.exposure_id).specimen_centre_um
        true_px.append(atlas.matrix @ (np.array([sx, sy]) - atlas.stage_um[k]))
    true_offset = np.array(true_px) - true_px[0]
    aligned = (atlas.aligned_coords_px - atlas.piece_coords_px).astype(float)
    return (
        np.linalg.norm(true_offset, axis=1),
        np.linalg.norm(aligned - true_offset, axis=1),
    )


@dataclass(frozen=True)
class TargetCheck:
    """One target (stage + image shift, µm) against the twin: the Preview that confirmed it
    (the visit nearest it), how far that Preview's true centre was from the nearest hole
    centre and whether that hole is intact, and how far the target itself is from that hole
    once the visit's stage error (true − reported − image shift) is added."""

    beam_gap_um: float
    intact: bool
    target_gap_um: float


def check_targets(
    scope: TwinMicroscope, targets_um: list[tuple[float, float]]
) -> list[TargetCheck]:
    grid = scope.specimen
    assert isinstance(grid, GridSpecimen)
    previews = [e for e in scope.ground_truth.exposures if e.area == "Preview"]
    out = []
    for target in targets_um:
        xy = np.asarray(target, np.float64)
        visit = min(
            previews,
            key=lambda e: math.dist(np.add(e.stage_reported[:2], e.image_shift_true_um), xy),
        )
        true_centre = np.asarray(visit.specimen_centre_um[:2])
        x, y = true_centre
        holes = grid.holes((x - 6, x + 6, y - 6, y + 6))
        gaps = np.hypot(*(holes.centres_um - true_centre).T)
        k = int(np.argmin(gaps))
        stage_error = true_centre - np.add(visit.stage_reported[:2], visit.image_shift_true_um)
        target_gap = math.dist(xy + stage_error, holes.centres_um[k])
        out.append(TargetCheck(float(gaps[k]), bool(holes.intact[k]), target_gap))
    return out
