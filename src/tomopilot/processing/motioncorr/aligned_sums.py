"""Aligned sums of a movie's frames, from their spectra and the estimated motion.

Global motion only: every spectrum is phase-shifted in place and accumulated into even and odd
sums, with dose weights when asked; one inverse FFT gives the sum (two with even/odd). With local
motion, the globally shifted frames are brought back to real space, the patches are measured,
the cubic model is fitted and every frame is resampled before summing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.imaging.dose_weighting import dose_weight_half_life
from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.frame_spectra import irfft2_in_place
from tomopilot.imaging.motion_global import GlobalMotion
from tomopilot.imaging.motion_local import (
    LocalMotionModel,
    PatchObservations,
    fit_local_model,
    measure_patch_shifts,
    warp_frame,
)
from tomopilot.imaging.motion_passes import phase_ramps
from tomopilot.processing.motioncorr.options import MotionCorrOptions

BLOCK_ROWS = 64

Sums = tuple[
    NDArray[np.float32],
    NDArray[np.float32] | None,
    NDArray[np.float32] | None,
    NDArray[np.float32] | None,
    LocalMotionModel | None,
    PatchObservations | None,
]


def _ramps(
    shape: tuple[int, int], shifts: NDArray[np.float64]
) -> tuple[NDArray[np.complex64], NDArray[np.complex64]]:
    """Per-frame row and column phase ramps that apply ``shifts`` to half-spectra of ``shape``."""
    fy = np.asarray(np.fft.fftfreq(shape[0]), np.float64)
    fx = np.asarray(np.fft.rfftfreq(shape[1]), np.float64)
    return phase_ramps(fy, fx, shifts)


def sum_global(
    spectra: list[NDArray[np.complex64]],
    shape: tuple[int, int],
    shifts: NDArray[np.float64],
    options: MotionCorrOptions,
    pixel_size_a: float,
    doses: NDArray[np.float64] | None,
    voltage_kv: float,
    pool: ThreadPoolExecutor | None = None,
    threads: int = 1,
) -> Sums:
    """Aligned sums in Fourier space: each spectrum is shifted and added, a row block at a time.

    With a ``pool``, ``threads`` bands of rows are summed in parallel and the inverse
    transforms use as many threads; the sums do not depend on it.
    """
    n = len(spectra)
    rows, cols = _ramps(shape, shifts)
    # The sums are built in the first even and odd spectra themselves (each is shifted there
    # before anything is added to it): no new spectrum-sized memory. Without even/odd halves
    # one accumulator serves all frames.
    even_sum = spectra[0]
    odd_sum = spectra[1] if options.even_odd else even_sum
    weighted = None
    q = norm = None
    if doses is not None:
        q = dose_weight_half_life(shape, pixel_size_a, voltage_kv)
        norm = np.sqrt(
            np.sum(np.exp(-2.0 * doses[:, None, None].astype(np.float32) * q[None]), axis=0)
        )
        weighted = np.zeros(spectra[0].shape, np.complex64)
    block = BLOCK_ROWS
    height = spectra[0].shape[0]
    bands = np.linspace(0, height, threads + 1).astype(int)

    def add_band(k: int) -> None:
        shifted = np.empty((block, spectra[0].shape[1]), np.complex64)
        for i in range(n):
            spectrum = spectra[i]
            accumulator = even_sum if i % 2 == 0 else odd_sum
            first = accumulator is spectrum  # the accumulator's own spectrum: it starts the sum
            decay = None if doses is None else np.float32(doses[i])
            # Row blocks keep the shifted spectrum in cache: one read of the frame, one update
            # of the sum, instead of three full passes.
            for top in range(bands[k], bands[k + 1], block):
                end = min(top + block, bands[k + 1])
                part = shifted[: end - top]
                np.multiply(spectrum[top:end], cols[i], out=part)
                np.multiply(part, rows[i][top:end], out=part)
                target = accumulator[top:end]
                if first:
                    np.copyto(target, part)
                else:
                    np.add(target, part, out=target)
                if weighted is not None and q is not None and decay is not None:
                    weighted[top:end] += part * np.exp(-decay * q[top:end])

    if pool is None:
        for k in range(threads):
            add_band(k)
    else:
        for future in [pool.submit(add_band, k) for k in range(threads)]:
            future.result()
    # The inverse transforms leave each image in its spectrum's memory (the images are views
    # of the first two spectra): no image-sized temporaries.
    even = odd = None
    if options.even_odd:
        np.add(odd_sum, even_sum, out=odd_sum)  # the odd sum's place now holds the whole sum
        even = irfft2_in_place(even_sum, shape[1], threads)
    plain = irfft2_in_place(odd_sum, shape[1], threads)
    if even is not None:
        odd = plain - even
    if weighted is not None and norm is not None:
        weighted /= np.maximum(norm, 1e-30)
        weighted *= np.float32(np.sqrt(n))  # keep the mean level of a plain sum
        image = irfft2_in_place(weighted, shape[1], threads)
        return image, even, odd, plain if options.save_no_dw else None, None, None
    return plain, even, odd, None, None, None


def sum_local(
    spectra: list[NDArray[np.complex64]],
    shape: tuple[int, int],
    shifts: NDArray[np.float64],
    options: MotionCorrOptions,
    motion: GlobalMotion,
    pixel_size_a: float,
    doses: NDArray[np.float64] | None,
    voltage_kv: float,
) -> Sums:
    """Globally shift in Fourier space, measure patches, then resample each frame and sum."""
    n = len(spectra)
    rows, cols = _ramps(shape, shifts)
    aligned = np.empty((n, *shape), np.float32)
    for i in range(n):
        aligned[i] = sfft.irfft2(spectra[i] * rows[i] * cols[i], s=shape)
    model: LocalMotionModel | None = None
    observations: PatchObservations | None = None
    try:
        observations = measure_patch_shifts(
            aligned,
            options.patches,
            group=options.group_frames,
            weight_profile=motion.weight_profile,
        )
        model = fit_local_model(observations, shape)
    except ImagingError:
        model = None
    if model is not None:
        for i in range(n):
            aligned[i] = warp_frame(aligned[i], model, i)
    even = aligned[0::2].sum(axis=0)
    odd = aligned[1::2].sum(axis=0)
    plain = even + odd
    halves = (even, odd) if options.even_odd else (None, None)
    if doses is None:
        return plain, *halves, None, model, observations
    q = dose_weight_half_life(shape, pixel_size_a, voltage_kv)
    raw = np.exp(-doses[:, None, None].astype(np.float32) * q[None])
    norm = np.sqrt(np.sum(raw * raw, axis=0))
    weighted = np.zeros(spectra[0].shape, np.complex64)
    for i in range(n):
        weighted += sfft.rfft2(aligned[i]) * raw[i]
    weighted *= np.float32(np.sqrt(n)) / np.maximum(norm, 1e-30)
    image = np.asarray(sfft.irfft2(weighted, s=shape), np.float32)
    return image, *halves, plain if options.save_no_dw else None, model, observations
