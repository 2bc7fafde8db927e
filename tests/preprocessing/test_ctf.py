"""CTF estimation: astigmatic fits, the tilt-aware mode on twin images, and the CTF job."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
from preprocessing_support import twin_image

from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.fit_ctf import fit_ctf_spectrum, model_power_spectrum, tile_power_spectra
from tomopilot.imaging.fit_ctf_tilted import fit_ctf_tilted
from tomopilot.io.star import CTF_LABELS, read_tilt_series_set
from tomopilot.processing.ctf import CtfOptions, run_ctf
from tomopilot.processing.motioncorr import MotionCorrOptions, run_motioncorr
from tomopilot.processing.relion_job import JobStatus, RelionJob

OPTICS = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
TARGETS_UM = (-2.0, -2.75, -3.5, -4.25, -5.0)


@pytest.mark.parametrize(("u", "v", "angle"), [(-2.6, -2.4, 30.0), (-4.1, -3.95, -60.0)])
def test_astigmatism_is_recovered(u: float, v: float, angle: float) -> None:
    spectrum = model_power_spectrum(512, 1.5, OPTICS, u, v, angle)
    fit = fit_ctf_spectrum(spectrum, 1.5, OPTICS, defocus_range_um=(-6.0, -1.0))
    assert abs(fit.defocus_u_um - u) < 0.005 and abs(fit.defocus_v_um - v) < 0.005
    assert abs((fit.angle_deg - angle + 90) % 180 - 90) < 1.0


@pytest.mark.slow
def test_twin_defocus_at_zero_tilt_within_50_nm() -> None:
    errors = []
    for index, target in enumerate(TARGETS_UM):
        image, pixel, truth = twin_image(200 + 7 * index, 1024, 0.0, target)
        spectra, _ = tile_power_spectra(image, 512)
        fit = fit_ctf_spectrum(
            spectra.mean(axis=0),
            pixel,
            OPTICS,
            defocus_range_um=(target - 2, min(target + 2, -0.3)),
        )
        errors.append((fit.defocus_um - truth.defocus_um) * 1e3)
    rms = float(np.sqrt(np.mean(np.square(errors))))
    assert rms <= 50.0, f"defocus errors {np.round(errors)} nm"


@pytest.mark.slow
def test_twin_defocus_at_60_degrees_within_150_nm_tilt_aware() -> None:
    errors = []
    for index, target in enumerate(TARGETS_UM):
        image, pixel, truth = twin_image(300 + 7 * index, 1024, 60.0, target)
        tilted = fit_ctf_tilted(
            image,
            pixel,
            OPTICS,
            tilt_deg=60.0,
            defocus_range_um=(target - 2, min(target + 2, -0.3)),
        )
        errors.append((tilted.fit.defocus_um - truth.defocus_um) * 1e3)
        # The specimen tilt found from the data (stage tilt plus the lamella's).
        gx, gy = truth.defocus_gradient_um_per_px
        true_tilt = np.degrees(np.arctan(np.hypot(gx, gy) / (pixel * 1e-4)))
        assert abs(tilted.specimen_tilt_deg - true_tilt) < 12.0
    rms = float(np.sqrt(np.mean(np.square(errors))))
    assert rms <= 150.0, f"defocus errors {np.round(errors)} nm"


def test_ctf_job_writes_relion_labels(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".mrc"))
    tilt_series, _ = read_tilt_series_set(project / "ImportTomo/job001/tilt_series.star")
    motion_job = RelionJob.create(project, "MotionCorr")
    run_motioncorr(tilt_series, motion_job, MotionCorrOptions())
    # Replace the corrected images by twin images with a known defocus.
    corrected, _ = read_tilt_series_set(motion_job.directory / "corrected_tilt_series.star")
    truths = []
    for index, row in corrected.series[0].tilts.iterrows():
        image, _, truth = twin_image(400 + 5 * int(index), 512, 0.0, -3.0 - 0.5 * int(index))
        with mrcfile.new(project / row["rlnMicrographName"], overwrite=True) as mrc:
            mrc.set_data(image.astype(np.float16))
            mrc.voxel_size = 2.0
        truths.append(truth.defocus_um)
    job = RelionJob.create(project, "CtfFind")
    options = CtfOptions(source="images", tile_px=256)
    summary = run_ctf(corrected, job, options)
    assert summary.status is JobStatus.SUCCESS
    table = starfile.read(job.directory / "tilt_series" / "TS_01.star")
    for label in CTF_LABELS:
        assert label in table.columns
    assert table["rlnCtfImage"].iloc[0].startswith("CtfFind/job003/frames/") and table[
        "rlnCtfImage"
    ].iloc[0].endswith("_PS.ctf:mrc")
    # RELION's convention: Å, underfocus positive.
    mean_um = (table["rlnDefocusU"] + table["rlnDefocusV"]).to_numpy() / 2e4
    assert np.allclose(mean_um, -np.array(truths), atol=0.1)
    assert (table["rlnDefocusU"] >= table["rlnDefocusV"]).all()
    overview = starfile.read(job.directory / "tilt_series_ctf.star")
    assert overview["rlnTomoTiltSeriesStarFile"].tolist() == [
        "CtfFind/job003/tilt_series/TS_01.star"
    ]
    diagnostic = project / table["rlnCtfImage"].iloc[0].split(":")[0]
    with mrcfile.open(diagnostic) as mrc:
        assert mrc.data.shape == (256, 256)
    # A rerun fits nothing again.
    again = run_ctf(corrected, RelionJob.at(job.directory), options)
    assert again.n_skipped == 2 and again.n_processed == 0


def test_ctf_job_reports_a_missing_image(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".mrc"))
    tilt_series, _ = read_tilt_series_set(project / "ImportTomo/job001/tilt_series.star")
    motion_job = RelionJob.create(project, "MotionCorr")
    run_motioncorr(tilt_series, motion_job, MotionCorrOptions(float16=False, power_spectra=False))
    corrected, _ = read_tilt_series_set(motion_job.directory / "corrected_tilt_series.star")
    lost = project / corrected.series[0].tilts["rlnMicrographName"].iloc[1]
    lost.unlink()
    summary = run_ctf(corrected, RelionJob.create(project, "CtfFind"), CtfOptions(tile_px=128))
    assert summary.status is JobStatus.FAILURE
    assert any(lost.name in (f.error or "") for f in summary.failures)
