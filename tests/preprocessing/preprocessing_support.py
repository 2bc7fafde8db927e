"""Shared helpers of the preprocessing tests: twin movies and images, synthetic movies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.fourier import fourier_shift

PIXEL_A = 2.0
EER_GROUP = 160  # hardware frames per frame in the EER movies the fixtures write


@dataclass
class TwinMovie:
    """A twin movie with what a test needs to score it."""

    frames: NDArray[np.float32]
    gain: NDArray[np.float32]  # multiplicative, 0 on defects
    defects: NDArray[np.bool_]
    shifts_px: NDArray[np.float64]  # true global (n, 2)
    truth: object  # the twin's ExposureTruth
    pixel_size_a: float
    frame_dose_e_a2: float


def _scope(seed: int, size: int, *, local_motion_a: float = 1.5) -> object:
    from tomopilot.instrument.twin import TwinConfig, TwinMicroscope

    config = TwinConfig.model_validate(
        {
            "seed": seed,
            "specimen": {"kind": "lamella", "thickness_nm": 200},
            "presets": {"record": {"camera_area_px": [size, size], "binning": 1}},
            "movie": {"global_motion_a": 4.0, "local_motion_a": local_motion_a},
        }
    )
    return TwinMicroscope(config)


def on_specimen(truth: object) -> bool:
    """The exposure's centre lies on the lamella (not in a trench or the bulk)."""
    path = float(truth.path_centre_nm)  # type: ignore[attr-defined]
    return 0.0 < path < 2000.0


_CACHE: dict[tuple[object, ...], TwinMovie] = {}


def twin_movie(
    first_seed: int, size: int, tilt_deg: float, *, local_motion_a: float = 1.5
) -> TwinMovie:
    """A 10-frame Record movie at 3 e/Å² on the lamella (seeds tried from ``first_seed``)."""
    from tomopilot.instrument import LowDoseArea

    key = (first_seed, size, tilt_deg, local_motion_a)
    if key in _CACHE:
        return _CACHE[key]
    for seed in range(first_seed, first_seed + 40):
        scope = _scope(seed, size, local_motion_a=local_motion_a)
        scope.optics.set_focus_um(-3.0)  # type: ignore[attr-defined]
        scope.stage.tilt_to(tilt_deg)  # type: ignore[attr-defined]
        probe = scope.camera.acquire(LowDoseArea.RECORD)  # type: ignore[attr-defined]
        if not on_specimen(scope.ground_truth.exposure(probe.exposure_id)):  # type: ignore[attr-defined]
            continue
        movie = scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=10)  # type: ignore[attr-defined]
        truth = scope.ground_truth.exposure(movie.image.exposure_id)  # type: ignore[attr-defined]
        defects = scope.camera.defect_map()  # type: ignore[attr-defined]
        gain = scope.camera.gain_reference()  # type: ignore[attr-defined]
        result = TwinMovie(
            movie.frames,
            gain,
            defects,
            truth.frame_shifts_px - truth.frame_shifts_px[0],
            truth,
            movie.image.pixel_size_a,
            movie.frame_dose_e_a2,
        )
        _CACHE[key] = result
        return result
    raise RuntimeError("no seed put the field of view on the lamella")


def rms_trajectory_error(estimate: NDArray[np.floating], truth: NDArray[np.floating]) -> float:
    """RMS (over frames) of the 2D error after removing the mean offset, in pixels."""
    error = np.asarray(estimate, float) - np.asarray(truth, float)
    error -= error.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def synthetic_movie(
    shifts_px: NDArray[np.floating], *, size: int = 256, counts: float = 20.0, seed: int = 0
) -> NDArray[np.uint16]:
    """Poisson frames of a smooth random texture moved by ``shifts_px`` (x, y) per frame."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    texture = gaussian_filter(rng.normal(size=(size, size)), 2.0)
    base = counts * (1.0 + 2.5 * texture / texture.std() * 0.2)
    frames = [np.clip(fourier_shift(base, float(x), float(y)), 0, None) for x, y in shifts_px]
    return np.stack([rng.poisson(f) for f in frames]).astype(np.uint16)


def twin_image(first_seed: int, size: int, tilt_deg: float, defocus_um: float) -> tuple:
    """A Record image (3 e/Å²) on the lamella whose true centre defocus is ``defocus_um``.

    Returns (image, pixel_size_a, truth); the focus is set so that the specimen height is
    compensated (the twin's true defocus is focus minus height).
    """
    from tomopilot.instrument import LowDoseArea

    for seed in range(first_seed, first_seed + 40):
        scope = _scope(seed, size)
        scope.stage.tilt_to(tilt_deg)  # type: ignore[attr-defined]
        scope.optics.set_focus_um(defocus_um)  # type: ignore[attr-defined]
        probe = scope.camera.acquire(LowDoseArea.RECORD)  # type: ignore[attr-defined]
        truth = scope.ground_truth.exposure(probe.exposure_id)  # type: ignore[attr-defined]
        if not on_specimen(truth):
            continue
        scope.optics.set_focus_um(defocus_um - (truth.defocus_um - defocus_um))  # type: ignore[attr-defined]
        image = scope.camera.acquire(LowDoseArea.RECORD)  # type: ignore[attr-defined]
        truth = scope.ground_truth.exposure(image.exposure_id)  # type: ignore[attr-defined]
        return image.data, image.pixel_size_a, truth
    raise RuntimeError("no seed put the field of view on the lamella")
