"""Benchmark: CTF defocus estimation, tomopilot against teamtomo's torch-ctf-estimation.

Like with like: the peer's 1-D exhaustive search alone (``n_iterations_2d=0``, its search and
1-D refinement) and its full estimate (plus the 2-D Adam refinement, 100 steps) are both timed
and scored; the speed goal compares our fit with the peer's *search*. Both get the same images,
the same defocus window (±2 µm around the nominal), the same fit band (40–5 Å), 512² patches,
and the same threads (ours one thread by design: the ratio is per core with the peer given all
cores, said so in the JSON); each image: 1 warm-up on the first image, then every image timed
once per repeat, ``REPEATS`` repeats, median. The peer's 2-D refinement (about a minute per
image on 2 cores) is timed on the first ``REFINE_IMAGES`` images, 1 repeat, against ours timed
the same way on the same images, so the bench stays under 10 minutes.

Test images come from a second image model that is not our fitter's: an independent
implementation of the CTF formula (written here, sharing no code with ``tomopilot.imaging``)
with a different envelope (partial spatial and temporal coherence instead of a B-factor, plus
the detector's sinc MTF), a different astigmatism convention (angle from the y axis, defocus
given as the two principal values), a specimen with a power-law spectrum and ice-thickness
background, and Poisson counting noise at tilt-series dose (3 e/Å²). The twin's images (whose
model our fitter shares) are scored for ours too, as a metric (the peer runs on the second
model only, to keep the bench under 10 minutes). The error goals can fail: our RMS error
on the second model ≤ 50 nm, and no worse than the peer's search.

Run: ``.venv/bin/python bench/ctf.py`` (the peer needs ``pip install -e '.[bench-peers]'``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "preprocessing"))

from preprocessing_support import twin_image

from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.fit_ctf import fit_ctf_spectrum, tile_power_spectra

SIZE = 2048
PIXEL_A = 2.0
DOSE_E_A2 = 3.0
TARGETS_UM = (-2.0, -2.75, -3.5, -4.25, -5.0)
ASTIGMATISM_UM = (0.1, 0.25, 0.05, 0.3, 0.15)  # |ΔU − ΔV| of the second model's images
AXES_FROM_Y_DEG = (20.0, 75.0, 130.0, 160.0, 45.0)
REPEATS = 2
REFINE_IMAGES = 3
OPTICS = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def independent_image(
    seed: int, mean_defocus_um: float, astigmatism_um: float, axis_from_y_deg: float
) -> np.ndarray:
    """A counting-camera image from an image model independent of our fitter's.

    Weak phase-and-amplitude object with a k^-1 power spectrum plus a smooth ice-thickness
    background; CTF sin(χ + φ_amp) with χ from the relativistic wavelength, Cs and an
    astigmatic defocus whose axis is measured from the y axis; envelope = spatial coherence
    (illumination semi-angle 0.02 mrad) × temporal coherence (Cc 2.7 mm, ΔE 0.8 eV) × the
    detector's sinc MTF; Poisson counts at ``DOSE_E_A2``.
    """
    rng = np.random.default_rng(seed)
    volts = 300e3
    wavelength = 12.2643 / math.sqrt(volts * (1.0 + 0.97845e-6 * volts))  # Å
    cs = 2.7e7  # Å
    ky = np.fft.fftfreq(SIZE, PIXEL_A)[:, None]
    kx = np.fft.rfftfreq(SIZE, PIXEL_A)[None, :]
    k2 = kx * kx + ky * ky
    k = np.sqrt(k2)
    azimuth_from_y = np.arctan2(kx, ky)
    df_mean = -mean_defocus_um * 1e4  # underfocus positive, Å
    df = df_mean + 0.5 * astigmatism_um * 1e4 * np.cos(
        2.0 * (azimuth_from_y - math.radians(axis_from_y_deg))
    )
    chi = math.pi * wavelength * df * k2 - 0.5 * math.pi * cs * wavelength**3 * k2 * k2
    amplitude_phase = math.asin(0.1)
    ctf = np.sin(chi + amplitude_phase)
    alpha = 2e-5  # rad
    gradient = 2.0 * math.pi * (wavelength * df * k - cs * wavelength**3 * k2 * k)
    spatial = np.exp(-((alpha / (2.0 * wavelength)) ** 2) * gradient**2)
    spread = 2.7e7 * 0.8 / volts  # Cc ΔE/E in Å
    temporal = np.exp(-0.5 * (math.pi * wavelength * spread) ** 2 * k2 * k2)
    mtf = np.sinc(kx * PIXEL_A) * np.sinc(ky * PIXEL_A)
    noise = rng.standard_normal((SIZE, SIZE // 2 + 1)) + 1j * rng.standard_normal(
        (SIZE, SIZE // 2 + 1)
    )
    specimen = noise / np.maximum(k, 1.0 / (SIZE * PIXEL_A)) ** 0.5
    specimen[0, 0] = 0.0
    contrast = np.fft.irfft2(specimen * ctf * spatial * temporal * mtf, s=(SIZE, SIZE))
    contrast *= 0.08 / contrast.std()  # weak: a lamella's phase contrast, below the shot noise
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    thickness = 1.0 - 0.15 * (xx - 0.5) + 0.08 * np.sin(2.0 * math.pi * yy)
    expected = DOSE_E_A2 * PIXEL_A**2 * thickness * np.clip(1.0 + contrast, 0.0, None)
    return rng.poisson(expected).astype(np.float32)


def ours(image: np.ndarray, pixel_a: float, target: float) -> tuple[float, float, float]:
    """Mean defocus (µm), astigmatism (µm) and seconds of tomopilot's fit of one image."""
    start = time.perf_counter()
    spectra, _ = tile_power_spectra(image, 512)
    fit = fit_ctf_spectrum(
        spectra.mean(axis=0),
        pixel_a,
        OPTICS,
        defocus_range_um=(target - 2.0, min(target + 2.0, -0.3)),
    )
    seconds = time.perf_counter() - start
    return fit.defocus_um, abs(fit.defocus_u_um - fit.defocus_v_um), seconds


def _torchvision_shim() -> bool:
    """Provide torchvision.transforms.functional.gaussian_blur if torchvision cannot load.

    PyPI's torchvision wheels are built for CUDA torch and fail to import beside a CPU-only
    torch; the peer only needs this one standard Gaussian blur (reflect padding).
    """
    try:
        import torchvision.transforms.functional  # noqa: F401

        return False
    except Exception:
        pass
    import torch

    def gaussian_blur(img: Any, kernel_size: list[int], sigma: list[float] | None = None) -> Any:
        ks = list(kernel_size) if isinstance(kernel_size, list | tuple) else [kernel_size] * 2
        sg = (
            list(sigma)
            if isinstance(sigma, list | tuple)
            else [sigma or 0.3 * ((ks[0] - 1) * 0.5 - 1) + 0.8] * 2
        )
        out = img
        squeeze = out.dim() == 2
        if squeeze:
            out = out[None]
        batch = out.reshape(-1, 1, *out.shape[-2:])
        for axis, (k, s) in enumerate(zip(ks, sg, strict=True)):
            x = torch.arange(k, dtype=batch.dtype) - (k - 1) / 2
            kernel = torch.exp(-0.5 * (x / s) ** 2)
            kernel = kernel / kernel.sum()
            shape = (1, 1, 1, k) if axis == 0 else (1, 1, k, 1)
            pad = (k // 2, k // 2, 0, 0) if axis == 0 else (0, 0, k // 2, k // 2)
            batch = torch.nn.functional.conv2d(
                torch.nn.functional.pad(batch, pad, mode="reflect"), kernel.reshape(shape)
            )
        result = batch.reshape(out.shape)
        return result[0] if squeeze else result

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.gaussian_blur = gaussian_blur  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.transforms = transforms  # type: ignore[attr-defined]
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules.update(
        {
            "torchvision": package,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )
    return True


def peer_runner() -> tuple[Any, str | None, bool]:
    """The peer's fit function (search only, or search + 2-D refinement), or why it is missing."""
    try:
        import torch
    except ImportError as exc:
        return None, f"torch not installed ({exc})", False
    shim = _torchvision_shim()
    try:
        from torch_ctf_estimation import CTFFittingParams, OpticalParams, estimate_ctf
    except Exception as exc:
        return None, f"torch-ctf-estimation not importable ({type(exc).__name__}: {exc})", shim
    torch.set_num_threads(CORES)

    def run(image: np.ndarray, pixel_a: float, target: float, refine: bool) -> tuple[float, float]:
        start = time.perf_counter()
        _, result1d, result2d = estimate_ctf(
            torch.as_tensor(image, dtype=torch.float32),
            OpticalParams(pixel_spacing_angstroms=pixel_a, amplitude_contrast_fraction=0.1),
            CTFFittingParams(
                defocus_grid_resolution=(1, 1, 1),
                frequency_fit_range_angstroms=(40.0, 5.0),
                defocus_range_microns=(max(0.3, -target - 2.0), -target + 2.0),
                patch_sidelength=512,
                n_iterations_2d=100 if refine else 0,
            ),
            device=torch.device("cpu"),
        )
        seconds = time.perf_counter() - start
        if refine and result2d.defocus_u is not None and result2d.defocus_v is not None:
            defocus = 0.5 * (float(result2d.defocus_u) + float(result2d.defocus_v))
        else:
            defocus = float(result1d.ctf_model.defocus_um)
        return -abs(defocus), seconds  # the peer reports underfocus positive, in µm

    return run, None, shim


def _score(errors_nm: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(errors_nm))))


def evaluate(
    fit: Any, images: list[tuple[np.ndarray, float, float, float]], repeats: int = REPEATS
) -> tuple[list[float], float]:
    """Errors (nm) of ``fit`` on (image, pixel, nominal, truth) and its median seconds/image.

    1 warm-up on the first image, then ``repeats`` passes over all images; per image the
    median of its repeats; the mean over images is returned.
    """
    first = images[0]
    fit(first[0], first[1], first[2])
    times: list[list[float]] = [[] for _ in images]
    errors: list[float] = [0.0] * len(images)
    for _ in range(repeats):
        for i, (image, pixel, nominal, truth) in enumerate(images):
            defocus, seconds = fit(image, pixel, nominal)
            times[i].append(seconds)
            errors[i] = (defocus - truth) * 1e3
    return errors, float(np.mean([statistics.median(t) for t in times]))


def main() -> dict[str, Any]:
    settings = zip(TARGETS_UM, ASTIGMATISM_UM, AXES_FROM_Y_DEG, strict=True)
    second = [
        (independent_image(700 + i, t, a, axis), PIXEL_A, t, t)
        for i, (t, a, axis) in enumerate(settings)
    ]
    twin = []
    for i, t in enumerate(TARGETS_UM):
        image, pixel, truth = twin_image(500 + 11 * i, SIZE, 0.0, t)
        twin.append((image, pixel, t, float(truth.defocus_um)))
    how = (
        f"1 warm-up, {REPEATS} repeats over the images, per-image median, mean over images; "
        f"ours 1 thread, the peer torch.set_num_threads({CORES}); same images, window, band"
    )
    metrics: dict[str, Any] = {
        "image_px": SIZE,
        "pixel_size_a": PIXEL_A,
        "dose_e_a2": DOSE_E_A2,
        "cores": CORES,
        "how": how,
        "second_model": "independent CTF formula: coherence envelopes + sinc MTF, astigmatism "
        "axis from y, k^-1 specimen, ice gradient, Poisson counts",
    }
    astig_errors = []
    for (image, pixel, nominal, _), true_astig in zip(second, ASTIGMATISM_UM, strict=True):
        _, astig, _ = ours(image, pixel, nominal)
        astig_errors.append(round((astig - true_astig) * 1e3, 1))
    metrics["ours_astigmatism_error_nm_second_model"] = astig_errors

    def mine(image: np.ndarray, pixel: float, nominal: float) -> tuple[float, float]:
        defocus, _, seconds = ours(image, pixel, nominal)
        return defocus, seconds

    results: dict[str, dict[str, Any]] = {}
    for model, images in (("second_model", second), ("twin", twin)):
        errors, seconds = evaluate(mine, images)
        results[model] = {
            "true_defocus_um": [round(i[3], 3) for i in images],
            "ours_error_nm": [round(e, 1) for e in errors],
            "ours_rms_error_nm": round(_score(errors), 1),
            "ours_seconds_per_image": round(seconds, 3),
        }
    run, missing, shim = peer_runner()
    goals: dict[str, Any] = {}
    ours_rms = results["second_model"]["ours_rms_error_nm"]
    goals["defocus_error_nm_second_model"] = {
        "value": ours_rms,
        "goal": "<= 50",
        "met": bool(ours_rms <= 50.0),
        "note": "RMS over the second model's images (not our fitter's image model)",
    }
    if run is None:
        metrics["peer"] = f"missing: {missing}"
        for name, goal in (("speedup_vs_peer_search", ">= 5"), ("error_vs_peer_search", "<= 1")):
            goals[name] = {"value": None, "goal": goal, "met": None, "note": missing}
    else:
        metrics["peer"] = "torch-ctf-estimation (CPU)"
        metrics["peer_torchvision_shim"] = shim
        entry = results["second_model"]
        for label, refine in (("search", False), ("search_and_refine", True)):

            def theirs(
                image: np.ndarray, pixel: float, nominal: float, refine: bool = refine
            ) -> tuple[float, float]:
                return run(image, pixel, nominal, refine)

            # the 2-D refinement costs about a minute per image on 2 cores: it is timed on the
            # first REFINE_IMAGES images, 1 repeat, and ours again the same way for its ratio
            subset = second[:REFINE_IMAGES] if refine else second
            errors, seconds = evaluate(theirs, subset, 1 if refine else REPEATS)
            entry[f"peer_{label}_error_nm"] = [round(e, 1) for e in errors]
            entry[f"peer_{label}_rms_error_nm"] = round(_score(errors), 1)
            entry[f"peer_{label}_seconds_per_image"] = round(seconds, 3)
        speedup = entry["peer_search_seconds_per_image"] / entry["ours_seconds_per_image"]
        _, ours_subset_s = evaluate(mine, second[:REFINE_IMAGES], 1)
        refined = entry["peer_search_and_refine_seconds_per_image"] / ours_subset_s
        metrics["speedup_vs_peer_search_and_refine"] = round(refined, 2)
        metrics["how_search_and_refine"] = (
            f"first {REFINE_IMAGES} images of the second model, 1 warm-up, 1 repeat, mean over "
            "images, for the peer's search + 2-D refinement and for ours alike"
        )
        peer_rms = max(entry["peer_search_rms_error_nm"], 1e-9)
        goals["speedup_vs_peer_search"] = {
            "value": round(speedup, 2),
            "goal": ">= 5",
            "met": bool(speedup >= 5.0),
            "note": f"second model; peer search seconds / ours; {how}",
        }
        goals["error_vs_peer_search"] = {
            "value": round(ours_rms / peer_rms, 3),
            "goal": "<= 1",
            "met": bool(ours_rms <= peer_rms),
            "note": "our RMS defocus error / the peer search's, second model",
        }
    metrics["results"] = results
    return {"bench": "ctf", "metrics": metrics, "goals": goals}


if __name__ == "__main__":
    result = main()
    print(json.dumps(result, allow_nan=False))
