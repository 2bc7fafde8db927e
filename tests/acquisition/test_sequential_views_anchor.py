"""sequential's tracking chain: a reference's offset carried to the next tilt, against the
twin's truth. The target's offset from a field centre is a distance in the specimen's plane:
across the tilt axis it follows the cosine of the plane's tilt (pretilt included), which
Leginon's chain of references (offsets added as they were) does not do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from acq_helpers import write_config
from test_fused_align import STILL_STAGE

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.sequential_tracking import carried_offset_um
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.types import LowDoseArea


def test_an_offset_across_the_axis_is_carried_with_the_lamellas_cosine(tmp_path: Path) -> None:
    # A 10°-pretilted lamella on an exact stage. At 0° a field is taken at the target and
    # one 80 nm (image shift) across the axis beside it: the truth gives the second field's
    # centre point and its true offset from the target. Then at ±45° and ±60° a field on the
    # target (the stage exact, it has not moved): the truth says where that point is now
    # from the target; the carried offset must say the same (geometry only: not rendered).
    config = load_acquire_config(
        write_config(
            tmp_path,
            twin={"stage": STILL_STAGE, "camera": {"render": False}},
            settings={"pretilt": 10},
        )
    )
    scope = TwinMicroscope(config.microscope.twin)
    toolkit = Toolkit(scope, config.settings)
    truth = scope.ground_truth
    scope.camera.acquire(LowDoseArea.RECORD)
    target = truth.exposures[-1].specimen_centre_um
    scope.optics.set_image_shift_um(0.02, 0.08)
    scope.camera.acquire(LowDoseArea.RECORD)
    beside = truth.exposures[-1].specimen_centre_um
    offset_0 = -np.asarray(truth.exposures[-1].offset_nm(target)) / 1e3  # µm, target to beside
    scope.optics.set_image_shift_um(0.0, 0.0)
    misses: dict[str, list[float]] = {"carried": [], "as_it_was": []}
    for tilt in (60.0, -60.0, 45.0, -45.0):
        scope.stage.tilt_to(tilt)
        scope.camera.acquire(LowDoseArea.RECORD)
        now = truth.exposures[-1]
        true_um = (np.asarray(now.offset_nm(beside)) - now.offset_nm(target)) / 1e3
        carried = carried_offset_um(toolkit, (offset_0[0], offset_0[1]), 0.0, tilt)
        misses["carried"].append(1e3 * float(np.hypot(*(np.asarray(carried) - true_um))))
        misses["as_it_was"].append(1e3 * float(np.hypot(*(offset_0 - true_um))))
    # (seen: carried exact; as it was 13-53 nm, the offset's 80 nm times 1 - cos(θ + p))
    assert max(misses["carried"]) < 2.0, misses
    assert min(misses["as_it_was"]) > 10.0, misses
