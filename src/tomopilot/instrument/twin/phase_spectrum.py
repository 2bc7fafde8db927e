"""The specimen's phase in Fourier space (step 2 of the twin's render).

The blobs in view are splatted on the pixel grid per blob width (groups of similar widths
merged); in Fourier space each group is convolved with its Gaussian and scaled by the interaction
constant, and the amorphous-ice texture is added as a fresh realisation (it carries Thon rings,
not tracking signal). The blob transforms are pruned to the columns their Gaussian reaches.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.core.units import relativistic_interaction_constant_rad_per_v_a
from tomopilot.imaging.fourier import WORKERS
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.specimen.base import BlobGroup, Specimen


def phase_spectrum(
    specimen: Specimen,
    pose: StagePose,
    fov: FieldOfView,
    specimen_bounds_um: tuple[float, float, float, float],
    path_ref_nm: float,
    voltage_kv: float,
    rng: np.random.Generator,
) -> NDArray[np.complex64]:
    """rfft2 of the phase (rad) of the field's specimen: ice texture plus blobs."""
    ny, nx = fov.shape
    px_a = fov.pixel_size_a
    sigma_int = relativistic_interaction_constant_rad_per_v_a(voltage_kv)
    if path_ref_nm > 0:  # the amorphous ice: a fresh realisation of its texture each exposure
        density = specimen.texture_density_rad2_a2(path_ref_nm)
        std = math.sqrt(ny * nx * density / px_a**2)  # E|F|² = N · S / pixel area
        spectrum = white_noise((ny, nx), rng, std)
    else:
        spectrum = np.zeros((ny, nx // 2 + 1), np.complex64)
    for group in merge_similar(specimen.blobs(specimen_bounds_um, px_a)):
        if not len(group.weights_v_a3):
            continue
        lab_xy = group.positions_um @ pose.rotation[:2].T + pose.translation[:2]
        pc, pr = fov.pixels_from_lab(lab_xy[:, 0], lab_xy[:, 1])
        margin = 4 * group.sigma_a / px_a
        ok = (pc > -margin) & (pc < nx + margin) & (pr > -margin) & (pr < ny + margin)
        if not ok.any():
            continue
        grid = splat(pc[ok], pr[ok], group.weights_v_a3[ok], (ny, nx))
        kernel = blob_kernel((ny, nx), px_a, group.sigma_a, sigma_int / px_a**2)
        add_blob_spectrum(spectrum, grid, kernel, kernel_columns(nx, px_a, group.sigma_a))
    return spectrum


def splat(
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


def white_noise(
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
def blob_kernel(
    shape: tuple[int, int], pixel_a: float, sigma_a: float, scale: float
) -> NDArray[np.float32]:
    """Fourier transform of a unit Gaussian blob of width ``sigma_a`` on the rfft grid, × scale."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel_a)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel_a)[None, :]
    return (np.exp(-2.0 * math.pi**2 * sigma_a**2 * (fx**2 + fy**2)) * scale).astype(np.float32)


KERNEL_FLOOR = 1e-9  # a blob kernel below this fraction of its peak is left out (float32: 6e-8)


def kernel_columns(nx: int, pixel_a: float, sigma_a: float) -> int:
    """How many rfft columns a Gaussian blob kernel reaches above :data:`KERNEL_FLOOR`.

    The kernel exp(−2π²σ²k²) falls below the floor beyond fx = √(ln(1/floor) / (2π²σ²)); the
    spectrum there is left out, below what float32 can hold beside the kernel's peak.
    """
    fx_max = math.sqrt(math.log(1.0 / KERNEL_FLOOR) / (2.0 * math.pi**2 * sigma_a**2))
    return min(nx // 2 + 1, math.floor(fx_max * nx * pixel_a) + 2)


def add_blob_spectrum(
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


def merge_similar(groups: list[BlobGroup], tolerance: float = 0.3) -> list[BlobGroup]:
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
