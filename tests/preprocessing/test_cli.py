"""``tomopilot preprocess``: the commands a data processor types."""

from __future__ import annotations

from pathlib import Path

import starfile
from click.testing import Result
from typer.testing import CliRunner

from tomopilot.cli.main import app

runner = CliRunner()


def _motioncorr(project: Path, *options: str) -> Result:
    """``tomopilot preprocess motioncorr`` of the project's imported tilt series, serially."""
    star = str(project / "ImportTomo/job001/tilt_series.star")
    args = ["preprocess", "motioncorr", star, "--project", str(project), "--scheduler", "serial"]
    return runner.invoke(app, [*args, *options])


def test_motioncorr_then_ctf_from_the_command_line(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".tif"))
    star = str(project / "ImportTomo/job001/tilt_series.star")
    common = ["--project", str(project), "--scheduler", "serial"]
    dry = runner.invoke(app, ["preprocess", "motioncorr", star, *common, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would process 2 movies" in dry.output
    assert not (project / "MotionCorr").exists()
    result = runner.invoke(app, ["preprocess", "motioncorr", star, *common, "--even-odd"])
    assert result.exit_code == 0, result.output
    assert "2 corrected" in result.output
    job = project / "MotionCorr" / "job002"
    assert (job / "RELION_JOB_EXIT_SUCCESS").is_file()
    # The same command again reuses the job folder and skips what is done.
    again = runner.invoke(app, ["preprocess", "motioncorr", star, *common, "--even-odd"])
    assert again.exit_code == 0 and "2 already done" in again.output
    assert not (project / "MotionCorr" / "job003").exists()
    ctf = runner.invoke(
        app,
        [
            "preprocess",
            "ctf",
            str(job / "corrected_tilt_series.star"),
            *common,
            "--use",
            "images",
            "--tile",
            "128",
            "--only",
            "TS_01",
        ],
    )
    assert ctf.exit_code in (0, 1), ctf.output  # the synthetic texture has no Thon rings
    assert (project / "CtfFind" / "job003" / "log.txt").is_file()


def test_bad_options_are_named(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc",))
    result = _motioncorr(project, "--no-power-spectra")
    assert result.exit_code == 1
    assert "float16" in result.output


def test_pipeline_control_runs_in_the_given_job_folder(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc",))
    folder = project / "External" / "job007"
    result = _motioncorr(project, "--pipeline_control", str(folder))
    assert result.exit_code == 0, result.output
    assert (folder / "RELION_JOB_EXIT_SUCCESS").is_file()
    table = starfile.read(folder / "tilt_series" / "TS_01.star")
    assert table["rlnMicrographName"].iloc[0].startswith("External/job007/frames/")


def test_missing_frames_exit_non_zero_and_name_the_file(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project(suffixes=(".mrc", ".mrc"))
    gone = sorted((project / "frames").glob("*.mrc"))[1]
    gone.unlink()
    result = _motioncorr(project)
    assert result.exit_code == 1
    assert gone.name in result.output
    assert (Path(project) / "MotionCorr/job002/RELION_JOB_EXIT_FAILURE").is_file()
