"""Image formation on the twin: specimen → phase → CTF → attenuation → expected counts.

1. Rays through a coarse grid of the field find where they meet the specimen; from the material
   they cross comes the zero-loss transmission exp(−t_ice/λ_ice − t_C/λ_C) (t along the beam, so
   a slab of normal thickness t contributes t/cos θ), and the depth map gives the defocus
   (defocus = focus + z, z along the beam: a point higher up the column is more underfocused).
2. The blobs in view are splatted on the pixel grid per blob width; in Fourier space each group
   is convolved with its Gaussian, scaled by the interaction constant, and the amorphous-ice
   texture is added as a fresh realisation (it carries Thon rings, not tracking signal).
3. The weak-phase contrast 2·(CTF ⊛ φ) is formed on a few defocus planes spanning the field and
   blended pixel by pixel, so a tilted specimen shows its defocus gradient; the CTF includes
   astigmatism, temporal and spatial envelopes and the detector's pixel MTF.
4. Expected electrons per pixel = dose × transmission × (1 + contrast) × beam factors.

Noise, gain and defects are added by the camera (camera.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.core.units import relativistic_interaction_constant_rad_per_v_a
from tomopilot.imaging.ctf import CtfOptics, envelope
from tomopilot.imaging.fourier import WORKERS
from tomopilot.instrument.twin.config import OpticsConfig
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.specimen.base import BlobGroup, Specimen
from tomopilot.instrument.twin.surface import trace_rays

COARSE_TARGET = 192  # coarse-grid samples along the longer side
CONTAMINATION_MFP_FACTOR = 0.5  # crystalline ice scatters more than vitreous ice (est.)
UNFILTERED_MFP_FACTOR = 3.0  # without a slit, most inelastic electrons still arrive (est.)


@dataclass(frozen=True)
class CentreTruth:
    """What is true at the centre of a field: defocus and its gradient, material, position."""

    defocus_um: float
    defocus_gradient_um_per_px: tuple[float, float]
    transmission: float
    path_nm: float
    specimen_um: tuple[float, float, float]
    lab_z_um: float


@dataclass
class Rendered:
    """A noise-free image and what is true about it.

    ``expected`` holds mean electrons per pixel over the padded field; ``pad`` pixels on each
    side are margin (for movie shifts) and not part of the camera image.
    """

    expected: NDArray[np.float32]
    pad: int
    centre: CentreTruth
    defocus_range_um: tuple[float, float]
    n_defocus_planes: int

    @property
    def image(self) -> NDArray[np.float32]:
        """The camera part of the field (margins cropped)."""
        p = self.pad
        return (
            self.expected[p : self.expected.shape[0] - p, p : self.expected.shape[1] - p]
            if p
            else self.expected
        )


@dataclass(frozen=True)
class _FourierTerms:
    """Per-field constants on the rfft grid: χ = base·Δz + astig − cs (Δz in Å, underfocus +)."""

    k2: NDArray[np.float32]
    base: NDArray[np.float32]
    astig: NDArray[np.float32]
    cs_minus_amp: NDArray[np.float32]
    neg_envelope: NDArray[np.float32]


@lru_cache(maxsize=16)
def _fourier_terms(
    shape: tuple[int, int],
    pixel_a: float,
    astigmatism_um: float,
    astigmatism_angle_deg: float,
    ctf_optics: CtfOptics,
) -> _FourierTerms:
    """The CTF's ingredients on the rfft grid, cached per field and optics."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel_a)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel_a)[None, :]
    k2 = fy**2 + fx**2
    lam = ctf_optics.wavelength_a
    cos2 = np.cos(2 * (np.arctan2(fy, fx) - math.radians(astigmatism_angle_deg)))
    base = math.pi * lam * k2
    astig = base * (astigmatism_um * 1e4 / 2.0) * cos2
    cs = 0.5 * math.pi * ctf_optics.cs_mm * 1e7 * lam**3 * k2 * k2
    env = envelope(np.sqrt(k2), ctf_optics, -3.0)
    mtf = np.sinc(fx * pixel_a) * np.sinc(fy * pixel_a)
    return _FourierTerms(
        k2=k2.astype(np.float32),
        base=base.astype(np.float32),
        astig=astig.astype(np.float32),
        cs_minus_amp=(cs - ctf_optics.amplitude_phase_rad).astype(np.float32),
        neg_envelope=(-env * mtf).astype(np.float32),
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


def _ctf_optics(optics: OpticsConfig) -> CtfOptics:
    return CtfOptics(
        voltage_kv=optics.voltage_kv,
        cs_mm=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
        cc_mm=optics.cc_mm,
        energy_spread_ev=optics.energy_spread_ev,
        illumination_semiangle_mrad=optics.illumination_semiangle_mrad,
    )


def _splat(
    cols: NDArray[np.float64],
    rows: NDArray[np.float64],
    weights: NDArray[np.float32],
    shape: tuple[int, int],
) -> NDArray[np.float32]:
    """Bilinear deposit of weights at continuous pixel coordinates (pixel i spans [i, i+1))."""
    ny, nx = shape
    x = cols - 0.5
    y = rows - 0.5
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    xi = np.concatenate([x0, x0 + 1, x0, x0 + 1])
    yi = np.concatenate([y0, y0, y0 + 1, y0 + 1])
    w = np.concatenate(
        [
            weights * (1 - fx) * (1 - fy),
            weights * fx * (1 - fy),
            weights * (1 - fx) * fy,
            weights * fx * fy,
        ]
    )
    ok = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
    out = np.bincount(yi[ok] * nx + xi[ok], weights=w[ok], minlength=ny * nx)
    return out.reshape(ny, nx).astype(np.float32)


def _white_noise(shape: tuple[int, int], rng: np.random.Generator) -> NDArray[np.complex64]:
    """Fresh iid complex noise on the rfft grid with E|z|² = 1.

    Uniform real and imaginary parts (variance ½ each) cost a third of Gaussian draws; after
    the inverse transform every pixel sums millions of them, so the texture is Gaussian anyway.
    """
    ny, nx = shape
    half_width = np.float32(math.sqrt(1.5))  # U(−a, a) has variance a²/3 = ½
    draws = rng.random((2, ny, nx // 2 + 1), dtype=np.float32)
    draws *= np.float32(2.0) * half_width
    draws -= half_width
    noise = np.empty((ny, nx // 2 + 1), np.complex64)
    noise.real = draws[0]
    noise.imag = draws[1]
    return noise


@lru_cache(maxsize=32)
def _blob_kernel(
    shape: tuple[int, int], pixel_a: float, sigma_a: float, scale: float
) -> NDArray[np.float32]:
    """Fourier transform of a unit Gaussian blob of width ``sigma_a`` on the rfft grid, × scale."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel_a)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel_a)[None, :]
    return (np.exp(-2.0 * math.pi**2 * sigma_a**2 * (fx**2 + fy**2)) * scale).astype(np.float32)


def _upsample(
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


def render(
    specimen: Specimen,
    pose: StagePose,
    field: FieldOfView,
    focus_um: float,
    optics: OpticsConfig,
    electrons_per_pixel: float,
    rng: np.random.Generator,
    *,
    pad: int = 0,
    beam_factor: float = 1.0,
    plane_tolerance_rad: float = 1.5,
) -> Rendered:
    """Render the expected electrons per pixel of one exposure (see module docstring)."""
    inner = field
    fov = field.padded(pad) if pad else field
    ny, nx = fov.shape
    px_a = fov.pixel_size_a
    lam = _ctf_optics(optics).wavelength_a

    # 1. Coarse ray tracing: transmission, path length and depth along the beam.
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
    mfp_scale = 1.0 if optics.slit_width_ev > 0 else UNFILTERED_MFP_FACTOR
    attenuation = path_ice / (optics.ice_mfp_nm * mfp_scale) + path_c / (
        optics.carbon_mfp_nm * mfp_scale
    )
    spec_bounds = _specimen_bounds(specimen, pose, fov.bounds_um(margin_um=0.05))
    spheres = specimen.contamination(spec_bounds)
    if len(spheres.radii_um):
        centres_lab = pose.to_lab(spheres.centres_um)
        contamination_mfp = optics.ice_mfp_nm * CONTAMINATION_MFP_FACTOR * mfp_scale
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

    # 2. Blobs → phase in Fourier space.
    sigma_int = relativistic_interaction_constant_rad_per_v_a(optics.voltage_kv)
    terms = _fourier_terms(
        (ny, nx),
        px_a,
        optics.astigmatism_um,
        optics.astigmatism_angle_deg,
        _ctf_optics(optics),
    )
    k2 = terms.k2
    spectrum = np.zeros(k2.shape, np.complex64)
    for group in _merge_similar(specimen.blobs(spec_bounds, px_a)):
        if not len(group.weights_v_a3):
            continue
        lab_xy = group.positions_um @ pose.rotation[:2].T + pose.translation[:2]
        pc, pr = fov.pixels_from_lab(lab_xy[:, 0], lab_xy[:, 1])
        margin = 4 * group.sigma_a / px_a
        ok = (pc > -margin) & (pc < nx + margin) & (pr > -margin) & (pr < ny + margin)
        if not ok.any():
            continue
        grid = _splat(pc[ok], pr[ok], group.weights_v_a3[ok], (ny, nx))
        kernel = _blob_kernel((ny, nx), px_a, group.sigma_a, sigma_int / px_a**2)
        blob_spectrum = sfft.rfft2(grid, workers=WORKERS)
        blob_spectrum *= kernel
        spectrum += blob_spectrum
    if path_ref > 0:
        density = specimen.texture_density_rad2_a2(path_ref)
        std = math.sqrt(ny * nx * density / px_a**2)  # E|F|² = N · S / pixel area
        noise = _white_noise((ny, nx), rng)
        noise *= np.float32(std)
        spectrum += noise

    # 3. Weak-phase contrast on defocus planes, blended per pixel.
    d_lo = focus_um + height_range[0]
    d_hi = focus_um + height_range[1]
    k_use = min(0.5 / px_a, 0.1)
    tolerance_um = plane_tolerance_rad / (math.pi * lam * k_use**2) * 1e-4
    n_planes = int(min(12, max(1, math.ceil((d_hi - d_lo) / tolerance_um) + 1)))
    planes = np.linspace(d_lo, d_hi, n_planes) if n_planes > 1 else np.array([0.5 * (d_lo + d_hi)])
    coarse_defocus = focus_um + hits.lab_z_um
    contrast = np.zeros((ny, nx), np.float32)
    filtered = np.empty_like(spectrum)
    for index, d_um in enumerate(planes):
        # In place: fresh 2048² temporaries cost as much in page faults as the arithmetic.
        arg = terms.base * np.float32(-d_um * 1e4)
        arg += terms.astig
        arg -= terms.cs_minus_amp
        np.sin(arg, out=arg)
        arg *= terms.neg_envelope
        np.multiply(spectrum, arg, out=filtered)
        image: NDArray[np.float32] = np.asarray(
            sfft.irfft2(filtered, s=(ny, nx), workers=WORKERS, overwrite_x=True), np.float32
        )
        if n_planes == 1:
            contrast = image
            break
        spacing = float(planes[1] - planes[0])
        lo = -np.inf if index == 0 else d_um - spacing
        hi = np.inf if index == n_planes - 1 else d_um + spacing
        box = _support_box(coarse_defocus, lo, hi, step, (ny, nx))
        if box is None:
            continue
        r0, r1, c0, c1 = box
        weight = _defocus_model(focus_um, coeffs, (r0, r1, c0, c1), (ny, nx))
        weight -= np.float32(d_um)  # signed distance from this plane (µm)
        beyond = None
        if index == 0:
            beyond = weight < 0
        elif index == n_planes - 1:
            beyond = weight > 0
        np.abs(weight, out=weight)
        weight *= np.float32(-1.0 / spacing)
        weight += np.float32(1.0)
        np.clip(weight, 0.0, 1.0, out=weight)
        if beyond is not None:
            weight[beyond] = 1.0
        weight *= image[r0:r1, c0:c1]
        contrast[r0:r1, c0:c1] += weight

    # 4. Expected electrons.
    t_full = _upsample(transmission, step, (ny, nx))
    m_full = _upsample(modulation, step, (ny, nx), nearest=True)
    del k2
    expected = contrast  # reused in place: 1 + 2·contrast·modulation, clipped, attenuated
    expected *= m_full
    expected *= np.float32(2.0)
    expected += np.float32(1.0)
    np.maximum(expected, np.float32(0.0), out=expected)
    expected *= t_full
    expected *= np.float32(electrons_per_pixel * beam_factor)

    return Rendered(
        expected=expected,
        pad=pad,
        centre=centre_truth(specimen, pose, inner, focus_um, optics),
        defocus_range_um=(float(d_lo), float(d_hi)),
        n_defocus_planes=n_planes,
    )


def centre_truth(
    specimen: Specimen, pose: StagePose, field: FieldOfView, focus_um: float, optics: OpticsConfig
) -> CentreTruth:
    """The truth at a field's centre, without rendering the image."""
    ny, nx = field.shape
    centre = trace_rays(
        specimen, pose, np.array([field.centre_um[0]]), np.array([field.centre_um[1]])
    )
    col_axis = field.lab_from_pixels(np.array([nx / 2 + 1.0]), np.array([ny / 2]))
    row_axis = field.lab_from_pixels(np.array([nx / 2]), np.array([ny / 2 + 1.0]))
    dz_col = trace_rays(specimen, pose, *col_axis).lab_z_um[0] - centre.lab_z_um[0]
    dz_row = trace_rays(specimen, pose, *row_axis).lab_z_um[0] - centre.lab_z_um[0]
    cmat = specimen.columns(centre.specimen_x_um, centre.specimen_y_um)
    cos_c = float(centre.cos_incidence[0])
    mfp_scale = 1.0 if optics.slit_width_ev > 0 else UNFILTERED_MFP_FACTOR
    transmission = 0.0
    if not cmat.opaque[0]:
        transmission = math.exp(
            -cmat.ice_nm[0] / cos_c / (optics.ice_mfp_nm * mfp_scale)
            - cmat.carbon_nm[0] / cos_c / (optics.carbon_mfp_nm * mfp_scale)
        )
    return CentreTruth(
        defocus_um=float(focus_um + centre.lab_z_um[0]),
        defocus_gradient_um_per_px=(float(dz_col), float(dz_row)),
        transmission=transmission,
        path_nm=float((cmat.ice_nm[0] + cmat.carbon_nm[0]) / cos_c),
        specimen_um=(
            float(centre.specimen_x_um[0]),
            float(centre.specimen_y_um[0]),
            float(centre.specimen_z_um[0]),
        ),
        lab_z_um=float(centre.lab_z_um[0]),
    )


def _support_box(
    coarse_defocus: NDArray[np.float64], lo: float, hi: float, step: int, shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """Pixel box (r0, r1, c0, c1) holding every pixel whose defocus may lie in (lo, hi)."""
    slack = float(np.max(np.abs(np.diff(coarse_defocus, axis=0)), initial=0.0)) + float(
        np.max(np.abs(np.diff(coarse_defocus, axis=1)), initial=0.0)
    )
    inside = (coarse_defocus > lo - slack) & (coarse_defocus < hi + slack)
    if not inside.any():
        return None
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    return (
        int(rows[0] * step),
        min(shape[0], int((rows[-1] + 1) * step)),
        int(cols[0] * step),
        min(shape[1], int((cols[-1] + 1) * step)),
    )


def _defocus_model(
    focus_um: float,
    coeffs: NDArray[np.float64],
    box: tuple[int, int, int, int],
    shape: tuple[int, int],
) -> NDArray[np.float32]:
    """Defocus (µm) at pixel centres inside ``box`` from the fitted quadratic depth model."""
    r0, r1, c0, c1 = box
    ny, nx = shape
    u = (np.arange(c0, c1, dtype=np.float32) + 0.5 - nx / 2)[None, :]
    v = (np.arange(r0, r1, dtype=np.float32) + 0.5 - ny / 2)[:, None]
    a, bu, bv, cuu, cvv, cuv = (np.float32(c) for c in coeffs)
    depth = a + bu * u + bv * v + cuu * u * u + cvv * v * v + cuv * u * v
    return np.float32(focus_um) + depth


def _merge_similar(groups: list[BlobGroup], tolerance: float = 0.3) -> list[BlobGroup]:
    """Merge blob groups whose widths differ by less than ``tolerance`` (relative).

    Each merged group is convolved once, at the weight-averaged width; a 20 % change of a
    2 nm blob's width is far below what a low-dose image resolves, and it saves an FFT.
    """
    merged: list[BlobGroup] = []
    for group in sorted((g for g in groups if len(g.weights_v_a3)), key=lambda g: g.sigma_a):
        last = merged[-1] if merged else None
        if last is not None and group.sigma_a <= last.sigma_a * (1 + tolerance):
            total_last = float(last.weights_v_a3.sum())
            total_new = float(group.weights_v_a3.sum())
            sigma = (last.sigma_a * total_last + group.sigma_a * total_new) / max(
                total_last + total_new, 1e-30
            )
            merged[-1] = BlobGroup(
                round(sigma, 1),
                np.concatenate([last.positions_um, group.positions_um]),
                np.concatenate([last.weights_v_a3, group.weights_v_a3]),
            )
        else:
            merged.append(group)
    return merged


def _specimen_bounds(
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
