"""The duration estimate credits early return where SerialEM gives it: Records saving frames."""

from __future__ import annotations

import pytest

from tomopilot.acquisition.plan.estimate import Timing, estimate_duration
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltScheme


def _exposures_s(levers: tuple[str, ...], frames: bool) -> float:
    settings = AcquisitionSettings()
    scheme = TiltScheme(min_deg=-12.0, max_deg=12.0, step_deg=3.0)
    return estimate_duration(
        settings, scheme, 3, Timing(), levers=levers, shots_per_tilt=1, shot_s=0.25, frames=frames
    ).exposures_s


def test_early_return_shortens_only_records_that_save_frames() -> None:
    timing = Timing()
    n_records = 9 * 3
    for frames in (False, True):
        without = _exposures_s(("settle_in_startup",), frames)
        saved = without - _exposures_s(("settle_in_startup", "early_return"), frames)
        if not frames:  # SerialEM returns early only from a shot that saves frames
            assert saved == pytest.approx(0.0, abs=1e-9)
        else:  # Records only (never the tracking shots): at most the read-out after the sum
            assert 0.0 < saved <= n_records * (timing.readout_s - timing.sum_return_s) + 1e-9
