"""The fused strategy against the twin's ground truth."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from acq_helpers import write_config

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.strategies.base import TargetInfo
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.instrument.types import Image, LowDoseArea, StagePosition

RUNAWAY_RATE_UM_PER_STEP = 1.5


def _tracking_nm(folder: Path, strategy: str) -> dict[int, dict[float, float]]:
    """Per target, the true distance (nm) from the target to the beam centre at each tilt."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(
        folder,
        strategy=strategy,
        seed=5,
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 2.0, "SSY": 1.0}],
        settings={"startTilt": 30, "minTilt": 27, "maxTilt": 54, "groupSize": 2},
        twin={
            "presets": {
                "record": {"camera_area_px": [4096, 4096], "binning": 8},
                "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
            },
            "stage": {
                "runaway_probability": 1.0,
                "runaway_rate_um_per_step": [RUNAWAY_RATE_UM_PER_STEP] * 2,
                "jump_probability": 0.0,
            },
        },
    )
    engine, _ = start_run(load_acquire_config(config))
    assert engine.run().status == "finished"
    quality = assess_run_dir(engine.plan.run_dir)
    return {t.target: dict(zip(t.tilts_deg, t.tracking_nm, strict=True)) for t in quality.targets}


def test_fused_follows_a_run_away_branch_that_pace_loses(tmp_path: Path) -> None:
    # 1.5 µm per 3° step past 40°: the targets leave the 0.8 µm Record field within two steps
    # unless the common motion is extrapolated along the branch.
    pace = _tracking_nm(tmp_path / "pace", "pace")
    fused = _tracking_nm(tmp_path / "fused", "fused")
    pace_high = [nm for per_tilt in pace.values() for tilt, nm in per_tilt.items() if tilt > 45]
    assert max(pace_high) > 1000.0
    assert max(fused[1].values()) < 700.0  # the first target imaged absorbs the surprise
    assert max(fused[2].values()) < 150.0  # the others are corrected by it at the same tilt
    rms_2 = float(np.sqrt(np.mean(np.square(list(fused[2].values())))))
    assert rms_2 < 80.0
    assert len(fused[1]) == len(fused[2]) == len(pace[2])  # no branch given up


def _trend_after(last_increment_um: tuple[float, float], tilt_deg: float) -> list[float]:
    """fused's common-motion guess at ``tilt_deg`` after quiet steps and one large increment."""
    strategy = FusedStrategy(AcquisitionSettings())
    quiet = [[3.0 * k, 0.01 * (-1) ** k, -0.01 * (-1) ** k, 0.0] for k in range(1, 8)]
    strategy.history["+"] = [*quiet, [tilt_deg - 3.0, *last_increment_um, 0.0]]
    step = TiltStep(
        tilt_deg=tilt_deg, branch="+", index=40, group=8, approach_deg=None, branch_step=15
    )
    return strategy._trend(step)


def test_a_large_step_across_the_axis_persists_beyond_the_onset_one_along_it_does_not() -> None:
    # A run-away moves the specimen across the tilt axis (y) and keeps going; a holder jump
    # (any direction) happens once. Along the axis (x) a large step is taken for a jump.
    x_guess, y_guess, _ = _trend_after((0.0, 0.4), tilt_deg=45.0)
    assert y_guess == pytest.approx(0.4) and abs(x_guess) < 0.02
    x_guess, y_guess, _ = _trend_after((0.4, 0.0), tilt_deg=45.0)
    assert abs(x_guess) < 0.02 and abs(y_guess) < 0.02
    # Below the onset neither persists: a single large increment is a jump.
    x_guess, y_guess, _ = _trend_after((0.0, 0.4), tilt_deg=24.0)
    assert abs(y_guess) < 0.02


def _defocus_rms_um(folder: Path, monkeypatch: pytest.MonkeyPatch, *, rings: bool) -> float:
    """fused on a lamella whose 12° pretilt the run does not know; 4 Å Records show rings."""
    if not rings:  # the same run with every Thon-ring fit refused
        monkeypatch.setattr(
            "tomopilot.acquisition.strategies.fused_depth.record_defocus_um", lambda *a, **k: None
        )
    folder.mkdir()
    config = write_config(
        folder,
        strategy="fused",
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.5, "SSY": 2.5}, {"SSX": -1.5, "SSY": -2.5}],
        settings={
            "pretilt": 0.0,
            "minTilt": -9,
            "maxTilt": 9,
            "maxDefocus": -3.5,
            "minDefocus": -3.5,
        },
        twin={
            "specimen": {"kind": "lamella", "pretilt_deg": 12.0},
            "stage": {"jump_probability": 0.0, "runaway_probability": 0.0},
            "presets": {"record": {"camera_area_px": [1024, 1024], "binning": 2}},
        },
    )
    engine, _ = start_run(load_acquire_config(config))
    engine.run()
    quality = assess_run_dir(engine.plan.run_dir)
    errors = np.concatenate([t.defocus_error_um[1:] for t in quality.targets[1:]])
    return float(np.sqrt(np.mean(errors**2)))


def test_fused_focuses_from_the_records_own_thon_rings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed-loop focus at no extra dose: with rings the far targets' focus is right from the
    second tilt on; without, only the slow lateral route corrects it."""
    with_rings = _defocus_rms_um(tmp_path / "rings", monkeypatch, rings=True)
    without = _defocus_rms_um(tmp_path / "none", monkeypatch, rings=False)
    assert without > 0.3
    assert with_rings < 0.5 * without


class _FakeOptics:
    def __init__(self) -> None:
        self.shift = (0.0, 0.0)

    def set_image_shift_um(self, x: float, y: float) -> None:
        self.shift = (x, y)

    def preset(self, area: LowDoseArea) -> SimpleNamespace:
        return SimpleNamespace(exposure_s=1.0)


class _FakeToolkit:
    """Alignment answers chosen by the test: a Record peak, and what a View would say."""

    def __init__(
        self, record_peak: tuple[tuple[float, float], float], view_um: tuple[float, float]
    ):
        self.record_peak = record_peak
        self.view_um = view_um
        self.views = 0
        self.scope = SimpleNamespace(optics=_FakeOptics())

    def _image(self, area: LowDoseArea) -> Image:
        data = (
            np.random.default_rng(self.views).normal(100.0, 10.0, (2048, 2048)).astype(np.float32)
        )
        stage = StagePosition(0.0, 0.0, 0.0, 0.0)
        return Image(
            data,
            area,
            16.0,
            1,
            53000,
            1.0,
            3.0,
            -4.0,
            stage,
            (0.0, 0.0),
            0.0,
            datetime(2026, 1, 1),
            self.views,
        )

    def view(self) -> Image:
        return self._image(LowDoseArea.VIEW)

    def record(
        self, exposure_s: float | None = None, area: LowDoseArea = LowDoseArea.RECORD
    ) -> Image:
        self.views += area == LowDoseArea.VIEW
        return self._image(area)

    def shift_um(self, reference: Image, image: Image, **_: object) -> tuple[np.ndarray, float]:
        return np.array(self.record_peak[0]), self.record_peak[1]

    def shift_stretched_um(self, reference: Image, view: Image, stretch: float):  # type: ignore[no-untyped-def]
        return np.array(self.view_um), 20.0

    def camera_matrix(self, image: Image) -> np.ndarray:
        return np.eye(2) / 0.0016  # 16 Å pixels


def _first_target_offset(peak: tuple[tuple[float, float], float], view_um=(0.02, -0.01)):  # type: ignore[no-untyped-def]
    """fused's offset of target 1 at its first tilt of the + branch, and the Views it took."""
    # The tracking spot is off: this is the View check of target 1's own Record.
    settings = AcquisitionSettings.model_validate({"pretilt": 0.0, "trackSpot": False})
    strategy = FusedStrategy(settings)
    toolkit = _FakeToolkit(peak, view_um)
    targets = [TargetInfo(1, (0.0, 0.0), -4.0), TargetInfo(2, (1.0, 1.0), -4.0)]
    start = toolkit.record()
    strategy.setup(
        targets,
        0.0,
        -4.0,
        {1: (0.0, 0.0), 2: (1.0, 1.0)},
        toolkit,
        {"map:1": start, "map:2": start},
    )  # type: ignore[arg-type]
    for index in (1, 2):  # the start round: both found where expected, peaks of 15
        toolkit.record_peak = ((0.0, 0.0), 15.0)
        step = TiltStep(0.0, "start", 0, 0, None, 0)
        strategy.observe(index, step, toolkit.record(), strategy.prepare(index, step))
    toolkit.record_peak = peak
    views_before = toolkit.views
    step = TiltStep(3.0, "+", 1, 1, None, 1)
    outcome = strategy.observe(1, step, toolkit.record(), strategy.prepare(1, step))
    return np.array(outcome.alignment_um), toolkit.views - views_before


def test_a_weak_far_first_peak_is_checked_by_a_view_before_the_others_follow_it() -> None:
    # a weak peak 0.5 µm off: the View (target 20 nm off) wins, and the others follow the View
    offset, views = _first_target_offset(((0.0, 0.5), 8.7))
    assert views == 1
    assert np.hypot(*(offset - (0.02, -0.01))) < 1e-6
    # a strong peak that far, or a weak one near the centre, is believed without a View
    offset, views = _first_target_offset(((0.0, 0.5), 30.0))
    assert views == 0 and np.allclose(offset, (0.0, 0.5))
    offset, views = _first_target_offset(((0.0, 0.1), 8.7))
    assert views == 0 and np.allclose(offset, (0.0, 0.1))
