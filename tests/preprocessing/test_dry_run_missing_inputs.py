"""A dry run whose inputs are missing says so and exits non-zero (motion correction and CTF)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from tomopilot.cli.main import app
from tomopilot.io.star import write_star

runner = CliRunner()


def test_motioncorr_dry_run_with_missing_movies_fails(make_project) -> None:  # type: ignore[no-untyped-def]
    project: Path = make_project(suffixes=(".mrc", ".mrc"), size=64, n_frames=2)
    shutil.rmtree(project / "frames")
    star = str(project / "ImportTomo/job001/tilt_series.star")
    result = runner.invoke(
        app,
        ["preprocess", "motioncorr", star, "--project", str(project), "--dry-run"],
    )
    assert result.exit_code == 1, result.output
    assert "missing movie" in result.output
    assert "2 movie(s) missing" in result.output
    assert not (project / "MotionCorr").exists()


def test_ctf_dry_run_with_missing_images_fails(make_project) -> None:  # type: ignore[no-untyped-def]
    project: Path = make_project(suffixes=(".mrc", ".mrc"), size=64, n_frames=2)
    job = project / "MotionCorr" / "job002"
    rows = [
        {
            "rlnMicrographMovieName": f"frames/TS_01_{i:03d}.mrc",
            "rlnMicrographName": f"MotionCorr/job002/frames/TS_01_{i:03d}.mrc",
            "rlnTomoNominalStageTiltAngle": 3.0 * i,
            "rlnMicrographPreExposure": 3.0 * i,
            "rlnTomoNominalDefocus": -4.0,
        }
        for i in range(3)
    ]
    write_star(job / "tilt_series" / "TS_01.star", {"TS_01": pd.DataFrame(rows)})
    write_star(
        job / "corrected_tilt_series.star",
        {
            "global": pd.DataFrame(
                [
                    {
                        "rlnTomoName": "TS_01",
                        "rlnTomoTiltSeriesStarFile": "MotionCorr/job002/tilt_series/TS_01.star",
                        "rlnVoltage": 300.0,
                        "rlnSphericalAberration": 2.7,
                        "rlnAmplitudeContrast": 0.1,
                        "rlnMicrographOriginalPixelSize": 1.0,
                        "rlnTomoHand": -1.0,
                        "rlnMicrographPixelSize": 1.0,
                    }
                ]
            )
        },
    )
    result = runner.invoke(
        app,
        [
            "preprocess",
            "ctf",
            str(job / "corrected_tilt_series.star"),
            "--project",
            str(project),
            "--dry-run",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "missing image" in result.output
    assert "would fit 0 tilts; 3 input image(s) missing" in result.output
