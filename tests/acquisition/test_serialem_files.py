"""The files of a run are what SerialEM writes: mdoc keys from the microscope's state, its voltage
everywhere, integer counts in the stacks, an angle file per series."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
from acq_helpers import write_config

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin.optics import INTENSITY_PER_UM, mag_index
from tomopilot.io.mdoc_writer import parse_mdoc

REAL_MDOC = "mdoc/krios-d3645_sem4.1.0beta_pacetomo_L1_ts_001.mrc.mdoc"
# SerialEM writes these for the same Record when it is taken by its tilt-series controller
# (PriorRecordDose) or at a Navigator item (NavigatorLabel); a PACEtomo script's Records lack them.
EXTRA_KEYS = {"PriorRecordDose", "NavigatorLabel"}


def _run_200kv(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[float]]:
    """Three tilts of one target on a 200 kV twin, frames saved, CTFFind asked for."""
    config = write_config(
        folder,
        targets=[{"SSX": 0.0, "SSY": 0.0}],
        settings={"minTilt": -3, "maxTilt": 3, "doCtfFind": True, "doCtfPlotter": False},
        twin={
            "optics": {"voltage_kv": 200.0},
            "presets": {"record": {"camera_area_px": [1024, 1024], "binning": 2}},
        },
    )
    data = config.read_text().replace("output:", "save_frames: true\noutput:")
    config.write_text(data)
    voltages: list[float] = []
    fit = importlib.import_module("tomopilot.acquisition.record_ctf").estimate_defocus

    def spy(*args: Any, **kwargs: Any) -> Any:
        voltages.append(args[2].voltage_kv)
        return fit(*args, **kwargs)

    monkeypatch.setattr("tomopilot.acquisition.record_ctf.estimate_defocus", spy)
    engine, _ = start_run(load_acquire_config(config))
    assert engine.run().status == "finished"
    return folder / "run", voltages


def test_a_200kv_run_writes_serialem_keys_and_200kv_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_data: Path
) -> None:
    run_dir, voltages = _run_200kv(tmp_path, monkeypatch)
    ours = parse_mdoc(run_dir / "L1_ts_001.mrc.mdoc")
    real = parse_mdoc(real_data / REAL_MDOC)

    # The same key set as SerialEM 4.1's for the same kind of exposure, in every section.
    real_keys = set(real.sections[0].items)
    assert len(ours.sections) == 3
    for section in ours.sections:
        assert set(section.items) - EXTRA_KEYS == real_keys
    header = [line.split(" = ")[0] for line in ours.header_text.splitlines() if " = " in line]
    real_header = [line.split(" = ")[0] for line in real.header_text.splitlines() if " = " in line]
    assert [k for k in header if not k.startswith("[")] == [
        k for k in real_header if not k.startswith("[")
    ]

    # Values from the microscope's state.
    items = ours.sections[0].items
    assert "Voltage = 200" in ours.header_text
    assert items["SpotSize"] == "7" and items["CameraIndex"] == "0"
    assert items["MagIndex"] == str(mag_index(53000))
    assert float(items["Intensity"]) == pytest.approx(INTENSITY_PER_UM * 1.5)
    assert items["FilterSlitAndLoss"] == "20 0"
    assert items["OperatingMode"] == "1" and items["UsingCDS"] == "0"
    mean = float(items["MinMaxMean"].split()[2])
    rate = float(items["DoseRate"])  # electrons per unbinned pixel and second at the camera
    assert rate * 2**2 * float(items["ExposureTime"]) == pytest.approx(mean, rel=1e-4)

    # Every CTF fit of a Record used 200 kV, and found the true defocus (a 300 kV fit of a
    # 200 kV image is off by about a quarter of it).
    assert voltages and set(voltages) == {200.0}
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    config = load_acquire_config(tmp_path / "run.yaml")
    twin = TwinMicroscope(config.microscope.twin, command_log=run_dir / "twin_commands.jsonl")
    truth = [
        twin.ground_truth.exposure(int(c["exposure_id"])).defocus_um for c in journal.committed
    ]
    fitted = [float(s.items["CtfFind"]) for s in ours.sections]
    order = np.argsort([float(c["tilt_deg"]) for c in journal.committed])
    np.testing.assert_allclose(fitted, np.asarray(truth)[order], atol=0.3)

    # Stacks hold integer counts as SerialEM stores them; the angle file follows the stack.
    with mrcfile.open(run_dir / "L1_ts_001.mrc") as mrc:
        assert mrc.header.mode in (1, 6)
        assert mrc.data.dtype.kind in "iu"
    rawtlt = np.loadtxt(run_dir / "L1_ts_001.rawtlt")
    np.testing.assert_allclose(rawtlt, [float(s.items["TiltAngle"]) for s in ours.sections])
