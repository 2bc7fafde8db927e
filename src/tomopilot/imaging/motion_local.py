"""Local (patch-based) motion: a cubic polynomial deformation model fitted to patch trajectories.

After global alignment, the frames are cut into a grid of non-overlapping patches (RELION's
``patch_x`` × ``patch_y``); frames are summed in groups of ``group`` to raise the signal; each
patch stack is aligned with :func:`~tomopilot.imaging.motion_global.align_spectra`. The residual
shifts are fitted with RELION's third-order polynomial model (18 coefficients per axis)

    s(x, y, z) = Σ_{p ∈ (1, x, x², y, y², xy)} Σ_{q = 1..3} c[3p + q − 1] · p · z^q,

with x = column / width − 0.5, y = row / height − 0.5 and z the 0-based frame index, so that the
shift is zero in frame 0 everywhere; a per-patch constant absorbs each patch's arbitrary origin.
Observations more than four robust deviations from the first fit are dropped before the final
fit. Shifts are in pixels, with the convention of the global alignment (content displacement).

Examples
--------
>>> import numpy as np
>>> model = LocalMotionModel(np.r_[1.0, np.zeros(17)], np.zeros(18), (100, 100))
>>> model.displacement_px(2.0, np.array([50.0]), np.array([50.0])).tolist()
[[2.0, 0.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates

from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.motion_global import align_spectra
from tomopilot.imaging.periodic_component import FrameEdges

N_COEFFICIENTS = 18


def cubic_basis(
    x_norm: NDArray[np.floating], y_norm: NDArray[np.floating], z: NDArray[np.floating]
) -> NDArray[np.float64]:
    """The 18 basis functions at normalised positions and frame indices, shape (..., 18)."""
    x, y, zz = np.broadcast_arrays(
        np.asarray(x_norm, float), np.asarray(y_norm, float), np.asarray(z, float)
    )
    spatial = (np.ones_like(x), x, x * x, y, y * y, x * y)
    powers = (zz, zz * zz, zz * zz * zz)
    return np.stack([p * q for p in spatial for q in powers], axis=-1)


@dataclass(frozen=True)
class LocalMotionModel:
    """RELION's third-order polynomial motion model (18 + 18 coefficients).

    Attributes
    ----------
    coefficients_x, coefficients_y
        The coefficients, in the order of :func:`cubic_basis`.
    shape
        (height, width) in pixels of the grid the positions refer to.
    rms_residual_px
        RMS misfit of the kept patch observations.
    n_observations
        Patch observations used in the fit.
    """

    coefficients_x: NDArray[np.float64]
    coefficients_y: NDArray[np.float64]
    shape: tuple[int, int]
    rms_residual_px: float = 0.0
    n_observations: int = 0

    def displacement_px(
        self,
        frame_index: float | NDArray[np.floating],
        x_px: NDArray[np.floating],
        y_px: NDArray[np.floating],
    ) -> NDArray[np.float64]:
        """Local displacement (x, y) at pixel positions in a frame, shape (..., 2)."""
        h, w = self.shape
        z = np.asarray(frame_index, dtype=np.float64)
        basis = cubic_basis(np.asarray(x_px) / w - 0.5, np.asarray(y_px) / h - 0.5, z)
        return np.stack([basis @ self.coefficients_x, basis @ self.coefficients_y], axis=-1)

    def scaled(self, factor: float) -> LocalMotionModel:
        """The same model on a grid ``factor`` times finer (shifts and shape scaled)."""
        h, w = self.shape
        return LocalMotionModel(
            self.coefficients_x * factor,
            self.coefficients_y * factor,
            (round(h * factor), round(w * factor)),
            self.rms_residual_px * factor,
            self.n_observations,
        )


@dataclass(frozen=True)
class PatchObservations:
    """Residual shifts measured in patches: positions (px), frame coordinates z, shifts (px)."""

    x_px: NDArray[np.float64]
    y_px: NDArray[np.float64]
    z: NDArray[np.float64]
    shift_px: NDArray[np.float64]
    patch: NDArray[np.intp]


def group_bounds(n_frames: int, group: int) -> list[tuple[int, int]]:
    """Frame ranges of groups of ``group`` frames; leftover frames join the later groups."""
    group = max(1, min(group, n_frames))
    n_groups = n_frames // group
    sizes = np.full(n_groups, group)
    for i in range(n_frames - n_groups * group):
        sizes[-1 - (i % n_groups)] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [(int(s), int(s + k)) for s, k in zip(starts, sizes, strict=True)]


def measure_patch_shifts(
    frames: NDArray[np.float32],
    n_patches: tuple[int, int],
    *,
    group: int = 1,
    bfactor_px2: float = 150.0,
    weight_profile: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> PatchObservations:
    """Align each patch of globally aligned frames; returns one observation per patch and group.

    Parameters
    ----------
    frames
        (n, h, w) globally aligned frames.
    n_patches
        (patches along x, patches along y).
    group
        Frames summed per group before aligning.
    bfactor_px2
        B-factor of the weighting when no ``weight_profile`` is given.
    weight_profile
        Radial correlation weight (cycles per pixel, weight), best the whole movie's
        (:attr:`~tomopilot.imaging.motion_global.GlobalMotion.weight_profile`): patches hold
        too little signal to estimate their own. The residual motion after global alignment is
        small, so patches are refined from zero without a coarse search.
    """
    n, h, w = frames.shape
    px, py = n_patches
    size_y, size_x = (h // py) // 2 * 2, (w // px) // 2 * 2
    if size_x < 32 or size_y < 32:
        raise ImagingError(f"patches of {size_x}×{size_y} px are too small to align")
    bounds = group_bounds(n, group)
    if len(bounds) < 3:
        raise ImagingError(f"{len(bounds)} frame groups are too few for local motion")
    centres_z = np.array([(a + b - 1) / 2.0 for a, b in bounds])
    if weight_profile is None:
        top = 0.5 * math.sqrt(2.0)
        frequencies = np.linspace(0.0, top, 64)
        weight_profile = (frequencies, np.exp(-2.0 * bfactor_px2 * frequencies**2))
    xs, ys, zs, shifts, ids = [], [], [], [], []
    for j in range(py):
        for i in range(px):
            y0, x0 = j * (h // py), i * (w // px)
            stack = np.stack(
                [frames[a:b, y0 : y0 + size_y, x0 : x0 + size_x].sum(axis=0) for a, b in bounds]
            )
            spectra = sfft.rfft2(stack, axes=(1, 2))
            try:
                motion = align_spectra(
                    spectra,
                    (size_y, size_x),
                    edges=FrameEdges.from_frames(stack),
                    weight_profile=weight_profile,
                )
            except ImagingError:
                continue
            xs.append(np.full(len(bounds), x0 + size_x / 2.0))
            ys.append(np.full(len(bounds), y0 + size_y / 2.0))
            zs.append(centres_z)
            shifts.append(motion.shifts_px)
            ids.append(np.full(len(bounds), j * px + i))
    if not shifts:
        raise ImagingError("no patch could be aligned")
    return PatchObservations(
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(zs),
        np.concatenate(shifts),
        np.concatenate(ids),
    )


def fit_local_model(
    observations: PatchObservations, shape: tuple[int, int], *, max_rms_px: float = 10.0
) -> LocalMotionModel | None:
    """Least-squares fit of the 18-coefficient model with a free offset per patch.

    Returns None (local correction dropped, as RELION does) when there are too few observations
    or the fit's RMS residual reaches ``max_rms_px``.
    """
    h, w = shape
    patches = np.unique(observations.patch)
    n_obs = observations.z.size
    if n_obs <= N_COEFFICIENTS + patches.size:
        return None
    basis = cubic_basis(observations.x_px / w - 0.5, observations.y_px / h - 0.5, observations.z)
    offsets = (observations.patch[:, None] == patches[None, :]).astype(float)
    design = np.hstack([basis, offsets])
    keep = np.ones(n_obs, bool)
    coeffs = np.zeros((design.shape[1], 2))
    for _ in range(2):
        coeffs, *_ = np.linalg.lstsq(design[keep], observations.shift_px[keep], rcond=None)
        residual = np.linalg.norm(design @ coeffs - observations.shift_px, axis=1)
        scale = 1.4826 * float(np.median(residual[keep])) + 1e-6
        keep = residual < 4.0 * scale + 0.05
        if keep.sum() <= N_COEFFICIENTS + patches.size:
            return None
    residual = design[keep] @ coeffs - observations.shift_px[keep]
    rms = float(np.sqrt(np.mean(np.sum(residual**2, axis=1))))
    if rms >= max_rms_px:
        return None
    return LocalMotionModel(
        coeffs[:N_COEFFICIENTS, 0].copy(),
        coeffs[:N_COEFFICIENTS, 1].copy(),
        shape,
        rms,
        int(keep.sum()),
    )


def displacement_maps(
    model: LocalMotionModel, frame_index: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The model's (x, y) displacement maps over the whole grid in one frame, (h, w) each."""
    h, w = model.shape
    x = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :]
    y = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None]
    z = np.array([frame_index, frame_index**2, frame_index**3])
    maps = []
    for coefficients in (model.coefficients_x, model.coefficients_y):
        a = coefficients.reshape(6, 3) @ z  # one factor per spatial term
        row = np.float32(a[0]) + np.float32(a[1]) * x + np.float32(a[2]) * x * x
        maps.append(row + y * (np.float32(a[3]) + np.float32(a[4]) * y + np.float32(a[5]) * x))
    return maps[0].astype(np.float32), maps[1].astype(np.float32)


def warp_frame(
    frame: NDArray[np.float32], model: LocalMotionModel, frame_index: int
) -> NDArray[np.float32]:
    """Undo the local motion of one (globally aligned) frame by bilinear resampling.

    The output pixel p takes the input value at p + s(p), where the content had moved to.
    """
    h, w = frame.shape
    dx, dy = displacement_maps(model, float(frame_index))
    yy = np.arange(h, dtype=np.float32)[:, None] + dy
    xx = np.arange(w, dtype=np.float32)[None, :] + dx
    coords = np.stack([yy, xx])
    return np.asarray(map_coordinates(frame, coords, order=1, mode="nearest"), np.float32)
