"""Whole-frame (global) motion of a movie, estimated in Fourier space.

The estimator follows MotionCor2's iterative scheme as RELION re-implemented it: every frame is
cross-correlated with the sum of all *other* aligned frames (a leave-one-out reference), the
cross-power spectrum is weighted by a B-factor envelope exp(−2 B s²) (s in cycles per pixel,
B in pixel²), the correlation peak is located with sub-pixel precision by a three-point fit on
each axis, and the frames are phase-shifted by the increments until they stop moving.

The correlation is computed on a Fourier-cropped grid (frequencies where the B-factor weight is
above 1 %), which is exact for the weighted correlation and makes each iteration cheap; because
the peak is symmetric about the true shift once the frames are aligned, the three-point fit is
unbiased at convergence.

Two additions matter at tilt-series dose (a few tenths of an e⁻/Å² per frame):

- ``edges``: the smooth component of every frame (:mod:`~tomopilot.imaging.periodic_component`)
  is removed from the spectra used for alignment, so the border jump of the periodic DFT, which
  does not move with the specimen, no longer pulls the shifts towards zero;
- ``weighting="optimal"`` (the default): after the B-factor passes, the spectral signal-to-noise
  ratio of one frame, SSNR(k), is measured from the aligned frames' cross- and auto-spectra, and
  the correlation is re-weighted by (n − 1)·SSNR / (1 + (n − 1)·SSNR), the weight that minimises
  the variance of a shift measured against the sum of the n − 1 other frames. ``"bfactor"``
  keeps RELION's B-factor weighting throughout.

Shift convention: ``shifts_px[i]`` is the displacement of frame i's content relative to frame 0
(the content of frame 0 at p appears in frame i at p + shift), in pixels of the input grid.

Examples
--------
>>> import numpy as np, scipy.fft as sfft
>>> from tomopilot.imaging.fourier import fourier_shift
>>> rng = np.random.default_rng(1)
>>> base = rng.poisson(20.0, (256, 256)).astype(np.float32)
>>> true = [(0.0, 0.0), (1.3, -0.4), (2.2, -1.1)]
>>> frames = np.stack([fourier_shift(base, x, y) for x, y in true])
>>> result = align_spectra(sfft.rfft2(frames), (256, 256), bfactor_px2=50)
>>> bool(np.abs(result.shifts_px - true).max() < 0.02)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.motion_passes import (
    ComplexStack,
    coarse_shifts,
    crop_spectra_into,
    fine_passes,
    map_row_blocks,
    ssnr_weight,
)
from tomopilot.imaging.periodic_component import FrameEdges

COARSE_HEAVY_BFACTOR_PX2 = 500.0
COARSE_LIGHT_BFACTOR_PX2 = 20.0


@dataclass(frozen=True)
class GlobalMotion:
    """Result of a global alignment.

    Attributes
    ----------
    shifts_px
        (n, 2) displacement (x, y) of each frame relative to frame 0, input-grid pixels.
    n_iterations
        Iterations run.
    converged
        Whether the largest increment fell below the tolerance.
    ccf_size_px
        Side of the Fourier-cropped correlation grid.
    weight_profile
        The radial correlation weight used last, as (frequency in cycles per pixel, weight).
    """

    shifts_px: NDArray[np.float64]
    n_iterations: int
    converged: bool
    ccf_size_px: int
    weight_profile: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None


def ccf_box_size(shape: tuple[int, int], bfactor_px2: float, weight_floor: float = 0.01) -> int:
    """Side of the square correlation grid holding the frequencies weighted above the floor."""
    n = min(shape)
    if bfactor_px2 <= 0:
        return n - n % 2
    s_cut = math.sqrt(-math.log(weight_floor) / (2.0 * bfactor_px2))
    size = math.ceil(2.0 * s_cut * n)
    size = max(64, size + size % 2)
    if size >= n:
        return n - n % 2
    fast = sfft.next_fast_len(size, real=True)
    return int(min(fast + fast % 2, n - n % 2))


def _crop_grid(
    data: ComplexStack | list[NDArray[np.complexfloating]],
    shape: tuple[int, int],
    size: int,
    edges: FrameEdges | None,
    pool: Executor | None = None,
    threads: int = 1,
) -> tuple[ComplexStack, NDArray[np.float64], NDArray[np.float64], float, float]:
    """Crop spectra to a square-pixel grid of ``size`` rows, minus the frames' smooth parts
    (frame by frame, on ``threads`` threads of ``pool`` when given: the same numbers)."""
    ny, nx = shape
    size = min(size, ny - ny % 2)
    size_x = size if nx == ny else round(nx * size / ny)
    size_x = min(size_x + size_x % 2, nx - nx % 2)
    scale_y, scale_x = ny / size, nx / size_x  # original pixels per correlation-grid pixel
    fy = np.asarray(np.fft.fftfreq(size) / scale_y, np.float64)
    fx = np.asarray(np.fft.rfftfreq(size_x) / scale_x, np.float64)
    cropped = np.empty((len(data), size, size_x // 2 + 1), np.complex64)
    subtract = edges.subtractor(fy, fx) if edges is not None else None

    def crop(index: int) -> None:
        crop_spectra_into(data[index], shape, cropped[index])
        if subtract is not None:
            subtract(index, cropped[index])
        cropped[index, 0, 0] = 0

    map_row_blocks(len(data), 1, crop, pool, threads)
    return cropped, fy, fx, scale_y, scale_x


def align_spectra(
    spectra: ComplexStack | Sequence[NDArray[np.complexfloating]],
    shape: tuple[int, int],
    *,
    bfactor_px2: float = 150.0,
    weighting: Literal["optimal", "bfactor"] = "optimal",
    edges: FrameEdges | None = None,
    max_shift_px: float = 50.0,
    max_iterations: int = 10,
    tolerance_px: float = 0.01,
    initial_shifts_px: NDArray[np.float64] | None = None,
    box: int | None = None,
    optimal_box: int = 1024,
    weight_profile: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
    pool: Executor | None = None,
    threads: int = 1,
) -> GlobalMotion:
    """Estimate each frame's displacement from the rfft2 spectra of a movie.

    A coarse pass finds integer peaks within ``max_shift_px`` on a small correlation grid; the
    fine passes evaluate the weighted leave-one-out correlation exactly at ±h around the
    current estimate (h ≈ the peak width) and refine by a three-point fit on each axis.

    Parameters
    ----------
    spectra
        (n, ny, nx//2 + 1) complex spectra of the frames (rfft2 of (n, ny, nx)), as one array
        or a sequence of 2D spectra.
    shape
        (ny, nx) of the frames.
    bfactor_px2
        B-factor of the weighting envelope, in pixel² of the input grid (RELION default 150).
    weighting
        ``"optimal"``: B-factor passes, then SSNR weighting; ``"bfactor"``: RELION's weighting.
    edges
        Border jumps of the frames, to align their periodic components.
    max_shift_px
        Largest displacement searched between a frame and the reference.
    max_iterations, tolerance_px
        Stop the fine passes when the largest increment is below ``tolerance_px`` or after
        ``max_iterations``.
    initial_shifts_px
        Starting shifts (n, 2); skips the coarse pass.
    box
        Side of the B-factor correlation grid; by default from the B-factor.
    optimal_box
        Smallest side of the grid of the SSNR-weighted passes (up to the frame size).
    weight_profile
        A known radial weight (cycles per pixel, weight), for instance a whole movie's for its
        patches: only fine passes with this weight are run, from ``initial_shifts_px`` (zeros
        by default) over the whole grid.
    pool, threads
        Run the fine passes on ``threads`` threads of ``pool`` (same result as one thread).
    """
    data = spectra if isinstance(spectra, np.ndarray) else list(spectra)
    n = len(data)
    if n < 2 or any(np.ndim(s) != 2 for s in data):
        raise ImagingError(f"need n ≥ 2 spectra of 2D frames, got {n} of shape {np.shape(data[0])}")
    ny, nx = shape
    if weight_profile is not None:
        return _align_with_profile(
            data, shape, weight_profile, edges, initial_shifts_px, max_iterations, tolerance_px
        )
    size = box or ccf_box_size(shape, bfactor_px2)
    cropped, fy, fx, scale_y, scale_x = _crop_grid(data, shape, size, edges, pool, threads)
    weight = np.exp(-2.0 * bfactor_px2 * (fy[:, None] ** 2 + fx[None, :] ** 2)).astype(np.float32)
    if initial_shifts_px is None:
        # Two integer-peak searches: a heavy low-pass first, whose broad peaks bring even large
        # drifts within reach; then a light one, because a heavy B-factor keeps little but the
        # first Thon ring, whose correlation has side lobes a ring period away that noise can
        # promote.
        start: NDArray[np.float64] | None = None
        passes = (
            (max(bfactor_px2, COARSE_HEAVY_BFACTOR_PX2), 256),
            (COARSE_LIGHT_BFACTOR_PX2, 512),
        )
        for coarse_b, coarse_size in passes:
            coarse_weight = np.exp(-2.0 * coarse_b * (fy[:, None] ** 2 + fx[None, :] ** 2))
            start, _ = coarse_shifts(
                cropped,
                coarse_weight.astype(np.float32),
                (scale_y, scale_x),
                start,
                fy,
                fx,
                max_shift_px,
                coarse_size,
            )
        assert start is not None
        shifts = start
    else:
        shifts = np.array(initial_shifts_px, dtype=np.float64).reshape(n, 2)
    iterations = 0
    if weighting == "optimal":
        # Two rounds: the SSNR measured on roughly aligned frames underrates high frequencies,
        # so it is measured again once the frames are well aligned.
        size_opt = max(cropped.shape[1], min(optimal_box, ny, nx))
        if size_opt != cropped.shape[1]:
            cropped, fy, fx, scale_y, scale_x = _crop_grid(
                data, shape, size_opt, edges, pool, threads
            )
            size = size_opt
        step = 0.5 * max(1.0, scale_x, scale_y)
        rounds = ((max(tolerance_px, 0.05), max_iterations), (tolerance_px, min(max_iterations, 4)))
        for round_tolerance, round_iterations in rounds:
            weight, profile = ssnr_weight(cropped, shifts, fy, fx, pool, threads)
            shifts, more, converged = fine_passes(
                cropped,
                weight,
                fy,
                fx,
                shifts,
                step,
                round_iterations,
                round_tolerance,
                pool=pool,
                threads=threads,
            )
            iterations += more
    else:
        step = float(np.clip(math.sqrt(max(bfactor_px2, 1.0)) / math.pi, 0.5, 4.0))
        step = max(step, 0.5 * max(scale_x, scale_y))
        shifts, iterations, converged = fine_passes(
            cropped,
            weight,
            fy,
            fx,
            shifts,
            step,
            max_iterations,
            tolerance_px,
            pool=pool,
            threads=threads,
        )
        radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
        frequencies = np.linspace(0.0, float(radius.max()), 64)
        profile = (frequencies, np.exp(-2.0 * bfactor_px2 * frequencies**2))
    shifts -= shifts[0]
    return GlobalMotion(shifts, iterations, converged, size, profile)


def _align_with_profile(
    data: ComplexStack | list[NDArray[np.complexfloating]],
    shape: tuple[int, int],
    profile: tuple[NDArray[np.float64], NDArray[np.float64]],
    edges: FrameEdges | None,
    initial_shifts_px: NDArray[np.float64] | None,
    max_iterations: int,
    tolerance_px: float,
) -> GlobalMotion:
    """Fine passes only, with a given radial weight, over the whole grid."""
    n = len(data)
    cropped, fy, fx, _, _ = _crop_grid(data, shape, min(shape), edges)
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    weight = np.interp(radius, profile[0], profile[1], right=0.0).astype(np.float32)
    weight[0, 0] = 0.0
    start = np.zeros((n, 2)) if initial_shifts_px is None else np.asarray(initial_shifts_px)
    shifts, iterations, converged = fine_passes(
        cropped, weight, fy, fx, start.astype(np.float64), 0.5, max_iterations, tolerance_px
    )
    shifts -= shifts[0]
    return GlobalMotion(shifts, iterations, converged, cropped.shape[1], profile)
