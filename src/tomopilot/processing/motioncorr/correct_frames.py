"""Motion correction of one movie held in memory: RELION 5's per-movie pipeline.

In order: gain; hot pixels and defects; one real FFT per frame with early binning by Fourier
cropping; the amplitude-spectrum blocks for CTF estimation (from the unaligned frames); global
alignment (:mod:`tomopilot.imaging.motion_global`); optionally local alignment with the cubic
polynomial model (:mod:`tomopilot.imaging.motion_local`); then the aligned sum, built in Fourier
space (global only) or by resampling (local), with even/odd sums and optional dose weighting.

The bad-pixel search is :mod:`~tomopilot.processing.motioncorr.bad_pixel_mask`, the fused
per-frame preparation and transform :mod:`~tomopilot.processing.motioncorr.frame_transform`.
Nothing here touches files: :mod:`~tomopilot.processing.motioncorr.movie_task` reads the movie
and writes the outputs. Shifts are returned in original movie pixels, frame 0 = (0, 0).

Examples
--------
>>> import numpy as np
>>> from tomopilot.imaging.fourier import fourier_shift
>>> rng = np.random.default_rng(0)
>>> base = rng.gamma(4.0, 5.0, (256, 256)).astype(np.float32)
>>> moved = [np.clip(fourier_shift(base, 0.7 * i, -0.3 * i), 0, None) for i in range(6)]
>>> frames = np.stack([rng.poisson(m) for m in moved])
>>> out = correct_frames(frames, pixel_size_a=1.0, options=MotionCorrOptions(bfactor_px2=50))
>>> np.round(out.shifts_px[-1], 1).tolist()
[3.5, -1.5]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.amplitude_spectrum import SpectrumGeometry, amplitude_spectrum
from tomopilot.imaging.bad_pixels import BadPixelFill
from tomopilot.imaging.blas_threads import single_threaded_blas
from tomopilot.imaging.dose_weighting import frame_end_doses_e_a2
from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.frame_spectra import (
    SpectrumWorkspace,
    real_part,
    rfft2_in_place,
    rfft2_into,
)
from tomopilot.imaging.motion_global import align_spectra
from tomopilot.imaging.motion_local import LocalMotionModel, PatchObservations
from tomopilot.imaging.motion_passes import crop_spectra
from tomopilot.imaging.periodic_component import FrameEdges
from tomopilot.imaging.trajectory import smooth_trajectory
from tomopilot.processing.motioncorr.aligned_sums import sum_global, sum_local
from tomopilot.processing.motioncorr.bad_pixel_mask import mark_bad_pixels, run_split
from tomopilot.processing.motioncorr.frame_transform import prepare_and_transform
from tomopilot.processing.motioncorr.options import MotionCorrOptions


class FrameReader(Protocol):
    """A movie whose frames are read one at a time (see
    :class:`~tomopilot.processing.motioncorr.movie_frames.MrcFrames`)."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def ndim(self) -> int: ...

    def read_into(self, index: int, out: NDArray[np.float32]) -> None: ...

    def read_all(self) -> NDArray[Any]: ...


@dataclass
class MovieCorrection:
    """Everything the motion correction of one movie produced.

    Attributes
    ----------
    image
        The aligned sum (dose-weighted when asked), counts per output pixel, float32.
    even, odd
        Sums of the even / odd (0-based) aligned frames, unweighted, or None.
    image_no_dw
        The unweighted sum when dose weighting was applied and kept, else None.
    power_spectrum, ps_pixel_size_a
        The centred amplitude spectrum (or None) and the pixel size it represents.
    shifts_px
        (n, 2) global displacement (x, y) of each frame, original movie pixels, frame 0 = 0.
    local_model
        The local motion model in original pixels, or None.
    observations
        The patch observations the local model was fitted to (original pixels), or None.
    hot_pixels
        (k, 2) (x, y) positions of the pixels found hot (original pixels).
    pixel_size_a
        Pixel size of the output images.
    n_frames, frame_shape
        Input frame count and (height, width).
    """

    image: NDArray[np.float32]
    even: NDArray[np.float32] | None
    odd: NDArray[np.float32] | None
    image_no_dw: NDArray[np.float32] | None
    power_spectrum: NDArray[np.float32] | None
    ps_pixel_size_a: float
    shifts_px: NDArray[np.float64]
    local_model: LocalMotionModel | None
    observations: PatchObservations | None
    hot_pixels: NDArray[np.int64]
    pixel_size_a: float
    n_frames: int
    frame_shape: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def each_frame(
    pool: ThreadPoolExecutor | None, threads: int, n: int, work: Callable[[int, int], None]
) -> None:
    """``work(k, i)`` for every frame ``i`` of ``n``, on threads ``k`` in ``range(threads)``.

    Frames are handed out in order to whichever thread is free first rather than dealt out in
    advance, so a thread slowed down (first touch of fresh memory, a slow page, another
    process on its core) does fewer of them and the others are not left waiting at the end.
    What a frame becomes does not depend on the thread that does it.
    """
    lock = threading.Lock()
    following = iter(range(n))

    def run(k: int) -> None:
        while True:
            with lock:
                i = next(following, None)
            if i is None:
                return
            work(k, i)

    run_split(pool, threads, run)


def binned_shape(shape: tuple[int, int], bin_factor: float) -> tuple[int, int]:
    """Output (height, width) after binning: rounded to even sizes, as RELION requires."""
    ny, nx = shape
    by = round(ny / bin_factor) // 2 * 2
    bx = round(nx / bin_factor) // 2 * 2
    if by < 32 or bx < 32:
        raise ImagingError(f"binning {ny}×{nx} by {bin_factor} leaves too few pixels")
    return by, bx


def correct_frames(
    frames: NDArray[np.generic] | FrameReader,
    *,
    pixel_size_a: float,
    options: MotionCorrOptions,
    gain: NDArray[np.float32] | None = None,
    defects: NDArray[np.bool_] | None = None,
    pre_exposure_e_a2: float = 0.0,
    dose_per_frame_e_a2: float | None = None,
    voltage_kv: float = 300.0,
    seed: int = 0,
    workspace: SpectrumWorkspace | None = None,
    threads: int = 1,
) -> MovieCorrection:
    """Motion-correct one movie (see the module docstring for the steps).

    Parameters
    ----------
    frames
        (n, h, w) frames in counts, any numeric type; not modified. Or a reader of them: then
        each frame is read straight into the memory of its spectrum (without binning).
    pixel_size_a
        Movie pixel size (Å).
    options
        The job's options (binning, B-factor, patches, spectra, even/odd, dose weighting ...).
    gain
        Multiplicative gain in movie orientation; zero marks defective pixels.
    defects
        Boolean mask of defective pixels (True = bad).
    pre_exposure_e_a2, dose_per_frame_e_a2, voltage_kv
        For dose weighting.
    seed
        Seed of the bad-pixel replacement.
    workspace
        Reusable memory for the spectra (keep one per process for many movies). The images
        of the result may be views of it: they are valid until the workspace is used again.
    threads
        Threads this movie may use: frames are prepared and transformed in parallel, and the
        sums and their inverse transforms are split by rows. The result does not depend on it.
    """
    if frames.ndim != 3:
        raise ImagingError(f"a movie must be (n, h, w), got shape {frames.shape}")
    n = frames.shape[0]
    if n < 3:
        raise ImagingError(f"a movie needs at least 3 frames to align, this one has {n}")
    threads = max(1, min(int(threads), n))
    # One worker more than the threads: the amplitude spectrum's, beside the alignment's.
    pool = ThreadPoolExecutor(threads + 1) if threads > 1 else None
    try:
        with single_threaded_blas():
            return _correct(
                frames,
                pixel_size_a,
                options,
                gain,
                defects,
                pre_exposure_e_a2,
                dose_per_frame_e_a2,
                voltage_kv,
                seed,
                workspace,
                pool,
                threads,
            )
    finally:
        if pool is not None:
            pool.shutdown()


def _correct(
    frames: NDArray[np.generic] | FrameReader,
    pixel_size_a: float,
    options: MotionCorrOptions,
    gain: NDArray[np.float32] | None,
    defects: NDArray[np.bool_] | None,
    pre_exposure_e_a2: float,
    dose_per_frame_e_a2: float | None,
    voltage_kv: float,
    seed: int,
    workspace: SpectrumWorkspace | None,
    pool: ThreadPoolExecutor | None,
    threads: int,
) -> MovieCorrection:
    n = frames.shape[0]
    shape = (int(frames.shape[1]), int(frames.shape[2]))
    work = workspace or SpectrumWorkspace()
    out_shape = binned_shape(shape, options.bin_factor)
    stack = work.spectra(n, out_shape)
    spectra = list(stack)
    # Without binning every frame is written into the memory of its own spectrum and
    # transformed there: no frame buffers.
    in_place = out_shape == shape
    slots = [real_part(spectrum, shape[1]) for spectrum in spectra] if in_place else []
    buffers = None if in_place else work.frames(threads, shape)
    lazy = not isinstance(frames, np.ndarray)
    if lazy and not in_place:
        frames = frames.read_all()  # type: ignore[union-attr]
        lazy = False
    if lazy:  # every frame read into its spectrum's place, as float32 counts
        reader: Any = frames

        def load(k: int, i: int) -> None:
            del k
            reader.read_into(i, slots[i])

        each_frame(pool, threads, n, load)
        frames = stack.view(np.float32)[:, :, : shape[1]]
    assert isinstance(frames, np.ndarray)
    bad, hot_xy, bad_yx = mark_bad_pixels(frames, gain, defects, options, pool, threads)
    bin_y, bin_x = shape[0] / out_shape[0], shape[1] / out_shape[1]
    out_pixel = pixel_size_a * shape[0] / out_shape[0]
    scale = np.float32(out_shape[0] * out_shape[1] / (shape[0] * shape[1]))
    geometry = (
        SpectrumGeometry.for_frames(out_shape, out_pixel, size=options.ps_size_px)
        if options.power_spectra
        else None
    )
    fulls = None if in_place else work.scratches(threads, shape)
    edges = FrameEdges.empty(n, shape)
    any_bad = bool(bad_yx[0].size)
    filler = BadPixelFill(bad, positions=bad_yx) if any_bad else None
    as_is = frames.dtype == np.float32 and gain is None and not any_bad

    def transform(k: int, i: int) -> None:  # frame i with thread k's buffers
        if in_place and (gain is not None or filler is not None or not lazy):
            prepare_and_transform(frames[i], stack[i], gain, filler, seed + i, edges, i)
            return
        if as_is and not in_place:  # nothing to change: transform the frame where it lies
            frame = np.ascontiguousarray(frames[i])
        else:
            frame = slots[i] if in_place else buffers[k]  # type: ignore[index]
            if gain is not None:  # one pass: the raw counts times the gain, in float32
                np.multiply(frames[i], gain, out=frame, dtype=np.float32, casting="unsafe")
            elif not lazy:  # (a frame read lazily is already in place)
                np.copyto(frame, frames[i], casting="unsafe")
            if filler is not None:
                filler.apply(frame, seed + i)
        edges.set_frame(i, frame)
        if in_place:
            rfft2_in_place(stack[i], shape[1])
        else:
            assert fulls is not None
            stack[i] = crop_spectra(rfft2_into(frame, fulls[k]), shape, out_shape)
            stack[i] *= scale

    each_frame(pool, threads, n, transform)
    power, ps_pixel = None, 0.0
    spectrum_job: Future[NDArray[np.float32]] | None = None
    if geometry is not None:
        ps_pixel = geometry.pixel_size_a
        if pool is None:
            power = amplitude_spectrum(stack, geometry, options.ps_every_n_frames)
        else:  # on the pool's spare worker, while the alignment (whose coarse passes use
            # one core) runs on the others
            every = options.ps_every_n_frames
            spectrum_job = pool.submit(amplitude_spectrum, stack, geometry, every)
    bfactor = options.bfactor_px2 / (bin_y * bin_x)
    motion = align_spectra(
        spectra,
        out_shape,
        bfactor_px2=bfactor,
        weighting=options.weighting,
        edges=edges.with_grid((bin_y, bin_x), float(scale)),
        max_shift_px=options.max_shift_px / max(bin_y, bin_x),
        max_iterations=options.max_iterations,
        tolerance_px=options.tolerance_px,
        pool=pool,
        threads=threads,
    )
    if spectrum_job is not None:
        power = spectrum_job.result()  # before the sums are built in the first spectra
    shifts = motion.shifts_px
    if options.smooth_trajectory:
        shifts, _ = smooth_trajectory(shifts)
    doses = None
    if options.dose_weighting:
        if dose_per_frame_e_a2 is None:
            raise ImagingError("dose weighting needs the dose per frame")
        doses = frame_end_doses_e_a2(n, dose_per_frame_e_a2, pre_exposure_e_a2)
    if options.local_motion:
        result = sum_local(
            spectra, out_shape, shifts, options, motion, out_pixel, doses, voltage_kv
        )
    else:
        result = sum_global(
            spectra, out_shape, shifts, options, out_pixel, doses, voltage_kv, pool, threads
        )
    image, even, odd, no_dw, model, observations = result
    original = np.array([bin_x, bin_y])
    return MovieCorrection(
        image=image,
        even=even,
        odd=odd,
        image_no_dw=no_dw,
        power_spectrum=power,
        ps_pixel_size_a=ps_pixel,
        shifts_px=shifts * original,
        local_model=model.scaled(bin_x) if model is not None else None,
        observations=_scale_observations(observations, bin_x, bin_y),
        hot_pixels=hot_xy,
        pixel_size_a=out_pixel,
        n_frames=n,
        frame_shape=shape,
    )


def _scale_observations(
    observations: PatchObservations | None, bin_x: float, bin_y: float
) -> PatchObservations | None:
    if observations is None:
        return None
    return PatchObservations(
        observations.x_px * bin_x,
        observations.y_px * bin_y,
        observations.z,
        observations.shift_px * np.array([bin_x, bin_y]),
        observations.patch,
    )
