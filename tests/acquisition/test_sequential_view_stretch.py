"""sequential's View-to-View tracking at high tilt on a pretilted lamella, against the twin's
truth: each View is untilted into the specimen's plane (1/cos(θ + p), p the pretilt about the
axis) before the two are correlated, instead of Leginon's 1/cos θ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from acq_helpers import shots_along_tilts, write_config
from test_fused_align import STILL_STAGE

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.fused_align import pretilt_about_axis_deg
from tomopilot.acquisition.strategies.sequential_steps import (
    MIN_VIEW_TRACKING_SIGNIFICANCE,
    tracking_displacement_um,
)
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.types import LowDoseArea


def test_view_tracking_follows_the_lamella_not_leginons_untilt(tmp_path: Path) -> None:
    # A 10°-pretilted lamella, Views (2.9 µm) chained in 3° steps from +48° to +60° and from
    # -48° to -60°, two places, the stage exact: the truth says where the target went. Each
    # View is correlated with the one before, the target's place in it known from the truth.
    config = load_acquire_config(
        write_config(tmp_path, twin={"stage": STILL_STAGE}, settings={"pretilt": 10})
    )
    scope = TwinMicroscope(config.microscope.twin)
    toolkit = Toolkit(scope, config.settings)
    lamella = pretilt_about_axis_deg(config.settings)  # 10°
    errors: dict[str, list[float]] = {"untilt": [], "stretched": []}
    for sign in (1.0, -1.0):
        tilts = [sign * t for t in (48.0, 51.0, 54.0, 57.0, 60.0)]
        for place in [(0.0, 0.0), (-2.0, 2.0)]:
            views, offsets = shots_along_tilts(scope, LowDoseArea.VIEW, place, tilts)
            for k in range(1, len(tilts)):
                for mode, pretilt in (("untilt", 0.0), ("stretched", lamella)):
                    found = tracking_displacement_um(
                        toolkit,
                        views[k - 1],
                        views[k],
                        tilts[k - 1],
                        tilts[k],
                        MIN_VIEW_TRACKING_SIGNIFICANCE,
                        pretilt_deg=pretilt,
                    )
                    assert found is not None
                    error_um = offsets[k - 1] + np.asarray(found) - offsets[k]
                    errors[mode].append(1e3 * float(np.hypot(*error_um)))
    untilt = float(np.sqrt(np.mean(np.square(errors["untilt"]))))
    stretched = float(np.sqrt(np.mean(np.square(errors["stretched"]))))
    assert stretched < 6.0
    assert untilt > 2.0 * stretched
