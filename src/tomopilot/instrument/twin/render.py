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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial

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
BAND_ELEMENTS = 1 << 16  # elements per row band of the element-wise passes (stays in cache)

_POOL = ThreadPoolExecutor(max_workers=WORKERS)


def _in_bands(n_rows: int, row_elements: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(a, b)`` over row bands [a, b) of ``n_rows`` rows, spread over the workers.

    Each band is small enough to stay in cache through a chain of element-wise passes; numpy
    releases the GIL in them, so the workers run at once. Bands never overlap, and each
    element is computed the same way whatever the band, so the result is the same for any
    worker count.
    """
    step = max(1, BAND_ELEMENTS // max(1, row_elements))
    bands = [(a, min(n_rows, a + step)) for a in range(0, n_rows, step)]
    n_workers = min(WORKERS, len(bands))

    def run(share: int) -> None:
        for a, b in bands[share::n_workers]:
            work(a, b)

    if n_workers <= 1:
        run(0)
    else:
        list(_POOL.map(run, range(n_workers)))


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
    """Per-field constants on the rfft grid: χ = base·Δz + astig − cs (Δz in Å, underfocus +).

    ``astig_minus_cs`` is astig − (cs − amplitude phase), so a plane's sine argument is
    base·Δz + astig_minus_cs.
    """

    k2: NDArray[np.float32]
    base: NDArray[np.float32]
    astig_minus_cs: NDArray[np.float32]
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
        astig_minus_cs=(
            astig.astype(np.float32) - (cs - ctf_optics.amplitude_phase_rad).astype(np.float32)
        ),
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
    """Bilinear deposit of weights at continuous pixel coordinates (pixel i spans [i, i+1)).

    Deposited on a grid one pixel larger on the low side of each axis, so every corner of a
    point whose 2×2 footprint touches the image lands in it; the margin is then cut off.
    """
    ny, nx = shape
    x = cols - 0.5
    y = rows - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    touches = (x0 >= -1) & (x0 < nx) & (y0 >= -1) & (y0 < ny)
    if not touches.all():
        x, y, x0, y0, weights = x[touches], y[touches], x0[touches], y0[touches], weights[touches]
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    width = nx + 2  # columns −1 … nx, rows −1 … ny
    base = (y0.astype(np.int64) + 1) * width + (x0.astype(np.int64) + 1)
    index = np.concatenate([base, base + 1, base + width, base + width + 1])
    gx = 1 - fx
    gy = 1 - fy
    w = np.concatenate([weights * gx * gy, weights * fx * gy, weights * gx * fy, weights * fx * fy])
    out = np.bincount(index, weights=w, minlength=(ny + 2) * width).reshape(ny + 2, width)
    return out[1 : ny + 1, 1 : nx + 1].astype(np.float32)


def _white_noise(
    shape: tuple[int, int], rng: np.random.Generator, std: float
) -> NDArray[np.complex64]:
    """Fresh iid complex noise on the rfft grid with E|z|² = std².

    Uniform real and imaginary parts (variance std²/2 each) cost a third of Gaussian draws;
    after the inverse transform every pixel sums millions of them, so the texture is Gaussian
    anyway. They are drawn straight into the complex array (real, imaginary interleaved).
    """
    ny, nx = shape
    half_width = np.float32(std * math.sqrt(1.5))  # U(−a, a) has variance a²/3 = std²/2
    noise = np.empty((ny, nx // 2 + 1), np.complex64)
    parts = noise.view(np.float32)
    rng.random(dtype=np.float32, out=parts)
    parts *= np.float32(2.0) * half_width
    parts -= half_width
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


KERNEL_FLOOR = 1e-9  # a blob kernel below this fraction of its peak is left out (float32: 6e-8)


def _kernel_columns(nx: int, pixel_a: float, sigma_a: float) -> int:
    """How many rfft columns a Gaussian blob kernel reaches above :data:`KERNEL_FLOOR`.

    The kernel exp(−2π²σ²k²) falls below the floor beyond fx = √(ln(1/floor) / (2π²σ²)); the
    spectrum there is left out, below what float32 can hold beside the kernel's peak.
    """
    fx_max = math.sqrt(math.log(1.0 / KERNEL_FLOOR) / (2.0 * math.pi**2 * sigma_a**2))
    return min(nx // 2 + 1, math.floor(fx_max * nx * pixel_a) + 2)


def _add_blob_spectrum(
    spectrum: NDArray[np.complex64],
    grid: NDArray[np.float32],
    kernel: NDArray[np.float32],
    n_columns: int,
) -> None:
    """``spectrum += rfft2(grid) · kernel`` on the kernel's first ``n_columns`` columns.

    rfft2 is a real transform along the rows followed by a complex one along the columns; the
    second is done only on the columns the kernel reaches (a pruned FFT: the same numbers up
    to float rounding where the kernel is above :data:`KERNEL_FLOOR`).
    """
    rows = sfft.rfft(grid, axis=1, workers=WORKERS)
    if n_columns < rows.shape[1]:
        rows = rows[:, :n_columns]
    columns = sfft.fft(rows, axis=0, workers=WORKERS, overwrite_x=True)
    columns *= kernel[:, :n_columns]
    spectrum[:, :n_columns] += columns


def _inverse_rows(
    spectrum: NDArray[np.complex64], shape: tuple[int, int], r0: int, r1: int
) -> NDArray[np.float32]:
    """Rows ``r0:r1`` of ``irfft2(spectrum, s=shape)`` (the spectrum is overwritten).

    The inverse is a complex transform along the columns, then a real one along the rows; the
    second is done only on the rows wanted (a pruned FFT: the same numbers up to rounding).
    """
    ny, nx = shape
    if r0 == 0 and r1 == ny:
        return np.asarray(
            sfft.irfft2(spectrum, s=shape, workers=WORKERS, overwrite_x=True), np.float32
        )
    columns = sfft.ifft(spectrum, axis=0, workers=WORKERS, overwrite_x=True)
    return np.asarray(sfft.irfft(columns[r0:r1], n=nx, axis=1, workers=WORKERS), np.float32)


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
    if path_ref > 0:  # the amorphous ice: a fresh realisation of its texture each exposure
        density = specimen.texture_density_rad2_a2(path_ref)
        std = math.sqrt(ny * nx * density / px_a**2)  # E|F|² = N · S / pixel area
        spectrum = _white_noise((ny, nx), rng, std)
    else:
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
        _add_blob_spectrum(spectrum, grid, kernel, _kernel_columns(nx, px_a, group.sigma_a))
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
    arg = np.empty(terms.base.shape, np.float32)
    for index, d_um in enumerate(planes):
        ctf_pass = partial(_ctf_plane, terms, spectrum, filtered, arg, float(d_um))
        _in_bands(ny, nx // 2 + 1, ctf_pass)
        if n_planes == 1:
            contrast = _inverse_rows(filtered, (ny, nx), 0, ny)
            break
        spacing = float(planes[1] - planes[0])
        lo = -np.inf if index == 0 else d_um - spacing
        hi = np.inf if index == n_planes - 1 else d_um + spacing
        box = _support_box(coarse_defocus, lo, hi, step, (ny, nx))
        if box is None:
            continue
        r0, r1, c0, c1 = box
        image = _inverse_rows(filtered, (ny, nx), r0, r1)

        edge = -1 if index == 0 else (1 if index == n_planes - 1 else 0)
        blend = partial(
            _blend_plane, contrast, image, (r0, r1, c0, c1), focus_um - d_um, coeffs, spacing, edge
        )
        _in_bands(r1 - r0, c1 - c0, blend)

    # 4. Expected electrons.
    t_full = _upsample(transmission, step, (ny, nx))
    m_full = _upsample(modulation, step, (ny, nx), nearest=True)
    del k2
    expected = contrast  # reused in place: 1 + 2·contrast·modulation, clipped, attenuated
    counts_scale = np.float32(electrons_per_pixel * beam_factor)

    def to_electrons(a: int, b: int) -> None:
        band = expected[a:b]
        band *= m_full[a:b]
        band *= np.float32(2.0)
        band += np.float32(1.0)
        np.maximum(band, np.float32(0.0), out=band)
        band *= t_full[a:b]
        band *= counts_scale

    _in_bands(ny, nx, to_electrons)

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


def _ctf_plane(
    terms: _FourierTerms,
    spectrum: NDArray[np.complex64],
    filtered: NDArray[np.complex64],
    arg: NDArray[np.float32],
    defocus_um: float,
    a: int,
    b: int,
) -> None:
    """Rows ``a:b`` of ``filtered = spectrum · CTF`` at one defocus (``arg`` is scratch)."""
    band = arg[a:b]
    np.multiply(terms.base[a:b], np.float32(-defocus_um * 1e4), out=band)
    band += terms.astig_minus_cs[a:b]
    np.sin(band, out=band)
    band *= terms.neg_envelope[a:b]
    np.multiply(spectrum[a:b], band, out=filtered[a:b])


def _blend_plane(
    contrast: NDArray[np.float32],
    image: NDArray[np.float32],
    box: tuple[int, int, int, int],
    focus_minus_plane_um: float,
    coeffs: NDArray[np.float64],
    spacing_um: float,
    edge: int,
    a: int,
    b: int,
) -> None:
    """Add rows ``a:b`` of ``box`` of one defocus plane's image, hat-weighted, to ``contrast``.

    ``image`` holds the box's rows; the weight is max(0, 1 − |defocus − plane| / spacing), and
    1 beyond the first plane (``edge`` −1) or the last (``edge`` +1).
    """
    r0, _, c0, c1 = box
    shape = contrast.shape
    weight = _defocus_model(focus_minus_plane_um, coeffs, (r0 + a, r0 + b, c0, c1), shape)
    if edge < 0:
        np.maximum(weight, np.float32(0.0), out=weight)
    elif edge > 0:
        np.minimum(weight, np.float32(0.0), out=weight)
    np.abs(weight, out=weight)
    weight *= np.float32(-1.0 / spacing_um)
    weight += np.float32(1.0)
    np.maximum(weight, np.float32(0.0), out=weight)
    weight *= image[a:b, c0:c1]
    contrast[r0 + a : r0 + b, c0:c1] += weight


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
    """Defocus (µm) at pixel centres inside ``box`` from the fitted quadratic depth model.

    Built from its row and column parts plus the one cross term: three passes over the box.
    """
    r0, r1, c0, c1 = box
    ny, nx = shape
    u = np.arange(c0, c1, dtype=np.float64) + 0.5 - nx / 2
    v = np.arange(r0, r1, dtype=np.float64) + 0.5 - ny / 2
    a, bu, bv, cuu, cvv, cuv = (float(c) for c in coeffs)
    by_row = (focus_um + a + bv * v + cvv * v * v).astype(np.float32)
    by_col = (bu * u + cuu * u * u).astype(np.float32)
    out = np.multiply.outer((cuv * v).astype(np.float32), u.astype(np.float32))
    out += by_col[None, :]
    out += by_row[:, None]
    return out


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
