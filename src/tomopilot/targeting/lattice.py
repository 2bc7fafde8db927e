"""The hole lattice of a holey film from one image: vectors A and B (specimen µm).

With enough holes in view (≥ ``min_holes``, 9 by default) the vectors come from the image's
autocorrelation, as PACEtomo does (pacetomo.md §6): the image is binned so a hole is ~20 px
across, the six highest autocorrelation peaks are picked, A is the shortest peak vector longer
than a hole diameter and B the first one nearly perpendicular to it (|A·B| < 0.1|A|²) of similar
length (±10 %). Both are then refined by a least-squares fit to every autocorrelation peak
i·A + j·B inside the image, which makes them accurate to a small fraction of a pixel.

With fewer holes (PACEtomo fails there, #37) the holes themselves are located by a matched
filter and the lattice is fitted to their centres; if they do not show a second direction, B is
A turned by 90° (square lattice). With a single hole a user-given neighbour position is used.
Vectors are returned with y > 0, A the one with the larger y (PACEtomo's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.autocorrelation import autocorrelate, find_peaks, refine_peak
from tomopilot.imaging.hole_template import find_holes
from tomopilot.targeting.errors import TargetingError

Vector = tuple[float, float]


class LatticeNotFoundError(TargetingError):
    """No hole lattice could be found in the image."""


@dataclass(frozen=True)
class HoleLattice:
    """Lattice vectors (µm), how they were found, and how many holes were seen."""

    vec_a_um: Vector
    vec_b_um: Vector
    method: str
    n_holes: int

    @property
    def pitch_um(self) -> float:
        """Mean length of the two vectors."""
        return (math.hypot(*self.vec_a_um) + math.hypot(*self.vec_b_um)) / 2


def _bin(data: NDArray[np.floating], factor: int) -> NDArray[np.float64]:
    ny, nx = (s - s % factor for s in data.shape)
    d = np.asarray(data[:ny, :nx], np.float64)
    return np.asarray(d.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3)))


def _orient(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[Vector, Vector]:
    a = a if a[1] > 0 or (a[1] == 0 and a[0] > 0) else -a
    b = b if b[1] > 0 or (b[1] == 0 and b[0] > 0) else -b
    if b[1] > a[1]:
        a, b = b, a
    return (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def _rot90(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.array([-v[1], v[0]])


def _pick_vectors(
    peaks: list[tuple[float, float]], min_length: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    vectors = [np.array(p) for p in peaks[1:] if math.hypot(*p) > min_length]
    if not vectors:
        return None
    a = min(vectors, key=lambda v: float(np.hypot(*v)))
    la = float(np.hypot(*a))
    for v in vectors:
        if abs(float(a @ v)) / la**2 < 0.1 and abs(float(np.hypot(*v)) - la) < 0.1 * la:
            return a, v
    return None


def _refine_from_autocorrelation(
    ac: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64], radius: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    ny, nx = ac.shape
    cy, cx = (ny - 1) // 2, (nx - 1) // 2
    reach = 0.45 * min(ny, nx) / 2
    k = int(reach / min(np.hypot(*a), np.hypot(*b))) + 1
    rows, targets = [], []
    for i in range(-k, k + 1):
        for j in range(-k, k + 1):
            if (i, j) == (0, 0):
                continue
            guess = i * a + j * b
            if np.hypot(*guess) > reach:
                continue
            r, c = round(cy + guess[1]), round(cx + guess[0])
            # the peak's integer maximum near the guess, then a sub-pixel fit
            r0, c0 = max(r - radius, 0), max(c - radius, 0)
            patch = ac[r0 : r + radius + 1, c0 : c + radius + 1]
            pr, pc = np.unravel_index(int(np.argmax(patch)), patch.shape)
            rr, cc = refine_peak(ac, int(pr + r0), int(pc + c0), radius=radius)
            rows.append((i, j))
            targets.append((cc - cx, rr - cy))
    if len(rows) < 4:
        return a, b, len(rows)
    coef, *_ = np.linalg.lstsq(np.array(rows, float), np.array(targets), rcond=None)
    return coef[0], coef[1], len(rows)


def _fit_holes(
    centres: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    basis = np.stack([a, b], axis=1)
    rel = centres - centres[0]
    idx = np.round(rel @ np.linalg.inv(basis).T)
    design = np.concatenate([np.ones((len(centres), 1)), idx], axis=1)
    if np.linalg.matrix_rank(design) < 3:
        return a, b
    coef, *_ = np.linalg.lstsq(design, centres, rcond=None)
    return coef[1], coef[2]


def find_lattice(
    data: NDArray[np.floating],
    specimen_to_pixels: NDArray[np.float64],
    *,
    hole_diameter_um: float,
    min_holes: int = 9,
    neighbour_um: Vector | None = None,
) -> HoleLattice:
    """Find the hole lattice in an image (module docstring).

    Parameters
    ----------
    data
        The image (View or Search magnification, holes visible).
    specimen_to_pixels
        The image's specimen-µm → pixel matrix (``camera.specimen_to_camera_matrix(area)``).
    hole_diameter_um
        Nominal hole diameter (1.2 for R1.2/1.3, 2 for R2/1).
    neighbour_um
        Where a neighbouring hole is relative to a hole (specimen µm), for images with
        fewer than two holes.

    Raises
    ------
    LatticeNotFoundError
        If neither route finds two lattice directions.
    """
    matrix = np.asarray(specimen_to_pixels, np.float64)
    pixel_um = 1.0 / math.sqrt(abs(np.linalg.det(matrix)))
    factor = int(min(10, max(1, math.floor(hole_diameter_um / pixel_um / 20))))
    binned = _bin(data, factor)
    m_binned = matrix / factor
    diameter_px = hole_diameter_um / pixel_um / factor
    holes = find_holes(binned, diameter_px / 2)
    to_um = np.linalg.inv(m_binned)
    if len(holes) >= min_holes:
        raw = autocorrelate(binned, normalise=False)
        peaks = find_peaks(raw, n=9, suppress_px=diameter_px)
        picked = _pick_vectors(peaks, diameter_px)
        if picked is not None:
            ac = autocorrelate(binned)
            a_px, b_px, _n = _refine_from_autocorrelation(
                ac, *picked, radius=max(2, int(diameter_px / 5))
            )
            a_um, b_um = _orient(to_um @ a_px, to_um @ b_px)
            if math.hypot(*a_um) > hole_diameter_um:
                return HoleLattice(a_um, b_um, "autocorrelation", len(holes))
    if len(holes) >= 2:
        diffs = holes[None, :, :] - holes[:, None, :]
        lengths = np.hypot(diffs[..., 0], diffs[..., 1])
        lengths[lengths < diameter_px] = np.inf
        i, j = np.unravel_index(int(np.argmin(lengths)), lengths.shape)
        a = diffs[i, j]
        flat = diffs.reshape(-1, 2)
        la = float(np.hypot(*a))
        perpendicular = [
            v
            for v in flat
            if abs(float(a @ v)) / la**2 < 0.1 and abs(float(np.hypot(*v)) - la) < 0.1 * la
        ]
        b = perpendicular[0] if perpendicular else _rot90(a)
        a, b = _fit_holes(holes, a, b)
        a_um, b_um = _orient(to_um @ a, to_um @ b)
        return HoleLattice(a_um, b_um, "holes" if perpendicular else "holes+90°", len(holes))
    if neighbour_um is not None:
        a = np.asarray(neighbour_um, np.float64)
        a_um, b_um = _orient(a, _rot90(a))
        return HoleLattice(a_um, b_um, "neighbour", len(holes))
    raise LatticeNotFoundError(
        f"found {len(holes)} hole(s) of {hole_diameter_um:g} µm: image a larger area (Search), "
        "or give the position of a neighbouring hole"
    )
