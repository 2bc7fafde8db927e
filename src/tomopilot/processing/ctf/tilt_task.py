"""One CTF task per tilt image: fit its power spectrum (or image) and write a diagnostic.

The diagnostic ``<root>_PS.ctf`` (RELION's ``rlnCtfImage``, an MRC image) shows the
background-normalised spectrum on the left half and the fitted model on the right half, as
CTFFIND's diagnostic does. :func:`run_ctf_task` never raises: a tilt that cannot be fitted comes
back as a failed :class:`CtfResult` naming the file.

Examples
--------
>>> from pathlib import Path
>>> ctf_root(Path("CtfFind/job003"), "MotionCorr/job002/frames/TS_01_000_0_0.mrc").as_posix()
'CtfFind/job003/frames/TS_01_000_0_0'
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.errors import TomopilotError
from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.fit_ctf import (
    CtfFit,
    centred_frequencies,
    chi_map_rad,
    fit_ctf_spectrum,
    prepare_spectrum,
    tile_power_spectra,
)
from tomopilot.imaging.fit_ctf_tilted import fit_ctf_tilted
from tomopilot.io.errors import FormatError
from tomopilot.io.frames import MRC_LABEL
from tomopilot.processing.ctf.options import CtfOptions


def ctf_root(job_dir: Path, image_name: str) -> Path:
    """Output stem of a tilt: the image path below its job folder, without the extension."""
    parts = PurePosixPath(image_name.replace("\\", "/")).parts
    if len(parts) > 2 and parts[1].startswith("job"):
        parts = parts[2:]
    stem = PurePosixPath(*[p for p in parts if p not in ("/", "..")]).with_suffix("")
    return job_dir / str(stem)


@dataclass(frozen=True)
class CtfTask:
    """Everything a worker needs to fit one tilt (picklable)."""

    tilt_series: str
    index: int
    image_path: Path | None
    spectrum_path: Path | None
    root: Path
    options: CtfOptions
    optics: CtfOptics
    pixel_size_a: float
    tilt_deg: float
    nominal_defocus_um: float | None
    pre_exposure_e_a2: float

    @property
    def diagnostic_path(self) -> Path:
        """The ``_PS.ctf`` diagnostic image."""
        return self.root.with_name(self.root.name + "_PS.ctf")


@dataclass
class CtfResult:
    """The fit of one tilt, or the error that prevented it."""

    tilt_series: str
    index: int
    ok: bool
    defocus_u_um: float = math.nan
    defocus_v_um: float = math.nan
    angle_deg: float = math.nan
    score: float = math.nan
    resolution_a: float = math.nan
    gradient: float = 0.0
    error: str | None = None
    seconds: float = 0.0


def _read_mrc(path: Path) -> tuple[NDArray[np.float32], float]:
    import mrcfile

    if not path.is_file():
        raise FormatError("file not found", path=path)
    try:
        with mrcfile.open(path, mode="r", permissive=True) as mrc:
            if mrc.data is None:
                raise FormatError("MRC file holds no data", path=path)
            data = np.array(mrc.data, dtype=np.float32)
            pixel = float(mrc.voxel_size.x)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot read MRC image: {exc}", path=path) from exc
    return (data[0] if data.ndim == 3 else data), pixel


def diagnostic_image(
    spectrum: NDArray[np.floating],
    pixel_size_a: float,
    fit: CtfFit,
    optics: CtfOptics,
    k_min_a_inv: float,
    k_max_a_inv: float,
    *,
    is_amplitude: bool,
) -> NDArray[np.float32]:
    """Left half: normalised data; right half: the fitted CTF² (−cos 2(χ + arcsin A))."""
    size = spectrum.shape[0]
    prepared = prepare_spectrum(
        spectrum, pixel_size_a, k_min_a_inv, k_max_a_inv, is_amplitude=is_amplitude
    )
    k, theta = centred_frequencies(size, pixel_size_a)
    band = prepared.mask
    data = np.zeros((size, size), np.float32)
    data[band] = prepared.data
    half = 0.5 * (fit.defocus_u_um - fit.defocus_v_um)
    a = math.radians(fit.angle_deg)
    dz = -1e4 * (fit.defocus_um + half * np.cos(2 * (theta - a)))
    model = -np.cos(2 * (chi_map_rad(k, dz, optics) + optics.amplitude_phase_rad))
    out = np.where(np.arange(size)[None, :] < size // 2, data, model * band).astype(np.float32)
    return out


def _write_mrc(path: Path, image: NDArray[np.float32], pixel_size_a: float) -> None:
    import mrcfile

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with mrcfile.new(temporary, overwrite=True) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = pixel_size_a
        mrc.header.label[0] = MRC_LABEL  # mrcfile's default label holds the time
    os.replace(temporary, path)


def _band(task: CtfTask) -> tuple[float, float]:
    """The fitted spatial frequencies (1/Å): the lowest resolution to the tilt's limit."""
    options = task.options
    return 1.0 / options.min_resolution_a, 1.0 / options.resolution_limit_a(task.pre_exposure_e_a2)


def fit_tilt(task: CtfTask) -> tuple[CtfFit, float, NDArray[np.float32], float, bool]:
    """Fit one tilt; returns the fit, the gradient, the spectrum used, its pixel, amplitude?"""
    options = task.options
    k_min, k_max = _band(task)
    search = options.search_range_um(task.nominal_defocus_um)

    def fit_spectrum(spectrum: NDArray[np.float32], pixel: float, amplitude: bool) -> CtfFit:
        return fit_ctf_spectrum(
            spectrum,
            pixel,
            task.optics,
            defocus_range_um=search,
            k_min_a_inv=k_min,
            k_max_a_inv=k_max,
            max_astigmatism_um=options.max_astigmatism_um,
            is_amplitude=amplitude,
        )

    use_spectrum = task.spectrum_path is not None and not options.tilt_aware
    if options.source == "images" or task.spectrum_path is None:
        use_spectrum = False
    if use_spectrum:
        assert task.spectrum_path is not None
        spectrum, pixel = _read_mrc(task.spectrum_path)
        return fit_spectrum(spectrum, pixel, True), 0.0, spectrum, pixel, True
    if task.image_path is None:
        raise TomopilotError("no image and no power spectrum to fit")
    image, pixel = _read_mrc(task.image_path)
    pixel = pixel or task.pixel_size_a
    spectra, _ = tile_power_spectra(image, options.tile_px)
    spectrum = spectra.mean(axis=0)
    if options.tilt_aware:
        tilted = fit_ctf_tilted(
            image,
            pixel,
            task.optics,
            tilt_deg=task.tilt_deg,
            defocus_range_um=search,
            tile_px=options.tile_px,
            k_min_a_inv=k_min,
            k_max_a_inv=k_max,
            max_astigmatism_um=options.max_astigmatism_um,
        )
        return tilted.fit, tilted.gradient, spectrum, pixel, False
    return fit_spectrum(spectrum, pixel, False), 0.0, spectrum, pixel, False


def run_ctf_task(task: CtfTask) -> CtfResult:
    """Fit one tilt and write its diagnostic; failures are returned, never raised."""
    start = time.perf_counter()
    result = CtfResult(task.tilt_series, task.index, ok=False)
    source = task.image_path if task.options.tilt_aware else (task.spectrum_path or task.image_path)
    try:
        fit, gradient, spectrum, pixel, amplitude = fit_tilt(task)
        k_min, k_max = _band(task)
        image = diagnostic_image(
            spectrum, pixel, fit, task.optics, k_min, k_max, is_amplitude=amplitude
        )
        _write_mrc(task.diagnostic_path, image, pixel)
    except Exception as exc:  # a worker must report, never die
        message = str(exc) if isinstance(exc, TomopilotError) else f"{type(exc).__name__}: {exc}"
        result.error = (
            message if source is None or str(source) in message else f"{source}: {message}"
        )
    else:
        result.ok = True
        result.defocus_u_um = fit.defocus_u_um
        result.defocus_v_um = fit.defocus_v_um
        result.angle_deg = fit.angle_deg
        result.score = fit.score
        result.resolution_a = fit.resolution_a
        result.gradient = gradient
    result.seconds = time.perf_counter() - start
    return result
