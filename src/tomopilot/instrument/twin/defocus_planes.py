"""Weak-phase contrast on defocus planes, blended pixel by pixel (step 3 of the twin's render).

The contrast 2·(CTF ⊛ φ) is formed on a few defocus planes spanning the field, as many as keep
the CTF's phase within a tolerance between neighbours, and blended per pixel by a hat weight
on the pixel's defocus from the smooth depth model, so a tilted specimen shows its defocus
gradient. The CTF includes astigmatism, temporal and spatial envelopes and the detector's pixel
MTF. Each plane is transformed back only on the rows its pixels can need (a pruned FFT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.imaging.ctf import CtfOptics, envelope
from tomopilot.imaging.fourier import WORKERS
from tomopilot.instrument.twin.config import OpticsConfig
from tomopilot.instrument.twin.row_bands import in_bands


def defocus_planes(
    d_lo_um: float, d_hi_um: float, pixel_a: float, wavelength_a: float, tolerance_rad: float
) -> NDArray[np.float64]:
    """Defocus planes spanning [d_lo, d_hi], close enough that the CTF phase between two
    neighbours differs by at most ``tolerance_rad`` up to min(Nyquist, 0.1 Å⁻¹); at most 12."""
    k_use = min(0.5 / pixel_a, 0.1)
    tolerance_um = tolerance_rad / (math.pi * wavelength_a * k_use**2) * 1e-4
    n_planes = int(min(12, max(1, math.ceil((d_hi_um - d_lo_um) / tolerance_um) + 1)))
    if n_planes == 1:
        return np.array([0.5 * (d_lo_um + d_hi_um)])
    return np.linspace(d_lo_um, d_hi_um, n_planes)


def weak_phase_contrast(
    spectrum: NDArray[np.complex64],
    terms: FourierTerms,
    planes: NDArray[np.float64],
    shape: tuple[int, int],
    focus_um: float,
    coarse_defocus_um: NDArray[np.float64],
    depth_coeffs: NDArray[np.float64],
    step: int,
) -> NDArray[np.float32]:
    """CTF ⊛ φ on every plane of ``planes``, blended per pixel (``spectrum`` is left as is)."""
    ny, nx = shape
    n_planes = len(planes)
    contrast = np.zeros((ny, nx), np.float32)
    filtered = np.empty_like(spectrum)
    arg = np.empty(terms.base.shape, np.float32)
    for index, d_um in enumerate(planes):
        ctf_pass = partial(ctf_plane, terms, spectrum, filtered, arg, float(d_um))
        in_bands(ny, nx // 2 + 1, ctf_pass)
        if n_planes == 1:
            return inverse_rows(filtered, (ny, nx), 0, ny)
        spacing = float(planes[1] - planes[0])
        lo = -np.inf if index == 0 else d_um - spacing
        hi = np.inf if index == n_planes - 1 else d_um + spacing
        box = support_box(coarse_defocus_um, lo, hi, step, (ny, nx))
        if box is None:
            continue
        r0, r1, c0, c1 = box
        image = inverse_rows(filtered, (ny, nx), r0, r1)

        edge = -1 if index == 0 else (1 if index == n_planes - 1 else 0)
        blend = partial(
            blend_plane,
            contrast,
            image,
            (r0, r1, c0, c1),
            focus_um - d_um,
            depth_coeffs,
            spacing,
            edge,
        )
        in_bands(r1 - r0, c1 - c0, blend)
    return contrast


@dataclass(frozen=True)
class FourierTerms:
    """Per-field constants on the rfft grid: χ = base·Δz + astig − cs (Δz in Å, underfocus +).

    ``astig_minus_cs`` is astig − (cs − amplitude phase), so a plane's sine argument is
    base·Δz + astig_minus_cs.
    """

    k2: NDArray[np.float32]
    base: NDArray[np.float32]
    astig_minus_cs: NDArray[np.float32]
    neg_envelope: NDArray[np.float32]


@lru_cache(maxsize=16)
def fourier_terms(
    shape: tuple[int, int],
    pixel_a: float,
    astigmatism_um: float,
    astigmatism_angle_deg: float,
    ctf_optics: CtfOptics,
) -> FourierTerms:
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
    return FourierTerms(
        k2=k2.astype(np.float32),
        base=base.astype(np.float32),
        astig_minus_cs=(
            astig.astype(np.float32) - (cs - ctf_optics.amplitude_phase_rad).astype(np.float32)
        ),
        neg_envelope=(-env * mtf).astype(np.float32),
    )


def ctf_optics(optics: OpticsConfig) -> CtfOptics:
    return CtfOptics(
        voltage_kv=optics.voltage_kv,
        cs_mm=optics.cs_mm,
        amplitude_contrast=optics.amplitude_contrast,
        cc_mm=optics.cc_mm,
        energy_spread_ev=optics.energy_spread_ev,
        illumination_semiangle_mrad=optics.illumination_semiangle_mrad,
    )


def inverse_rows(
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


def ctf_plane(
    terms: FourierTerms,
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


def blend_plane(
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
    weight = defocus_model(focus_minus_plane_um, coeffs, (r0 + a, r0 + b, c0, c1), shape)
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


def support_box(
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


def defocus_model(
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
