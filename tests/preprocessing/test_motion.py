"""Motion estimation: exact on synthetic shifts, ≤ 0.1 px on twin movies at tilt-series dose."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
from preprocessing_support import rms_trajectory_error, synthetic_movie, twin_movie

from tomopilot.imaging.dose_weighting import (
    critical_exposure_e_a2,
    dose_weights,
    frame_end_doses_e_a2,
)
from tomopilot.imaging.fourier import fourier_shift
from tomopilot.imaging.motion_global import align_spectra
from tomopilot.imaging.motion_local import (
    LocalMotionModel,
    PatchObservations,
    cubic_basis,
    fit_local_model,
)
from tomopilot.imaging.periodic_component import FrameEdges
from tomopilot.imaging.trajectory import smooth_trajectory
from tomopilot.processing.motioncorr.correct_frames import correct_frames
from tomopilot.processing.motioncorr.options import MotionCorrOptions


def test_noise_free_shifts_are_exact() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(size=(256, 256)).astype(np.float32)
    truth = np.cumsum(rng.normal(0, 1.2, (8, 2)), axis=0)
    truth -= truth[0]
    frames = np.stack([fourier_shift(base, x, y) for x, y in truth])
    for weighting in ("optimal", "bfactor"):
        motion = align_spectra(sfft.rfft2(frames), (256, 256), bfactor_px2=20, weighting=weighting)
        assert rms_trajectory_error(motion.shifts_px, truth) < 0.01


def test_large_shifts_are_found_by_the_coarse_search() -> None:
    truth = np.array([[0, 0], [12.3, -7.1], [25.0, -14.4], [31.7, -20.2]])
    frames = synthetic_movie(truth, size=384, counts=40.0)
    options = MotionCorrOptions(power_spectra=False, float16=False, smooth_trajectory=False)
    out = correct_frames(frames, pixel_size_a=1.0, options=options)
    assert rms_trajectory_error(out.shifts_px, truth) < 0.1


def test_border_jump_does_not_pull_shifts_to_zero() -> None:
    """Frames cut from a larger moving scene with a bright half: the border jump stays put."""
    rng = np.random.default_rng(2)
    size, margin = 256, 32
    truth = np.c_[np.linspace(0, 3, 6), np.linspace(0, -2, 6)]
    big = size + 2 * margin
    scene = 5 + 40 * (np.arange(big)[:, None] < big // 2) + rng.normal(0, 3, (big, big))
    frames = np.stack(
        [fourier_shift(scene, x, y)[margin:-margin, margin:-margin] for x, y in truth]
    )
    spectra = sfft.rfft2(frames)
    plain = align_spectra(spectra, (size, size), bfactor_px2=150, weighting="bfactor")
    corrected = align_spectra(spectra, (size, size), edges=FrameEdges.from_frames(frames))
    error = rms_trajectory_error(corrected.shifts_px, truth)
    assert error < 0.05
    assert rms_trajectory_error(plain.shifts_px, truth) > 4 * error


def test_trajectory_smoothing_keeps_a_smooth_path() -> None:
    t = np.arange(10.0)
    truth = np.c_[0.3 * t, 3 * (1 - np.exp(-t / 2))]
    smoothed, strength = smooth_trajectory(truth)
    assert rms_trajectory_error(smoothed, truth) < 0.02
    assert strength >= 0.0


@pytest.mark.slow
def test_twin_global_motion_within_a_tenth_of_a_pixel() -> None:
    """2048² twin movies of 10 frames at 3 e/Å² on the lamella, at 0°, 30° and −45°."""
    errors = []
    for seed, tilt in ((1, 0.0), (2, 30.0), (3, -45.0)):
        movie = twin_movie(seed, 2048, tilt)
        assert movie.frame_dose_e_a2 == pytest.approx(0.3)  # 3 e/Å² over 10 frames
        out = correct_frames(
            movie.frames,
            pixel_size_a=movie.pixel_size_a,
            options=MotionCorrOptions(power_spectra=False, float16=False),
            gain=movie.gain,
            defects=movie.defects,
        )
        errors.append(rms_trajectory_error(out.shifts_px, movie.shifts_px))
    rms = float(np.sqrt(np.mean(np.square(errors))))
    assert rms <= 0.1, f"global trajectory errors {np.round(errors, 3)} px, RMS {rms:.3f}"
    assert max(errors) <= 0.15


def _residual_px(movie: object, out: object) -> float:
    """RMS over frames and a grid of positions of true minus modelled displacement."""
    truth = movie.truth  # type: ignore[attr-defined]
    h, w = movie.frames.shape[1:]  # type: ignore[attr-defined]
    ys, xs = np.mgrid[64:h:128, 64:w:128].astype(float)
    errors = []
    first = truth.displacement_px(0, xs, ys)
    for i in range(movie.frames.shape[0]):  # type: ignore[attr-defined]
        true = truth.displacement_px(i, xs, ys) - first
        model = np.broadcast_to(out.shifts_px[i], true.shape).copy()  # type: ignore[attr-defined]
        if out.local_model is not None:  # type: ignore[attr-defined]
            model += out.local_model.displacement_px(float(i), xs, ys)  # type: ignore[attr-defined]
        errors.append(true - model)
    e = np.stack(errors)
    e -= e.mean(axis=(0, 1, 2))
    return float(np.sqrt(np.mean(np.sum(e**2, axis=-1))))


@pytest.mark.slow
def test_twin_local_motion_patches_reduce_the_residual() -> None:
    movie = twin_movie(5, 2048, 0.0, local_motion_a=4.0)
    results = {}
    for patches in ((1, 1), (7, 7)):
        options = MotionCorrOptions(power_spectra=False, float16=False, patches=patches)
        out = correct_frames(
            movie.frames,
            pixel_size_a=movie.pixel_size_a,
            options=options,
            gain=movie.gain,
            defects=movie.defects,
        )
        results[patches] = (_residual_px(movie, out), out)
    global_only, local = results[(1, 1)][0], results[(7, 7)][0]
    assert results[(7, 7)][1].local_model is not None
    assert local < 0.9 * global_only, f"patches {local:.3f} px vs global {global_only:.3f} px"


def test_local_model_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    shape = (1000, 1000)
    true = LocalMotionModel(rng.normal(0, 0.05, 18), rng.normal(0, 0.05, 18), shape)
    xs, ys, zs, ids = [], [], [], []
    for patch, (x, y) in enumerate(
        [(x, y) for x in (100, 300, 500, 700, 900) for y in (100, 500, 900)]
    ):
        for z in range(10):
            xs.append(x), ys.append(y), zs.append(float(z)), ids.append(patch)
    x, y, z = np.array(xs, float), np.array(ys, float), np.array(zs)
    offsets = rng.normal(0, 2, (15, 2))[np.array(ids)]
    shifts = np.stack(
        [
            true.displacement_px(zz, np.array([xx]), np.array([yy]))[0]
            for xx, yy, zz in zip(x, y, z, strict=True)
        ]
    )
    observations = PatchObservations(
        x, y, z, shifts + offsets + rng.normal(0, 0.01, shifts.shape), np.array(ids)
    )
    model = fit_local_model(observations, shape)
    assert model is not None
    grid = np.linspace(0, 999, 7)
    for frame in (3.0, 9.0):
        diff = model.displacement_px(frame, grid, grid) - true.displacement_px(frame, grid, grid)
        assert np.abs(diff).max() < 0.05
    assert cubic_basis(np.zeros(1), np.zeros(1), np.zeros(1)).sum() == 0.0  # no motion in frame 0


def test_binning_and_dose_weighting() -> None:
    truth = np.c_[np.linspace(0, 4, 8), np.linspace(0, 2, 8)]
    frames = synthetic_movie(truth, size=256, counts=30.0)
    options = MotionCorrOptions(
        bin_factor=2,
        power_spectra=True,
        float16=False,
        dose_weighting=True,
        save_no_dw=True,
        even_odd=True,
    )
    out = correct_frames(
        frames, pixel_size_a=1.0, options=options, dose_per_frame_e_a2=0.5, pre_exposure_e_a2=10.0
    )
    assert out.image.shape == (128, 128) and out.pixel_size_a == pytest.approx(2.0)
    assert rms_trajectory_error(out.shifts_px, truth) < 0.15  # in original pixels
    assert out.image_no_dw is not None and out.even is not None and out.odd is not None
    # Mean level is kept: an unweighted sum of 8 frames of ~30 counts per original pixel.
    assert out.image_no_dw.mean() == pytest.approx(frames.sum(axis=0).mean(), rel=0.01)
    assert out.image.mean() == pytest.approx(out.image_no_dw.mean(), rel=0.01)
    assert np.allclose(out.even + out.odd, out.image_no_dw, atol=1e-2)
    assert not np.allclose(out.image, out.image_no_dw, atol=1.0)
    assert out.power_spectrum is not None and out.power_spectrum.shape == (512, 512)


def test_dose_weights_favour_early_frames_at_high_frequency() -> None:
    doses = frame_end_doses_e_a2(10, 0.3, pre_exposure_e_a2=20.0)
    assert doses[0] == pytest.approx(20.3) and doses[-1] == pytest.approx(23.0)
    weights = dose_weights((64, 64), 2.0, doses)
    low, high = weights[:, 1, 1], weights[:, 20, 20]  # 1/128 and ~1/4.5 Å⁻¹
    assert np.allclose(np.sum(weights**2, axis=0), 1.0, atol=1e-5)
    assert np.ptp(low) < 0.01 and high[0] > 1.2 * high[-1]
    assert critical_exposure_e_a2(0.1) == pytest.approx(0.245 * 10**1.665 + 2.81)
