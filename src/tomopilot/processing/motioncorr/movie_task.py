"""One task per tilt movie: read it, correct it, write RELION's per-movie outputs.

:func:`run_movie_task` is what the executor ships to a worker. It never raises: a bad movie
(missing file, corrupt TIFF, gain of the wrong size, too few frames) comes back as a failed
:class:`MovieResult` whose ``error`` names the file and the problem, and the job goes on with the
other movies. Outputs are written to temporary names and renamed, and the per-movie metadata
STAR is written last, so its presence marks a finished movie (reruns skip it).

Shifts in the STAR files follow RELION: ``rlnMicrographShiftX/Y`` (and the local model and
local shifts) are the shift that *aligns* a frame, the negative of the content's movement, in the
orientation of the micrograph (a TIFF movie's rows reversed, see :mod:`tomopilot.io.frames`);
checked against ``relion_run_motioncorr --use_own``.

Output names follow RELION: the movie path relative to the project, without its extension and
with every '.' turned into '_', below the job folder: ``frames/TS_01_000_0.0.mrc`` becomes
``MotionCorr/job002/frames/TS_01_000_0_0{.mrc,_PS.mrc,_EVN.mrc,_ODD.mrc,.star}``.

Examples
--------
>>> from pathlib import Path
>>> output_root(Path("MotionCorr/job002"), "frames/TS_01_000_0.0.mrc").as_posix()
'MotionCorr/job002/frames/TS_01_000_0_0'
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tomopilot.core.errors import TomopilotError
from tomopilot.imaging.frame_spectra import SpectrumWorkspace
from tomopilot.io.frames import MRC_LABEL, frame_format
from tomopilot.io.gain import read_defects, read_image, resample_gain_for_eer
from tomopilot.io.star import write_star
from tomopilot.processing.motioncorr.correct_frames import MovieCorrection, correct_frames
from tomopilot.processing.motioncorr.movie_frames import open_movie
from tomopilot.processing.motioncorr.options import MotionCorrOptions

SUFFIX_IMAGE = ".mrc"
SUFFIX_PS = "_PS.mrc"
SUFFIX_EVEN = "_EVN.mrc"
SUFFIX_ODD = "_ODD.mrc"
SUFFIX_NO_DW = "_noDW.mrc"
SUFFIX_STAR = ".star"
T = TypeVar("T")
R = TypeVar("R")


def output_root(job_dir: Path, movie_name: str) -> Path:
    """RELION's output stem for a movie: relative path, no extension, '.' → '_'."""
    pure = PurePosixPath(movie_name.replace("\\", "/"))
    parts = [p for p in pure.parts if p not in ("/", "..", ".")]
    if pure.is_absolute() or ".." in pure.parts or not parts:
        parts = ["frames", pure.name]
    stem = str(PurePosixPath(*parts).with_suffix("")).replace(".", "_")
    return job_dir / stem


@dataclass(frozen=True)
class MovieTask:
    """Everything a worker needs to correct one movie (picklable).

    Attributes
    ----------
    movie_path
        The movie on disk.
    movie_name
        The movie as the STAR file names it (``rlnMicrographMovieName``).
    root
        Output stem (absolute), see :func:`output_root`.
    options
        The job's options.
    pixel_size_a, voltage_kv
        Movie pixel size and high tension.
    pre_exposure_e_a2, dose_per_tilt_e_a2
        Dose bookkeeping of this tilt (dose None when unknown); the dose per frame is the
        tilt's dose over the number of frames read.
    gain_path
        The job's oriented, multiplicative gain (``<job>/gain.mrc``), or None.
    tilt_series, index
        Name of the tilt series and position of the tilt in it.
    threads
        Threads the correction of this movie may use (the outputs do not depend on it).
    gain_token
        The job's gain as this process holds it in memory (see :func:`share_gain`), when the
        movie runs in the process that prepared it; ``gain_path`` is read otherwise.
    """

    movie_path: Path
    movie_name: str
    root: Path
    options: MotionCorrOptions
    pixel_size_a: float
    voltage_kv: float
    pre_exposure_e_a2: float
    dose_per_tilt_e_a2: float | None
    gain_path: Path | None
    tilt_series: str
    index: int
    threads: int = 1
    gain_token: str | None = None

    def outputs(self) -> dict[str, Path]:
        """The files this task writes (label → path), per the options."""
        files = {"rlnMicrographName": self.root.with_name(self.root.name + SUFFIX_IMAGE)}
        if self.options.power_spectra:
            files["rlnCtfPowerSpectrum"] = self.root.with_name(self.root.name + SUFFIX_PS)
        if self.options.even_odd:
            files["rlnMicrographNameEven"] = self.root.with_name(self.root.name + SUFFIX_EVEN)
            files["rlnMicrographNameOdd"] = self.root.with_name(self.root.name + SUFFIX_ODD)
        if self.options.dose_weighting and self.options.save_no_dw:
            files["rlnMicrographNameNoDW"] = self.root.with_name(self.root.name + SUFFIX_NO_DW)
        files["rlnMicrographMetadata"] = self.root.with_name(self.root.name + SUFFIX_STAR)
        return files

    def is_done(self) -> bool:
        """All outputs exist (the metadata STAR is written last)."""
        return all(path.is_file() for path in self.outputs().values())


@dataclass
class MovieResult:
    """What became of one movie.

    ``shifts_px`` are RELION's global shifts (original pixels, frame 0 = 0, the negative of the
    content's movement); ``error`` is set when the movie failed, and names the file.
    """

    tilt_series: str
    index: int
    movie_name: str
    ok: bool
    shifts_px: list[tuple[float, float]] = field(default_factory=list)
    skipped: bool = False
    error: str | None = None
    seconds: float = 0.0
    n_hot_pixels: int = 0
    local_model: bool = False


_THREAD = threading.local()


def _workspace() -> SpectrumWorkspace:
    """This thread's reusable spectrum memory (a worker thread corrects one movie at a time)."""
    workspace = getattr(_THREAD, "workspace", None)
    if workspace is None:
        workspace = _THREAD.workspace = SpectrumWorkspace()
    return workspace


_GAINS: dict[tuple[str, float], NDArray[np.float32]] = {}
_GAINS_LOCK = threading.Lock()
_GAINS_KEPT = 4


def remember_gain(path: Path, gain: NDArray[np.float32]) -> None:
    """Keep the job's prepared gain in memory, so that its movies need not read it back."""
    key = (str(path), path.stat().st_mtime)
    with _GAINS_LOCK:
        _GAINS[key] = gain
        while len(_GAINS) > _GAINS_KEPT:
            del _GAINS[next(iter(_GAINS))]


def _load_gain(path: str, mtime: float) -> NDArray[np.float32]:
    """The gain at ``path`` as last written (the mtime is part of the key: a rewritten gain
    is read again)."""
    key = (path, mtime)
    with _GAINS_LOCK:
        gain = _GAINS.get(key)
    if gain is None:
        gain = read_image(path)
        with _GAINS_LOCK:
            _GAINS[key] = gain
            while len(_GAINS) > _GAINS_KEPT:
                del _GAINS[next(iter(_GAINS))]
    return gain


_SHARED: dict[str, NDArray[np.float32]] = {}


def share_gain(gain: NDArray[np.float32]) -> str:
    """Hold a job's prepared gain in memory for its movies; returns the token they name it by
    (:attr:`MovieTask.gain_token`). :func:`unshare_gain` lets it go."""
    token = uuid.uuid4().hex
    with _GAINS_LOCK:
        _SHARED[token] = gain
    return token


def unshare_gain(token: str) -> None:
    """Forget a gain held by :func:`share_gain`."""
    with _GAINS_LOCK:
        _SHARED.pop(token, None)


def _shared_gain(token: str | None) -> NDArray[np.float32] | None:
    if token is None:
        return None
    with _GAINS_LOCK:
        return _SHARED.get(token)


@functools.lru_cache(maxsize=4)
def _load_defects(path: str, shape: tuple[int, int], mtime: float) -> NDArray[np.bool_]:
    del mtime
    return read_defects(path, shape)


def _row_blocks(rows: NDArray[Any], target_bytes: int) -> list[tuple[int, int]]:
    """(top, end) of row blocks of about ``target_bytes`` each."""
    step = max(1, target_bytes // max(1, rows.shape[1] * rows.itemsize))
    return [(top, min(top + step, rows.shape[0])) for top in range(0, rows.shape[0], step)]


def _as_rows(image: NDArray[Any]) -> NDArray[Any]:
    return image.reshape(image.shape[0], -1) if image.ndim > 1 else image.reshape(1, -1)


def _each(pool: ThreadPoolExecutor | None, work: Callable[[T], R], items: list[T]) -> list[R]:
    """``work`` of every item, in order; on the pool's threads when there is a pool."""
    return list(pool.map(work, items)) if pool is not None else [work(i) for i in items]


def _statistics(
    image: NDArray[np.float32], pool: ThreadPoolExecutor | None = None
) -> tuple[float, float, float, float]:
    """min, max, mean and standard deviation of an image, from float64 sums over cache-sized
    row blocks (no image-sized temporaries), added up in block order whatever the pool."""
    flat = _as_rows(image)

    def block_moments(bounds: tuple[int, int]) -> tuple[float, float, float, float]:
        block = flat[bounds[0] : bounds[1]]
        wide = block.astype(np.float64)
        first = float(wide.sum())
        second = float(np.square(wide, out=wide).sum())  # no BLAS: its threads would spin
        return float(block.min()), float(block.max()), first, second

    low, high, total, squares = np.inf, -np.inf, 0.0, 0.0
    for block_low, block_high, first, second in _each(
        pool, block_moments, _row_blocks(flat, 1 << 19)
    ):
        low, high = min(low, block_low), max(high, block_high)
        total += first
        squares += second
    count = max(1, image.size)
    mean = total / count
    return low, high, mean, math.sqrt(max(squares / count - mean * mean, 0.0))


def write_image_mrc(
    path: Path,
    image: NDArray[np.float32],
    pixel_size_a: float | None,
    half: bool = False,
    pool: ThreadPoolExecutor | None = None,
) -> None:
    """Write one image (float16 = mode 12, else float32) to a temporary name, then rename.

    mrcfile writes the header (statistics computed once, in float64 sums over the float32
    image) and the data go to the file from the array itself, a block of rows at a time (no
    image-sized copy, even of a view with gaps between its rows or for a float16 file), on
    the threads of ``pool`` when given (the file is the same).
    """
    import mrcfile

    image = np.asarray(image, np.float32)
    low, high, mean, std = _statistics(image, pool)
    temporary = path.with_name(f".{path.name}.tmp")
    with mrcfile.new_mmap(  # header, and a data block left unwritten (sparse) until below
        temporary, shape=image.shape, mrc_mode=12 if half else 2, overwrite=True
    ) as mrc:
        if pixel_size_a is not None:
            mrc.voxel_size = pixel_size_a
        header = mrc.header
        stored = np.float16 if half else np.float32  # rounding keeps the order of values
        header.dmin = np.float32(stored(low))
        header.dmax = np.float32(stored(high))
        header.dmean = np.float32(mean)
        header.rms = np.float32(std)
        header.label[0] = MRC_LABEL  # mrcfile's default label holds the time
        header.nlabl = 1
        offset = int(header.nbytes) + int(header.nsymbt)
    rows = _as_rows(image)
    row_bytes = rows.shape[1] * (2 if half else 4)
    fd = os.open(temporary, os.O_WRONLY)
    try:

        def write(bounds: tuple[int, int]) -> None:
            top, end = bounds
            block = np.ascontiguousarray(rows[top:end], np.float16 if half else None)
            data = block.reshape(-1).view(np.uint8).data
            done = 0
            while done < data.nbytes:
                done += os.pwrite(fd, data[done:], offset + top * row_bytes + done)

        _each(pool, write, _row_blocks(rows, 1 << 20))
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _dose_per_frame(task: MovieTask, n_frames: int) -> float | None:
    if task.dose_per_tilt_e_a2 is None or n_frames == 0:
        return None
    return task.dose_per_tilt_e_a2 / n_frames


def relion_shifts(movement_px: NDArray[np.float64]) -> NDArray[np.float64]:
    """RELION's ``rlnMicrographShiftX/Y`` from the content's movement: the aligning shift.

    ``0.0 - x`` rather than ``-x`` so that frame 0 is written as 0, not -0.
    """
    return np.asarray(0.0 - np.asarray(movement_px, dtype=np.float64))


def movie_metadata_blocks(task: MovieTask, result: MovieCorrection) -> dict[str, Any]:
    """RELION's per-movie metadata STAR (``rlnMicrographMetadata``) as STAR blocks."""
    options = task.options
    height, width = result.frame_shape
    general: dict[str, Any] = {
        "rlnImageSizeX": width,
        "rlnImageSizeY": height,
        "rlnImageSizeZ": result.n_frames,
        "rlnMicrographMovieName": task.movie_name,
    }
    if options.gain_path is not None:
        general["rlnMicrographGainName"] = str(options.gain_path)
    if options.defect_path is not None:
        general["rlnMicrographDefectFile"] = str(options.defect_path)
    general |= {
        "rlnMicrographBinning": options.bin_factor,
        "rlnMicrographOriginalPixelSize": task.pixel_size_a,
        "rlnMicrographDoseRate": _dose_per_frame(task, result.n_frames) or 1.0,
        "rlnMicrographPreExposure": task.pre_exposure_e_a2,
        "rlnVoltage": task.voltage_kv,
        "rlnMicrographStartFrame": 1,
    }
    if frame_format(task.movie_path) == "eer":
        general["rlnEERUpsampling"] = options.eer_upsampling
        general["rlnEERGrouping"] = options.eer_fractionation
    general["rlnMotionModelVersion"] = 1 if result.local_model is not None else 0
    blocks: dict[str, Any] = {"general": general}
    shifts = relion_shifts(result.shifts_px)
    blocks["global_shift"] = pd.DataFrame(
        {
            "rlnMicrographFrameNumber": np.arange(1, len(shifts) + 1),
            "rlnMicrographShiftX": shifts[:, 0],
            "rlnMicrographShiftY": shifts[:, 1],
        }
    )
    model = result.local_model
    if model is not None:
        coefficients = relion_shifts(np.concatenate([model.coefficients_x, model.coefficients_y]))
        blocks["local_motion_model"] = pd.DataFrame(
            {
                "rlnMotionModelCoeffsIdx": np.arange(coefficients.size),
                "rlnMotionModelCoeff": coefficients,
            }
        )
    if len(result.hot_pixels):
        blocks["hot_pixels"] = pd.DataFrame(
            {"rlnCoordinateX": result.hot_pixels[:, 0], "rlnCoordinateY": result.hot_pixels[:, 1]}
        )
    observations = result.observations
    if observations is not None:
        blocks["local_shift"] = pd.DataFrame(
            {
                "rlnMicrographFrameNumber": observations.z + 1.0,
                "rlnCoordinateX": observations.x_px,
                "rlnCoordinateY": observations.y_px,
                "rlnMicrographShiftX": relion_shifts(observations.shift_px[:, 0]),
                "rlnMicrographShiftY": relion_shifts(observations.shift_px[:, 1]),
            }
        )
    return blocks


def correct_movie_file(task: MovieTask) -> MovieCorrection:
    """Read one movie (and the job's gain and defects) and correct it; raises on bad input."""
    options = task.options
    frames = open_movie(  # a plain MRC movie is read frame by frame into the spectra
        task.movie_path,
        eer_fractionation=options.eer_fractionation,
        eer_upsampling=options.eer_upsampling,
    )
    shape = (int(frames.shape[1]), int(frames.shape[2]))
    gain = None
    if task.gain_path is not None:
        gain = _shared_gain(task.gain_token)
        if gain is None:  # another process: the job's gain.mrc
            gain = _load_gain(str(task.gain_path), task.gain_path.stat().st_mtime)
        if frame_format(task.movie_path) == "eer":
            gain = resample_gain_for_eer(gain, shape)
        if gain.shape != shape:
            raise TomopilotError(
                f"{options.gain_path or task.gain_path}: the gain reference is "
                f"{gain.shape[1]}×{gain.shape[0]} px but the frames of {task.movie_path} are "
                f"{shape[1]}×{shape[0]} px (check the gain, its rotation and super-resolution)"
            )
    defects = None
    if options.defect_path is not None:
        path = Path(options.defect_path)
        defects = _load_defects(str(path), shape, path.stat().st_mtime)
    return correct_frames(
        frames,
        pixel_size_a=task.pixel_size_a,
        options=options,
        gain=gain,
        defects=defects,
        pre_exposure_e_a2=task.pre_exposure_e_a2,
        dose_per_frame_e_a2=_dose_per_frame(task, int(frames.shape[0])),
        voltage_kv=task.voltage_kv,
        seed=task.index,
        workspace=_workspace(),
        threads=task.threads,
    )


def write_movie_outputs(task: MovieTask, result: MovieCorrection) -> None:
    """Write the sums, spectra and the per-movie STAR (last) of one movie (the images on the
    movie's threads)."""
    files = task.outputs()
    files["rlnMicrographName"].parent.mkdir(parents=True, exist_ok=True)
    half = task.options.float16
    pixel = result.pixel_size_a
    images: list[tuple[Path, NDArray[np.float32], float, bool]] = [
        (files["rlnMicrographName"], result.image, pixel, half)
    ]
    if "rlnCtfPowerSpectrum" in files and result.power_spectrum is not None:
        images.append(
            (files["rlnCtfPowerSpectrum"], result.power_spectrum, result.ps_pixel_size_a, False)
        )
    if "rlnMicrographNameEven" in files and result.even is not None and result.odd is not None:
        images.append((files["rlnMicrographNameEven"], result.even, pixel, half))
        images.append((files["rlnMicrographNameOdd"], result.odd, pixel, half))
    if "rlnMicrographNameNoDW" in files and result.image_no_dw is not None:
        images.append((files["rlnMicrographNameNoDW"], result.image_no_dw, pixel, half))
    pool = ThreadPoolExecutor(task.threads) if task.threads > 1 else None
    try:
        for path, image, size, as_half in images:
            write_image_mrc(path, image, size, as_half, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    write_star(files["rlnMicrographMetadata"], movie_metadata_blocks(task, result))


def run_movie_task(task: MovieTask) -> MovieResult:
    """Correct one movie and write its outputs; failures are returned, never raised."""
    start = time.perf_counter()
    base = MovieResult(task.tilt_series, task.index, task.movie_name, ok=False)
    try:
        result = correct_movie_file(task)
        write_movie_outputs(task, result)
    except TomopilotError as exc:
        base.error = _with_file(str(exc), task.movie_path)
    except Exception as exc:  # a worker must report, never die: the job goes on
        base.error = _with_file(f"{type(exc).__name__}: {exc}", task.movie_path)
    else:
        base.ok = True
        base.shifts_px = [(float(x), float(y)) for x, y in relion_shifts(result.shifts_px)]
        base.n_hot_pixels = len(result.hot_pixels)
        base.local_model = result.local_model is not None
    base.seconds = time.perf_counter() - start
    return base


def _with_file(message: str, path: Path) -> str:
    return message if str(path) in message else f"{path}: {message}"


def read_movie_shifts(star_path: Path) -> list[tuple[float, float]]:
    """Global shifts recorded in a per-movie metadata STAR (for movies a rerun skips)."""
    from tomopilot.io.star import read_star

    table = read_star(star_path).get("global_shift")
    if not isinstance(table, pd.DataFrame):
        return []
    return [
        (float(x), float(y))
        for x, y in zip(table["rlnMicrographShiftX"], table["rlnMicrographShiftY"], strict=True)
    ]
