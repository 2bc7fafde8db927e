"""What the beam crosses, sampled on a coarse grid of the field (step 1 of the twin's render).

Rays through a coarse grid of the field find where they meet the specimen; from the material
they cross comes the zero-loss transmission exp(−t_ice/λ_ice − t_C/λ_C) (t along the beam, so a
slab of normal thickness t contributes t/cos θ, contamination spheres adding their chords), and
their depths give a smooth quadratic depth model for the defocus planes. The coarse samples are
brought to pixels by :func:`upsample`.

A detector pixel integrates the electrons over its area, so a pixel's transmission is the *area
average* of exp(−attenuation), not its value at one point. Where the specimen is smooth on the
scale of a coarse cell the two agree. A specimen with sharp structure (a holey film's holes:
it says so with ``finest_feature_um``) would alias at square and atlas magnifications: a
hole's contrast would depend on where it falls between the samples (1.2 µm holes on 0.5 µm
cells showed 3 % to 17 %), and a hole lattice beats against the samples of an atlas tile.
So, with such a specimen:

- where the pixels resolve the structure (pixel ≤ feature / :data:`CELLS_PER_FEATURE`), the
  cells are made that fine (a square image of R1.2/1.3 film: 0.17 µm cells, not 0.5 µm);
- where they do not (an atlas tile, 1.5 µm pixels over 2 µm holes), every pixel is a cell and
  its transmission the mean over :func:`subsamples_per_side`² stratified points of it (a
  fixed jitter, not the twin's random stream), placed through the local projection of the
  traced centres (exact for a flat film, to second order for a bent one). A 4×4-pixel cell
  would smear the grid bars' edges over 12 µm of an atlas.

Specimens without fine structure, and fields whose cells are already small against it (every
View, Preview and Record of the holey films), are traced exactly as before (bit-identical).
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
from tomopilot.instrument.twin.surface import RayHits, trace_rays

COARSE_TARGET = 192  # coarse-grid samples along the longer side
CELLS_PER_FEATURE = 5  # cells across the finest feature where the pixels resolve it
SUBSAMPLES_PER_FEATURE = 3  # area samples across the finest feature in a coarser pixel
MAX_SUBSAMPLES = 8  # per side of a coarse cell (64 samples per cell at most)
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


def _finest_feature_um(specimen: Specimen) -> float | None:
    feature = getattr(specimen, "finest_feature_um", None)
    return float(feature) if feature is not None and feature > 0 else None


def coarse_step(specimen: Specimen, fov: FieldOfView) -> int:
    """Pixels per coarse sample (module docstring)."""
    ny, nx = fov.shape
    coarse_target = min(COARSE_TARGET, max(48, max(ny, nx) // 4))
    step = max(1, math.ceil(max(ny, nx) / coarse_target))
    feature = _finest_feature_um(specimen)
    if feature is None:
        return step
    if fov.pixel_um * CELLS_PER_FEATURE > feature:
        return 1  # unresolved: each pixel is its own cell, its transmission an area mean
    return min(step, max(1, math.floor(feature / (CELLS_PER_FEATURE * fov.pixel_um))))


def subsamples_per_side(specimen: Specimen, cell_um: float) -> int:
    """Area samples per side of a coarse cell of ``cell_um`` (1: the centre only)."""
    feature = _finest_feature_um(specimen)
    if feature is None or cell_um * CELLS_PER_FEATURE <= feature:
        return 1
    return min(MAX_SUBSAMPLES, math.ceil(SUBSAMPLES_PER_FEATURE * cell_um / feature))


def _stratified_offsets(n: int) -> NDArray[np.float64]:
    """(n², 2) offsets within a unit cell centred on 0: one jittered point per sub-square.

    The jitter is fixed (its own generator), so renders stay reproducible and the twin's
    random stream is untouched.
    """
    jitter = np.random.default_rng(n).uniform(-0.5, 0.5, size=(n, n, 2))
    grid = (np.arange(n) + 0.5) / n - 0.5
    cells = np.stack(np.meshgrid(grid, grid, indexing="xy"), axis=-1)
    return np.asarray((cells + jitter / n).reshape(-1, 2), np.float64)


def _attenuation_of(
    specimen: Specimen,
    spec_x: NDArray[np.float64],
    spec_y: NDArray[np.float64],
    cos_incidence: NDArray[np.float64],
    optics: OpticsConfig,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """(attenuation by ice and carbon, ice path, carbon path, opaque) at specimen points."""
    material = specimen.columns(spec_x, spec_y)
    path_ice = material.ice_nm / cos_incidence
    path_c = material.carbon_nm / cos_incidence
    scale = mfp_scale(optics)
    attenuation = path_ice / (optics.ice_mfp_nm * scale) + path_c / (optics.carbon_mfp_nm * scale)
    return attenuation, path_ice, path_c, np.asarray(material.opaque)


def _with_contamination(
    attenuation: NDArray[np.float64],
    lab_x: NDArray[np.float64],
    lab_y: NDArray[np.float64],
    spheres_lab: list[tuple[float, float, float]],
    optics: OpticsConfig,
) -> NDArray[np.float64]:
    """Add the chords through contamination spheres (lab x, y, radius).

    Only the rays within a sphere's x band are visited (rays sorted by x once); every other
    ray's chord is exactly zero, so the sums are those of adding every sphere everywhere.
    """
    if not spheres_lab:
        return attenuation
    contamination_mfp = optics.ice_mfp_nm * CONTAMINATION_MFP_FACTOR * mfp_scale(optics)
    shape = np.shape(attenuation)
    out = np.array(attenuation, np.float64).ravel()
    xs = np.asarray(lab_x, np.float64).ravel()
    ys = np.asarray(lab_y, np.float64).ravel()
    order = np.argsort(xs, kind="stable")
    sorted_x = xs[order]
    for sx, sy, radius in spheres_lab:
        lo, hi = np.searchsorted(sorted_x, [sx - radius - 1e-6, sx + radius + 1e-6])
        if hi <= lo:
            continue
        idx = order[lo:hi]
        d2 = (xs[idx] - sx) ** 2 + (ys[idx] - sy) ** 2
        chord_nm = 2e3 * np.sqrt(np.maximum(radius**2 - d2, 0.0))
        out[idx] = out[idx] + chord_nm / contamination_mfp
    return out.reshape(shape)


def _area_mean_transmission(
    specimen: Specimen,
    fov: FieldOfView,
    cols: NDArray[np.float64],
    rows: NDArray[np.float64],
    step: int,
    hits: RayHits,
    n_sub: int,
    spheres_lab: list[tuple[float, float, float]],
    optics: OpticsConfig,
) -> NDArray[np.float64]:
    """Mean transmission over ``n_sub``² stratified points of each cell, placed through the
    local projection (finite differences of the traced centres, per pixel)."""
    sx, sy = hits.specimen_x_um, hits.specimen_y_um
    if sx.shape[0] > 1 and sx.shape[1] > 1:
        dsx_dr, dsx_dc = np.gradient(sx, step)
        dsy_dr, dsy_dc = np.gradient(sy, step)
    else:  # one row or column of cells: the field's own scale and rotation
        lx, ly = fov.lab_from_pixels(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
        dsx_dc, dsy_dc = np.full_like(sx, lx[1] - lx[0]), np.full_like(sx, ly[1] - ly[0])
        dsx_dr, dsy_dr = np.full_like(sx, lx[2] - lx[0]), np.full_like(sx, ly[2] - ly[0])
    total = np.zeros_like(sx)
    for du, dv in _stratified_offsets(n_sub):
        dc, dr = du * step, dv * step
        sub_x = sx + dsx_dc * dc + dsx_dr * dr
        sub_y = sy + dsy_dc * dc + dsy_dr * dr
        attenuation, _, _, opaque = _attenuation_of(
            specimen, sub_x, sub_y, hits.cos_incidence, optics
        )
        lab_x, lab_y = fov.lab_from_pixels(cols + dc, rows + dr)
        attenuation = _with_contamination(attenuation, lab_x, lab_y, spheres_lab, optics)
        total += np.where(opaque, 0.0, np.exp(-attenuation))
    return np.asarray(total / n_sub**2, np.float64)


def trace_columns(
    specimen: Specimen, pose: StagePose, fov: FieldOfView, optics: OpticsConfig
) -> CoarseColumns:
    """Trace the coarse grid of ``fov`` through the specimen (see the module docstring)."""
    ny, nx = fov.shape
    step = coarse_step(specimen, fov)
    cy = np.arange(math.ceil(ny / step)) * step + step / 2
    cx = np.arange(math.ceil(nx / step)) * step + step / 2
    cols, rows = np.meshgrid(cx, cy)
    lab_x, lab_y = fov.lab_from_pixels(cols, rows)
    hits = trace_rays(specimen, pose, lab_x, lab_y)
    attenuation, path_ice, path_c, opaque = _attenuation_of(
        specimen, hits.specimen_x_um, hits.specimen_y_um, hits.cos_incidence, optics
    )
    spec_bounds = specimen_bounds(specimen, pose, fov.bounds_um(margin_um=0.05))
    spheres = specimen.contamination(spec_bounds)
    spheres_lab: list[tuple[float, float, float]] = []
    if len(spheres.radii_um):
        centres_lab = pose.to_lab(spheres.centres_um)
        spheres_lab = [
            (float(x), float(y), float(r))
            for (x, y, _), r in zip(centres_lab, spheres.radii_um, strict=True)
        ]
    attenuation = _with_contamination(attenuation, lab_x, lab_y, spheres_lab, optics)
    transmission = np.where(opaque, 0.0, np.exp(-attenuation))
    n_sub = subsamples_per_side(specimen, step * fov.pixel_um)
    if n_sub > 1:  # the cell's area mean (module docstring)
        transmission = _area_mean_transmission(
            specimen, fov, cols, rows, step, hits, n_sub, spheres_lab, optics
        )
    path_total = np.where(opaque, 0.0, path_ice + path_c)
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
