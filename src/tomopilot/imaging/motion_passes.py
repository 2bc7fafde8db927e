"""The passes of the global frame alignment: integer-peak searches and sub-pixel refinement.

Used by :func:`~tomopilot.imaging.motion_global.align_spectra`. All work on rfft2-layout
spectra cropped to a correlation grid; frequencies are in cycles per *original* pixel and shifts
(x, y) in original pixels, positive = content displacement.

Examples
--------
>>> import numpy as np
>>> rows, cols = phase_ramps(np.fft.fftfreq(4), np.fft.rfftfreq(4), np.array([[1.0, 0.0]]))
>>> np.round(cols[0, 0], 3).tolist()  # exp(+2πi f x) for a 1-pixel shift in x
[(1+0j), 1j, (-1+0j)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.imaging.correlation_peak import locate_peak, refine_axis

ComplexStack = NDArray[np.complex64]
T = TypeVar("T")


def crop_spectra(
    spectra: ComplexStack | Sequence[NDArray[np.complexfloating]],
    shape: tuple[int, int],
    box_yx: tuple[int, int],
) -> ComplexStack:
    """Crop rfft2-layout spectra of images of ``shape`` to a (box_y, box_x) grid (even sides).

    ``spectra`` is one spectrum, a stack, or a sequence of 2D spectra (stacked on output).
    """
    ny, _ = shape
    by, bx = box_yx
    half = by // 2
    columns = bx // 2 + 1
    if not isinstance(spectra, np.ndarray):
        return np.stack([crop_spectra(s, shape, box_yx) for s in spectra])
    return np.concatenate(
        [spectra[..., :half, :columns], spectra[..., ny - half :, :columns]], axis=-2
    ).astype(np.complex64, copy=False)


def crop_spectra_into(
    spectrum: NDArray[np.complexfloating], shape: tuple[int, int], out: NDArray[np.complex64]
) -> None:
    """:func:`crop_spectra` of one 2D spectrum into ``out`` ((box_y, box_x // 2 + 1))."""
    half = out.shape[0] // 2
    columns = out.shape[1]
    np.copyto(out[:half], spectrum[:half, :columns], casting="same_kind")
    np.copyto(out[half:], spectrum[shape[0] - half :, :columns], casting="same_kind")


def phase_ramps(
    fy_per_px: NDArray[np.float64], fx_per_px: NDArray[np.float64], shifts_px: NDArray[np.float64]
) -> tuple[NDArray[np.complex64], NDArray[np.complex64]]:
    """Separable factors exp(+2πi f·t) that move content by −t.

    ``fy_per_px``/``fx_per_px`` are the rfft2 grid's frequencies in cycles per *original* pixel
    and ``shifts_px`` (n, 2) the (x, y) displacements in original pixels. Returns row factors
    (n, ny, 1) and column factors (n, 1, nx//2 + 1).
    """
    t = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    row = np.exp(2j * np.pi * fy_per_px[None, :] * t[:, 1:2]).astype(np.complex64)
    col = np.exp(2j * np.pi * fx_per_px[None, :] * t[:, 0:1]).astype(np.complex64)
    return row[:, :, None], col[:, None, :]


def coarse_shifts(
    cropped: ComplexStack,
    weight: NDArray[np.float32],
    scales: tuple[float, float],
    shifts: NDArray[np.float64] | None,
    fy: NDArray[np.float64],
    fx: NDArray[np.float64],
    max_shift_px: float,
    coarse_size: int,
) -> tuple[NDArray[np.float64], float]:
    """Integer-peak alignment on a small grid, good to about a correlation-grid pixel.

    With ``shifts`` None, two starts are tried: all frames at zero, and the running sum of
    consecutive-frame shifts (which reaches large drifts); the one whose leave-one-out
    correlations end highest wins. Returns the shifts and that summed correlation.
    """
    size_y = cropped.shape[1]
    size_x = 2 * (cropped.shape[2] - 1)
    cy = min(coarse_size, size_y)
    cx = min(round(coarse_size * size_x / size_y) // 2 * 2, size_x)
    small = crop_spectra(cropped, (size_y, size_x), (cy, cx))
    w = np.concatenate(
        [weight[: cy // 2, : cx // 2 + 1], weight[size_y - cy // 2 :, : cx // 2 + 1]]
    )
    sfy = np.concatenate([fy[: cy // 2], fy[size_y - cy // 2 :]])
    sfx = fx[: cx // 2 + 1]
    scale_y, scale_x = scales[0] * size_y / cy, scales[1] * size_x / cx
    radius = max_shift_px / max(scale_y, scale_x)
    n = small.shape[0]
    if shifts is None:
        pairs = sfft.irfft2(np.conj(small[:-1]) * small[1:] * w, s=(cy, cx), axes=(1, 2))
        steps = np.array([locate_peak(c, radius) for c in pairs]) * (scale_x, scale_y)
        running = np.vstack([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        starts = [np.zeros((n, 2)), running]
    else:
        starts = [shifts]
    best: tuple[NDArray[np.float64], float] | None = None
    for start in starts:
        current = start - start.mean(axis=0)
        score = -np.inf
        for _ in range(10):
            row, col = phase_ramps(sfy, sfx, current)
            aligned = small * row * col
            total = aligned.sum(axis=0)
            ccfs = sfft.irfft2(
                np.conj(total[None] - aligned) * aligned * w, s=(cy, cx), axes=(1, 2)
            )
            increments = np.array([locate_peak(c, radius) for c in ccfs]) * (scale_x, scale_y)
            score = float(sum(c.max() for c in ccfs))
            increments -= increments.mean(axis=0)
            current = current + increments
            if float(np.abs(increments).max()) < 0.5 * max(scale_x, scale_y):
                break
        if best is None or score > best[1]:
            best = (current, score)
    assert best is not None
    return best


def map_row_blocks(
    height: int,
    block: int,
    work: Callable[[int], T],
    pool: Executor | None = None,
    threads: int = 1,
) -> list[T]:
    """``[work(top) for top in range(0, height, block)]``, on ``threads`` threads of ``pool``.

    Each thread takes a contiguous band of blocks; the list is in block order whatever the
    threads, so sums over it do not depend on them.
    """
    tops = list(range(0, height, block))
    if pool is None or threads <= 1 or len(tops) < 2:
        return [work(top) for top in tops]
    bounds = np.linspace(0, len(tops), min(threads, len(tops)) + 1).astype(int)

    def band(k: int) -> list[T]:
        return [work(top) for top in tops[bounds[k] : bounds[k + 1]]]

    futures = [pool.submit(band, k) for k in range(len(bounds) - 1)]
    return [value for future in futures for value in future.result()]


def aligned_total(
    cropped: ComplexStack,
    rows: NDArray[np.complex64],
    cols: NDArray[np.complex64],
    block: int = 64,
    pool: Executor | None = None,
    threads: int = 1,
) -> NDArray[np.complex64]:
    """Σ_i C_i · row_i · col_i, a block of rows at a time (the temporaries stay in cache)."""
    height = cropped.shape[1]
    total = np.empty(cropped.shape[1:], np.complex64)

    def rows_from(top: int) -> None:
        part = cropped[:, top : top + block] * cols
        part *= rows[:, top : top + block]
        total[top : top + block] = part.sum(axis=0)

    map_row_blocks(height, block, rows_from, pool, threads)
    return total


def _real_local_ccf(
    own: NDArray[np.float32],
    fy: NDArray[np.float64],
    fx: NDArray[np.float64],
    step: float,
    fold: NDArray[np.float32],
) -> NDArray[np.float64]:
    """:func:`local_ccf` of real (n, h, w) products: two real matrix products per frame.

    The row kernel's real and imaginary parts are applied as one (6, h) real matrix (BLAS
    sgemm), which is much faster than numpy's complex product of a 3-row matrix.
    """
    offsets = np.array([-step, 0.0, step])
    ky = np.exp(2j * np.pi * offsets[:, None] * fy[None, :])
    rows = np.concatenate([ky.real, ky.imag]).astype(np.float32)  # (6, h)
    halves = np.matmul(rows, own)  # (n, 6, w)
    along_rows = halves[:, :3].astype(np.complex128) + 1j * halves[:, 3:]
    kx = np.exp(2j * np.pi * fx[:, None] * offsets[None, :]) * fold[:, None]
    return np.asarray(np.matmul(along_rows, kx).real, dtype=np.float64)


def fine_passes(
    cropped: ComplexStack,
    weight: NDArray[np.float32],
    fy: NDArray[np.float64],
    fx: NDArray[np.float64],
    shifts: NDArray[np.float64],
    step: float,
    max_iterations: int,
    tolerance_px: float,
    block: int = 64,
    pool: Executor | None = None,
    threads: int = 1,
) -> tuple[NDArray[np.float64], int, bool]:
    """Leave-one-out refinement by three-point fits of the exactly evaluated correlation.

    The correlation of frame i with the other frames, Σ_k W conj(T − A_i) A_i e^{2πik·δ} with
    A_i = C_i e^{2πik·t_i} and T = Σ A_j, splits into W conj(T) C_i evaluated with the shift
    t_i folded into the small DFT kernels, minus W |C_i|², which does not depend on the shifts
    and is evaluated once. Each iteration thus reads the spectra twice, a block of rows at a
    time, and writes nothing of their size.
    """
    n = cropped.shape[0]
    shifts = shifts.copy()
    offsets = np.array([-step, 0.0, step])
    fold = np.full(fx.size, 2.0, np.float32)
    fold[0] = 1.0
    if fx.size > 1 and fx[-1] > 0 and np.isclose(fx[-1], -np.min(fy)):
        fold[-1] = 1.0
    height = cropped.shape[1]

    own = np.empty(cropped.shape, np.float32)

    def own_from(top: int) -> None:
        part = cropped[:, top : top + block]
        own[:, top : top + block] = part.real**2 + part.imag**2
        own[:, top : top + block] *= weight[top : top + block]

    map_row_blocks(height, block, own_from, pool, threads)
    constant = _real_local_ccf(own, fy, fx, step, fold)
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        rows, cols = phase_ramps(fy, fx, shifts)
        total = aligned_total(cropped, rows, cols, block, pool, threads)
        weighted_total = np.conj(total) * weight
        # Kernels that evaluate at t_i + δ: (n, 3, height) and (n, width, 3).
        ky = np.exp(
            2j * np.pi * (shifts[:, 1:2, None] + offsets[None, :, None]) * fy[None, None, :]
        )
        # As one real (n, 6, height) matrix: products of a 6-row real matrix with the complex
        # products seen as interleaved floats run as BLAS sgemm (a 3-row complex one does not).
        ky_real = np.ascontiguousarray(np.concatenate([ky.real, ky.imag], axis=1), np.float32)
        kx = np.exp(
            2j * np.pi * fx[None, :, None] * (shifts[:, 0:1, None] + offsets[None, None, :])
        ).astype(np.complex64)
        kx *= fold[None, :, None]

        def partial_from(
            top: int,
            weighted_total: NDArray[Any] = weighted_total,
            ky_real: NDArray[np.float32] = ky_real,
        ) -> NDArray[np.complex64]:
            products = cropped[:, top : top + block] * weighted_total[top : top + block]
            floats = products.astype(np.complex64, copy=False).view(np.float32)
            out = np.matmul(ky_real[:, :, top : top + block], floats)  # (n, 6, 2w)
            re_re, re_im = out[:, :3, 0::2], out[:, :3, 1::2]
            im_re, im_im = out[:, 3:, 0::2], out[:, 3:, 1::2]
            return np.asarray((re_re - im_im) + 1j * (re_im + im_re), np.complex64)

        partials = map_row_blocks(height, block, partial_from, pool, threads)
        partial = np.sum(partials, axis=0, dtype=np.complex64)
        values = np.matmul(partial, kx).real.astype(np.float64) - constant
        increments = np.zeros((n, 2))
        for i in range(n):
            v = values[i]
            dx = refine_axis(v[1, 0], v[1, 1], v[1, 2])
            dy = refine_axis(v[0, 1], v[1, 1], v[2, 1])
            increments[i] = (dx * step, dy * step)
        increments -= increments.mean(axis=0)
        shifts += increments
        if float(np.abs(increments).max()) < tolerance_px:
            return shifts, iteration, True
    return shifts, iteration, False


def ssnr_weight(
    cropped: ComplexStack,
    shifts: NDArray[np.float64],
    fy: NDArray[np.float64],
    fx: NDArray[np.float64],
    pool: Executor | None = None,
    threads: int = 1,
) -> tuple[NDArray[np.float32], tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """The variance-minimising correlation weight from the aligned frames' spectral SNR.

    Returns the weight on the grid and as a radial profile (cycles per pixel, weight).

    With A_i the aligned spectra, the signal power of one frame is estimated from the cross
    terms (|Σ A_i|² − Σ |A_i|²) / (n (n − 1)) and the total power from Σ |A_i|² / n, both
    averaged in rings and smoothed over five rings.
    """
    n = cropped.shape[0]
    rows, cols = phase_ramps(fy, fx, shifts)
    total = aligned_total(cropped, rows, cols, 64, pool, threads)
    auto = np.zeros(cropped.shape[1:], np.float32)  # |A_i|² = |C_i|²: no shift needed

    def auto_from(top: int) -> None:
        block = cropped[:, top : top + 64]
        auto[top : top + 64] = np.sum(block.real**2 + block.imag**2, axis=0)

    map_row_blocks(cropped.shape[1], 64, auto_from, pool, threads)
    cross = (total.real**2 + total.imag**2 - auto) / (n * (n - 1))
    auto /= n
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    n_bins = max(8, cropped.shape[1] // 4)
    index = np.minimum((radius / (radius.max() + 1e-12) * n_bins).astype(np.intp), n_bins - 1)
    counts = np.maximum(np.bincount(index.ravel(), minlength=n_bins), 1)
    signal = np.bincount(index.ravel(), cross.ravel(), n_bins) / counts
    power = np.bincount(index.ravel(), auto.ravel(), n_bins) / counts
    ssnr = np.maximum(signal, 0.0) / np.maximum(power - signal, 1e-30)
    ssnr = np.convolve(ssnr, np.ones(5) / 5.0, mode="same")
    weight = ssnr * (n - 1) / (1.0 + (n - 1) * ssnr)
    weight[0] = 0.0
    centres = (np.arange(n_bins) + 0.5) / n_bins * (radius.max() + 1e-12)
    return weight[index].astype(np.float32), (centres, weight)
