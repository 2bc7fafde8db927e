"""Where ``fused``'s tracking spot goes and how its shot is taken (``fused_track.TrackSpot``).

The spot is a patch of specimen next to target 1, along the tilt axis (where the beam's
footprint does not grow with tilt), clear of every target's beam by ``BEAM_CLEARANCE`` beam
diameters and within the image-shift limit, on specimen with texture to align on (not behind a
grid bar). Its shot is the Preview area at Record magnification, binned to at most
``SHOT_MAX_PX`` wide.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.instrument.types import Image, LowDoseArea

SHOT_MAX_PX = 512  # binned so the shot is at most this wide (fast to read and correlate)
BEAM_CLEARANCE = 1.15  # spot-to-target distance over a beam diameter
# A View smoothed below this fraction of its median sees through little there (a grid bar).
OPAQUE_FRACTION = 0.5


def _clear(
    offsets_um: NDArray[np.float64],
    positions_um: list[tuple[float, float]],
    clearance_um: float,
    limit_um: float,
) -> NDArray[np.bool_]:
    """Which offsets from target 1 clear every target's beam and stay inside the IS limit."""
    first = np.asarray(positions_um[0], dtype=np.float64)
    others = np.asarray(positions_um, dtype=np.float64)
    spots = first + offsets_um
    inside = np.max(np.abs(spots), axis=1) <= limit_um
    distance = np.hypot(
        spots[:, None, 0] - others[None, :, 0], spots[:, None, 1] - others[None, :, 1]
    )
    return np.asarray(inside & (np.min(distance, axis=1) >= clearance_um))


def spot_candidates(
    positions_um: list[tuple[float, float]], beam_diameter_um: float, limit_um: float
) -> list[tuple[float, float]]:
    """Offsets from target 1 (µm) where the spot may go, nearest first.

    ``positions_um`` are the targets' image shifts, target 1's first. Candidates go out in
    rings of one, 1.5, 2 and 3 clearances, along the tilt axis (x) first at each distance, then
    across it; those that clear every target's beam by ``BEAM_CLEARANCE`` beam diameters and
    stay inside ``limit_um`` are kept.
    """
    clearance = BEAM_CLEARANCE * beam_diameter_um
    offsets = np.array(
        [
            (dx * clearance * k, dy * clearance * k)
            for k in (1.0, 1.5, 2.0, 3.0)
            for dx, dy in ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))
        ]
    )
    keep = _clear(offsets, positions_um, clearance, limit_um)
    return [(float(x), float(y)) for x, y in offsets[keep]]


def place_spot(
    positions_um: list[tuple[float, float]], beam_diameter_um: float, limit_um: float
) -> tuple[float, float] | None:
    """Offset of the spot from target 1 (µm): as close as it can be, clear of every target.

    The nearest of :func:`spot_candidates`: close to target 1 its depth, and so its motion, is
    most like target 1's. None when no candidate clears the targets.
    """
    candidates = spot_candidates(positions_um, beam_diameter_um, limit_um)
    return candidates[0] if candidates else None


class _Texture:
    """Target 1's View prepared for scoring spot places (see :func:`texture`)."""

    def __init__(self, toolkit: Toolkit, view: Image, field_um: float) -> None:
        self.matrix = toolkit.camera_matrix(view)
        data = np.asarray(view.data, dtype=np.float64)
        self.shape = data.shape
        self.size = round(field_um * float(np.sqrt(abs(np.linalg.det(self.matrix)))))
        self.data = data
        fine = ndimage.gaussian_filter(data, 2.0)
        self.band = fine - ndimage.gaussian_filter(data, max(1.0, self.size / 4.0))
        # opaque where even the shot-noise-free image is dark (not a dark particle's pixel)
        self.opaque = ndimage.gaussian_filter(data, 8.0) < OPAQUE_FRACTION * float(np.median(data))

    def score(self, offset_um: tuple[float, float]) -> float | None:
        col, row = self.matrix @ np.asarray(offset_um, dtype=np.float64)
        h, w = self.shape
        r0, c0 = round(h / 2 + row - self.size / 2), round(w / 2 + col - self.size / 2)
        r1, c1 = r0 + self.size, c0 + self.size
        if self.size < 8 or r0 < 0 or c0 < 0 or r1 > h or c1 > w:
            return None
        if np.any(self.opaque[r0:r1, c0:c1]):
            return None  # a grid bar, or the beam's edge: nothing to see through
        mean = float(np.mean(self.data[r0:r1, c0:c1]))
        return float(np.std(self.band[r0:r1, c0:c1]) / mean) if mean > 0 else None


def texture(
    toolkit: Toolkit, view: Image, offset_um: tuple[float, float], field_um: float
) -> float | None:
    """How much a spot at ``offset_um`` from the View's centre has to correlate on.

    The spread of the View's pixels over the spot's field after removing what is smoother than
    a quarter of that field and what is finer than two View pixels (shot noise), over their
    mean: a hole's rim or a particle field scores high, bare carbon or empty ice low. None when
    that field is not wholly inside the View, or shows an opaque pixel (a grid bar: the spot
    would be dark, and its shadow grows with tilt).
    """
    return _Texture(toolkit, view, field_um).score(offset_um)


def textured_spot(
    toolkit: Toolkit,
    view: Image,
    positions_um: list[tuple[float, float]],
    beam_diameter_um: float,
    limit_um: float,
    field_um: float,
) -> tuple[float, float] | None:
    """The offset from target 1 (µm), clear of every target's beam, where target 1's View
    shows the most :func:`texture` over the spot's field; None when no clear place's field
    lies inside the View.

    Places are tried on a grid of a quarter of the spot's field over the whole View (the View
    is centred on target 1), so on holey film the spot can land in a free hole with particles
    in its ice rather than on bare carbon, and on a lamella on its most structured patch.
    """
    matrix = toolkit.camera_matrix(view)
    pixels_per_um = float(np.sqrt(abs(np.linalg.det(matrix))))
    half_view_um = 0.5 * min(view.data.shape) / pixels_per_um
    reach = half_view_um - 0.5 * field_um
    if reach <= 0:
        return None
    step = field_um / 4.0
    axis = np.arange(-reach, reach + 1e-9, step)
    grid = np.array([(x, y) for y in axis for x in axis])
    clearance = BEAM_CLEARANCE * beam_diameter_um
    grid = grid[_clear(grid, positions_um, clearance, limit_um)]
    scored = []
    prepared = _Texture(toolkit, view, field_um)
    for x, y in grid:
        score = prepared.score((float(x), float(y)))
        if score is not None:  # the most texture; of equals, the nearest
            scored.append((score, -float(np.hypot(x, y)), float(x), float(y)))
    if not scored:
        return None
    _, _, x_um, y_um = max(scored)
    return x_um, y_um


def shot_binning(toolkit: Toolkit) -> int:
    """The spot shot's binning: the Preview's, or more so that it is at most SHOT_MAX_PX wide."""
    preview = toolkit.scope.optics.preset(LowDoseArea.PREVIEW)
    width = max(preview.camera_area_px or toolkit.scope.camera.size_px)
    return max(preview.binning, math.ceil(width / SHOT_MAX_PX))


def shot_field_um(toolkit: Toolkit) -> float:
    """The narrower side of the spot shot's field (µm): the Preview's area at Record pixels."""
    record = toolkit.scope.optics.preset(LowDoseArea.RECORD)
    preview = toolkit.scope.optics.preset(LowDoseArea.PREVIEW)
    area = preview.camera_area_px or toolkit.scope.camera.size_px
    return min(area) * record.unbinned_pixel_size_a * 1e-4


__all__ = [
    "BEAM_CLEARANCE",
    "place_spot",
    "shot_binning",
    "shot_field_um",
    "spot_candidates",
    "texture",
    "textured_spot",
]
