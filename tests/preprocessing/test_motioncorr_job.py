"""The motion-correction job: RELION outputs, sentinels, reruns, failures and Dask."""

from __future__ import annotations

import filecmp
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from preprocessing_support import EER_GROUP

from tomopilot.core.events import EventBus, Message, Progress
from tomopilot.io.star import MOTIONCORR_LABELS, TILT_IMPORT_LABELS, read_tilt_series_set
from tomopilot.processing.executor import DaskExecutor, SerialExecutor
from tomopilot.processing.motioncorr import MotionCorrOptions, run_motioncorr
from tomopilot.processing.relion_job import JobStatus, RelionJob

OPTIONS = MotionCorrOptions(even_odd=True)


def _run(project: Path, options: MotionCorrOptions = OPTIONS, **kwargs: object) -> tuple:
    tilt_series, _ = read_tilt_series_set(project / "ImportTomo/job001/tilt_series.star")
    job = kwargs.pop("job", None) or RelionJob.create(project, "MotionCorr")
    summary = run_motioncorr(tilt_series, job, options, **kwargs)  # type: ignore[arg-type]
    return job, summary


def test_job_writes_relion_outputs(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    bus = EventBus()
    progress: list[Progress] = []
    bus.subscribe(Progress, progress.append)
    job, summary = _run(project, bus=bus)
    assert summary.status is JobStatus.SUCCESS
    assert (job.directory / "RELION_JOB_EXIT_SUCCESS").is_file()
    assert job.directory.relative_to(project).as_posix() == "MotionCorr/job002"
    assert progress[-1].done == progress[-1].total == 3
    # corrected_tilt_series.star: the global table with the tilt-series pixel size.
    overview = starfile.read(job.directory / "corrected_tilt_series.star")
    assert overview["rlnTomoTiltSeriesStarFile"].tolist() == [
        "MotionCorr/job002/tilt_series/TS_01.star"
    ]
    assert overview["rlnTomoTiltSeriesPixelSize"].tolist() == [2.0]
    # tilt_series/TS_01.star: import labels, then RELION's MotionCorr labels in order.
    table = starfile.read(job.directory / "tilt_series" / "TS_01.star")
    assert list(table.columns) == [*TILT_IMPORT_LABELS, *MOTIONCORR_LABELS]
    assert table["rlnMicrographPreExposure"].is_monotonic_increasing
    first = table.iloc[0]
    assert first["rlnMicrographName"] == "MotionCorr/job002/frames/TS_01_000_0_0.mrc"
    assert first["rlnCtfPowerSpectrum"] == "MotionCorr/job002/frames/TS_01_000_0_0_PS.mrc"
    assert first["rlnMicrographNameEven"].endswith("_EVN.mrc")
    assert first["rlnAccumMotionTotal"] >= first["rlnAccumMotionLate"] >= 0
    assert first["rlnAccumMotionTotal"] == pytest.approx(
        first["rlnAccumMotionEarly"] + first["rlnAccumMotionLate"]
    )
    # The float16 sum is MRC mode 12 with the pixel size; the spectrum is float32, 512².
    with mrcfile.open(project / first["rlnMicrographName"]) as mrc:
        assert int(mrc.header.mode) == 12 and mrc.data.dtype == np.float16
        assert mrc.data.shape == (256, 256)
        assert float(mrc.voxel_size.x) == pytest.approx(2.0)
        image = mrc.data.astype(np.float32)
    with (
        mrcfile.open(project / first["rlnMicrographNameEven"]) as even,
        mrcfile.open(project / first["rlnMicrographNameOdd"]) as odd,
    ):
        assert np.allclose(even.data.astype(np.float32) + odd.data, image, atol=0.5)
    with mrcfile.open(project / first["rlnCtfPowerSpectrum"]) as mrc:
        assert int(mrc.header.mode) == 2 and mrc.data.shape == (512, 512)
    # Per-movie metadata STAR with RELION's blocks and labels.
    meta = starfile.read(project / first["rlnMicrographMetadata"], always_dict=True)
    assert meta["general"]["rlnImageSizeZ"] == 8
    assert meta["general"]["rlnMicrographOriginalPixelSize"] == 2.0
    assert meta["general"]["rlnMotionModelVersion"] == 0
    shifts = meta["global_shift"]
    assert list(shifts.columns) == [
        "rlnMicrographFrameNumber",
        "rlnMicrographShiftX",
        "rlnMicrographShiftY",
    ]
    assert shifts["rlnMicrographFrameNumber"].tolist() == list(range(1, 9))
    assert shifts.iloc[0]["rlnMicrographShiftX"] == 0.0
    assert (job.directory / "log.txt").read_text().count("done frames/") == 3
    assert (
        "preprocess" in (job.directory / "note.txt").read_text()
        or (job.directory / "note.txt").is_file()
    )


def test_rerun_skips_finished_movies(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    job, first = _run(project)
    output = project / "MotionCorr/job002/frames/TS_01_000_0_0.mrc"
    stamp = output.stat().st_mtime_ns
    _, second = _run(project, job=RelionJob.at(job.directory))
    assert (first.n_processed, second.n_processed, second.n_skipped) == (3, 0, 3)
    assert output.stat().st_mtime_ns == stamp
    assert second.status is JobStatus.SUCCESS
    assert (job.directory / "tilt_series" / "TS_01.star").is_file()


def test_only_and_dry_run(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(names=("TS_01", "TS_02"))
    messages: list[str] = []
    bus = EventBus()
    bus.subscribe(Message, lambda m: messages.append(m.text))
    tilt_series, _ = read_tilt_series_set(project / "ImportTomo/job001/tilt_series.star")
    planned = RelionJob(project / "MotionCorr" / "job002", project)
    summary = run_motioncorr(tilt_series, planned, OPTIONS, bus=bus, only=["TS_02"], dry_run=True)
    assert summary.n_movies == 3
    assert any("would process 3 movies" in m for m in messages)
    assert not (project / "MotionCorr").exists()
    job, summary = _run(project, only=["TS_02"])
    overview = starfile.read(job.directory / "corrected_tilt_series.star")
    assert overview["rlnTomoName"].tolist() == ["TS_02"]


def test_bad_movies_fail_alone(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".tif", ".tif", ".mrc"))
    frames = project / "frames"
    corrupt = sorted(frames.glob("*_001_*.tif"))[0]
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    missing = sorted(frames.glob("*_003_*.mrc"))[0]
    missing.unlink()
    errors: list[str] = []
    bus = EventBus()
    bus.subscribe(Message, lambda m: errors.append(m.text) if m.level == "error" else None)
    job, summary = _run(project, bus=bus)
    assert summary.status is JobStatus.FAILURE
    assert (job.directory / "RELION_JOB_EXIT_FAILURE").is_file()
    assert summary.n_processed == 2 and summary.n_failed == 2
    text = "\n".join(errors)
    assert corrupt.name in text and missing.name in text and "not found" in text
    table = starfile.read(job.directory / "tilt_series" / "TS_01.star")
    assert len(table) == 2  # the two good tilts are written
    log = (job.directory / "log.txt").read_text()
    assert "FAILED" in log and "rerun to retry" in log


def test_gain_of_the_wrong_size_fails_that_movie(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".mrc"))
    big = project / "frames" / "TS_01_002_3.0.mrc"
    with mrcfile.new(big) as mrc:
        mrc.set_data(np.ones((8, 320, 320), np.uint16))
    tilt_series, _ = read_tilt_series_set(project / "ImportTomo/job001/tilt_series.star")
    table = tilt_series.series[0].tilts
    row = table.iloc[0].copy()
    row["rlnMicrographMovieName"] = "frames/TS_01_002_3.0.mrc"
    row["rlnMicrographPreExposure"] = 6.0
    tilt_series.series[0].tilts = pd.concat([table, row.to_frame().T], ignore_index=True)
    gain = tmp_path / "gain.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(np.ones((256, 256), np.float32))
    options = MotionCorrOptions(gain_path=gain)
    job = RelionJob.create(project, "MotionCorr")
    summary = run_motioncorr(tilt_series, job, options)
    assert summary.n_processed == 2 and summary.n_failed == 1
    assert "256×256 px but the frames" in (summary.failures[0].error or "")
    assert (job.directory / "gain.mrc").is_file()


def test_abort_request_stops_the_job(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    tilt_series, _ = read_tilt_series_set(project / "ImportTomo/job001/tilt_series.star")
    job = RelionJob.create(project, "MotionCorr")
    bus = EventBus()

    def abort(event: Progress) -> None:
        if event.done == 1:
            (job.directory / "RELION_JOB_ABORT_NOW").touch()

    bus.subscribe(Progress, abort)
    summary = run_motioncorr(tilt_series, job, OPTIONS, bus=bus, executor=SerialExecutor())
    assert summary.status is JobStatus.ABORTED
    assert (job.directory / "RELION_JOB_EXIT_ABORTED").is_file()
    assert not (job.directory / "RELION_JOB_ABORT_NOW").exists()


def test_dask_cluster_gives_the_serial_output(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".tif", ".eer", ".mrc"))
    serial_job, serial = _run(project, options=MotionCorrOptions(eer_fractionation=EER_GROUP))
    with DaskExecutor(n_workers=2, processes=False) as executor:
        dask_job, dask = _run(
            project, options=MotionCorrOptions(eer_fractionation=EER_GROUP), executor=executor
        )
    assert serial.status is dask.status is JobStatus.SUCCESS
    for path in sorted((serial_job.directory / "frames").iterdir()):
        twin = dask_job.directory / "frames" / path.name
        assert filecmp.cmp(path, twin, shallow=False), path.name
    a = (serial_job.directory / "tilt_series" / "TS_01.star").read_text()
    b = (dask_job.directory / "tilt_series" / "TS_01.star").read_text()
    assert a.replace("job002", "jobNNN") == b.replace("job003", "jobNNN")


def test_the_gain_saved_while_the_movies_run_is_the_gain_saved_first(  # type: ignore[no-untyped-def]
    make_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tomopilot.processing.motioncorr import job as job_module

    project = make_project(suffixes=(".mrc", ".tif"))
    gain = tmp_path / "gain.mrc"
    with mrcfile.new(gain) as mrc:
        mrc.set_data(np.random.default_rng(2).uniform(0.8, 1.2, (256, 256)).astype(np.float32))
    options = MotionCorrOptions(gain_path=gain, gain_rotation=1, gain_flip=2)
    first = RelionJob.create(project, "MotionCorr")
    prepared = job_module.prepare_gain(options, first, False)  # written before returning
    assert prepared.token is None and prepared.path is not None and prepared.path.is_file()
    in_process, summary = _run(project, options, executor=SerialExecutor())  # written aside
    assert summary.status is JobStatus.SUCCESS
    assert filecmp.cmp(prepared.path, in_process.directory / "gain.mrc", shallow=False)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(job_module, "write_image_mrc", full_disk)
    job = RelionJob.create(project, "MotionCorr")
    with pytest.raises(OSError, match="No space left"):
        _run(project, options, job=job, executor=SerialExecutor())
    assert (job.directory / "RELION_JOB_EXIT_FAILURE").is_file()
    assert "No space left" in (job.directory / "log.txt").read_text()
