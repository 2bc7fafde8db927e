"""What the beam crosses, sampled on a coarse grid of the field (step 1 of the twin's render).

Rays through a coarse grid of the field find where they meet the specimen; from the material
they cross comes the zero-loss transmission exp(−t_ice/λ_ice − t_C/λ_C) (t along the beam, so a
slab of normal thickness t contributes t/cos θ, contamination spheres adding their chords), and
their depths give a smooth quadratic depth model for the defocus planes. The coarse samples are
brought to pixels by :func:`upsample`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.config import OpticsConfig
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.specimen.base import Specimen
from tomopilot.instrument.twin.surface import trace_rays

COARSE_TARGET = 192  # coarse-grid samples along the longer side
CONTAMINATION_MFP_FACTOR = 0.5  # crystalline ice scatters more than vitreous ice (est.)
UNFILTERED_MFP_FACTOR = 3.0  # without a slit, most inelastic electrons still arrive (est.)


@dataclass(frozen=True)
class CoarseColumns:
    """The specimen's columns on the coarse grid of one field.

    Attributes
    ----------
    step
        Pixels per coarse sample along each axis.
    transmission
        Zero-loss transmission per coarse sample (0 where opaque).
    modulation
        √(path / median path), clipped: how strongly the phase contrast shows.
    path_ref_nm
        Median path length through material (0 when the field is empty).
    lab_z_um
        Depth along the beam where each ray meets the specimen.
    depth_coeffs
        Quadratic depth model (1, u, v, u², v², uv) in pixels from the field centre.
    height_range_um
        Lowest and highest depth over material.
    specimen_bounds_um
        Specimen-frame box (x0, x1, y0, y1) whose contents can project into the field.
    """

    step: int
    transmission: NDArray[np.float64]
    modulation: NDArray[np.float64]
    path_ref_nm: float
    lab_z_um: NDArray[np.float64]
    depth_coeffs: NDArray[np.float64]
    height_range_um: tuple[float, float]
    specimen_bounds_um: tuple[float, float, float, float]


def mfp_scale(optics: OpticsConfig) -> float:
    """Factor on the mean free paths: 1 with an energy filter's slit, larger without."""
    return 1.0 if optics.slit_width_ev > 0 else UNFILTERED_MFP_FACTOR


def trace_columns(
    specimen: Specimen, pose: StagePose, fov: FieldOfView, optics: OpticsConfig
) -> CoarseColumns:
    """Trace the coarse grid of ``fov`` through the specimen (see the module docstring)."""
    ny, nx = fov.shape
    coarse_target = min(COARSE_TARGET, max(48, max(ny, nx) // 4))
    step = max(1, math.ceil(max(ny, nx) / coarse_target))
    cy = np.arange(math.ceil(ny / step)) * step + step / 2
    cx = np.arange(math.ceil(nx / step)) * step + step / 2
    cols, rows = np.meshgrid(cx, cy)
    lab_x, lab_y = fov.lab_from_pixels(cols, rows)
    hits = trace_rays(specimen, pose, lab_x, lab_y)
    material = specimen.columns(hits.specimen_x_um, hits.specimen_y_um)
    path_ice = material.ice_nm / hits.cos_incidence
    path_c = material.carbon_nm / hits.cos_incidence
    scale = mfp_scale(optics)
    attenuation = path_ice / (optics.ice_mfp_nm * scale) + path_c / (optics.carbon_mfp_nm * scale)
    spec_bounds = specimen_bounds(specimen, pose, fov.bounds_um(margin_um=0.05))
    spheres = specimen.contamination(spec_bounds)
    if len(spheres.radii_um):
        centres_lab = pose.to_lab(spheres.centres_um)
        contamination_mfp = optics.ice_mfp_nm * CONTAMINATION_MFP_FACTOR * scale
        for (sx, sy, _), radius in zip(centres_lab, spheres.radii_um, strict=True):
            d2 = (lab_x - sx) ** 2 + (lab_y - sy) ** 2
            chord_nm = 2e3 * np.sqrt(np.maximum(radius**2 - d2, 0.0))
            attenuation = attenuation + chord_nm / contamination_mfp
    transmission = np.where(material.opaque, 0.0, np.exp(-attenuation))
    path_total = np.where(material.opaque, 0.0, path_ice + path_c)
    in_material = path_total > 0
    path_ref = float(np.median(path_total[in_material])) if in_material.any() else 0.0
    modulation = (
        np.sqrt(np.clip(path_total / path_ref, 0.0, 4.0))
        if path_ref > 0
        else np.zeros_like(path_total)
    )

    # Smooth depth model (quadratic in pixel coordinates) for the defocus planes.
    u = (cols - nx / 2).ravel()
    v = (rows - ny / 2).ravel()
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], axis=1)
    weights = in_material.ravel() if in_material.sum() >= 6 else np.ones(u.size, bool)
    coeffs, *_ = np.linalg.lstsq(design[weights], hits.lab_z_um.ravel()[weights], rcond=None)
    height_range = (
        (float(hits.lab_z_um[in_material].min()), float(hits.lab_z_um[in_material].max()))
        if in_material.any()
        else (float(coeffs[0]),) * 2
    )
    return CoarseColumns(
        step=step,
        transmission=transmission,
        modulation=modulation,
        path_ref_nm=path_ref,
        lab_z_um=hits.lab_z_um,
        depth_coeffs=coeffs,
        height_range_um=height_range,
        specimen_bounds_um=spec_bounds,
    )


def _interpolation_matrix(n_out: int, n_in: int, step: int) -> NDArray[np.float32]:
    """Linear interpolation from coarse samples at (i + ½)·step to pixel centres."""
    x = np.clip((np.arange(n_out) + 0.5) / step - 0.5, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (x - i0).astype(np.float32)
    out = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(out, (rows, i0), 1 - frac)
    np.add.at(out, (rows, i1), frac)
    return out


def upsample(
    coarse: NDArray[np.float64], step: int, shape: tuple[int, int], *, nearest: bool = False
) -> NDArray[np.float32]:
    """Coarse-grid samples to pixels: bilinear, or nearest for a smooth, weak modulation."""
    if float(np.ptp(coarse)) <= 1e-7 * max(1.0, float(np.abs(coarse).max())):
        return np.full(shape, float(coarse.flat[0]), np.float32)
    if step == 1:
        return coarse[: shape[0], : shape[1]].astype(np.float32)
    if nearest:
        blocks = np.repeat(np.repeat(coarse.astype(np.float32), step, axis=0), step, axis=1)
        return np.ascontiguousarray(blocks[: shape[0], : shape[1]])
    rows = _interpolation_matrix(shape[0], coarse.shape[0], step)
    cols = _interpolation_matrix(shape[1], coarse.shape[1], step)
    return np.asarray(rows @ coarse.astype(np.float32) @ cols.T, dtype=np.float32)


def specimen_bounds(
    specimen: Specimen, pose: StagePose, lab_bounds: tuple[float, float, float, float]
) -> tuple[float, float, float, float]:
    """Specimen-frame box covering the lab box, via rays through its corners (with margin)."""
    x0, x1, y0, y1 = lab_bounds
    xs = np.array([x0, x1, x0, x1])
    ys = np.array([y0, y0, y1, y1])
    hits = trace_rays(specimen, pose, xs, ys)
    # Blobs above or below the mid-surface project into the field from outside its footprint.
    tilt = min(abs(pose.tilt_deg) + 15.0, 80.0)
    margin = 0.1 + 0.15 * math.tan(math.radians(tilt))
    return (
        float(hits.specimen_x_um.min() - margin),
        float(hits.specimen_x_um.max() + margin),
        float(hits.specimen_y_um.min() - margin),
        float(hits.specimen_y_um.max() + margin),
    )
