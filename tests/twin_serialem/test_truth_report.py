"""The ground-truth report measures what really happened: a known deliberate miss shows up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tomopilot.core.config import load_config, write_resolved_config
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin_serialem import finish, make_module
from tomopilot.instrument.twin_serialem.truth_report import (
    COMMAND_LOG_FILE,
    TWIN_CONFIG_FILE,
    assess_script_run,
)

CONFIG = Path(__file__).resolve().parents[2] / "src/tomopilot/examples/semrun_twin.yaml"


def test_a_deliberate_offset_from_the_picked_point_is_reported(tmp_path: Path) -> None:
    config = load_config(CONFIG, TwinConfig)
    # a perfect image-shift calibration, so the deliberate shift is exactly what happens
    config = config.model_copy(
        update={
            "optics": config.optics.model_copy(
                update={"is_scale_error": 0.0, "is_rotation_error_deg": 0.0}
            )
        }
    )
    write_resolved_config(config, tmp_path / TWIN_CONFIG_FILE)
    scope = TwinMicroscope(config, command_log=tmp_path / COMMAND_LOG_FILE)
    sem = make_module(scope, directory=tmp_path, record_dir=tmp_path)
    sem.Eucentricity(3)
    sem.OpenNewFile("map.mrc")
    sem.V()
    sem.NewMap()
    sem.CloseFile()
    point = int(sem.AddImagePosAsNavPoint("A", 150, 110))
    sem.RealignToOtherItem(point, 1)
    sem.SetTargetDefocus(-2.0)
    sem.G()
    sem.OpenNewFile("series.mrc")
    sem.R()
    sem.S()
    sem.ImageShiftByMicrons(0.12, -0.09)  # aim 150 nm away on purpose
    sem.R()
    sem.S()
    sem.CloseFile()
    finish(sem)

    result = assess_script_run(tmp_path)
    series = {s.file: s for s in result.series}["series.mrc"]
    assert series.intended.startswith("Navigator item")
    first, second = series.images
    assert first.error_nm < 40.0  # Realign to Item put the beam on the picked feature
    moved = (second.offset_nm[0] - first.offset_nm[0], second.offset_nm[1] - first.offset_nm[1])
    # the point moves the opposite way in the field: -150 nm, within the stage's drift
    assert moved == pytest.approx((-120.0, 90.0), abs=8.0)
    assert math.hypot(*second.offset_nm) == pytest.approx(150.0, abs=40.0)
    assert first.true_defocus_um == pytest.approx(-2.0, abs=0.15)  # autofocus to target
    assert first.defocus_error_um == pytest.approx(first.true_defocus_um + 2.0)
    assert result.n_exposures >= 4 and result.dose_by_area["Record"] == pytest.approx(
        2 * 3.0, rel=0.05
    )
