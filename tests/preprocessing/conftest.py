"""Fixtures for the preprocessing tests: small RELION projects of synthetic movies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from preprocessing_support import EER_GROUP, PIXEL_A, synthetic_movie

from tomopilot.io.frames import write_frames
from tomopilot.io.star import write_star

MakeProject = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """Build a small RELION project: movies, ImportTomo/job001 STAR files; returns its folder."""

    def build(
        suffixes: tuple[str, ...] = (".mrc", ".tif", ".mrc"),
        *,
        size: int = 256,
        n_frames: int = 8,
        names: tuple[str, ...] = ("TS_01",),
    ) -> Path:
        project = tmp_path / "project"
        (project / "frames").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(1)
        global_rows = []
        for ts_index, name in enumerate(names):
            rows = []
            for index, suffix in enumerate(suffixes):
                tilt = 3.0 * ((index + 1) // 2) * (1 if index % 2 else -1) + 0.0
                shifts = np.cumsum(rng.normal(0.0, 0.8, (n_frames, 2)), axis=0)
                frames = synthetic_movie(shifts, size=size, seed=10 * ts_index + index)
                movie = f"frames/{name}_{index:03d}_{tilt:.1f}{suffix}"
                write_frames(
                    project / movie, frames, pixel_size_a=PIXEL_A, eer_hardware_frames=EER_GROUP
                )
                rows.append(
                    {
                        "rlnMicrographMovieName": movie,
                        "rlnTomoTiltMovieFrameCount": n_frames,
                        "rlnTomoNominalStageTiltAngle": tilt,
                        "rlnTomoNominalTiltAxisAngle": 85.0,
                        "rlnMicrographPreExposure": 3.0 * index,
                        "rlnTomoNominalDefocus": -4.0,
                    }
                )
            star = f"ImportTomo/job001/tilt_series/{name}.star"
            write_star(project / star, {name: pd.DataFrame(rows)})
            global_rows.append(
                {
                    "rlnTomoName": name,
                    "rlnTomoTiltSeriesStarFile": star,
                    "rlnVoltage": 300.0,
                    "rlnSphericalAberration": 2.7,
                    "rlnAmplitudeContrast": 0.1,
                    "rlnMicrographOriginalPixelSize": PIXEL_A,
                    "rlnTomoHand": -1.0,
                    "rlnOpticsGroupName": "optics1",
                }
            )
        write_star(
            project / "ImportTomo/job001/tilt_series.star", {"global": pd.DataFrame(global_rows)}
        )
        return project

    return build
