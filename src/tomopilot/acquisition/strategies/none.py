"""``none``: no prediction and no tracking, the baseline every strategy must beat.

Every target keeps the image shift and focus it had after the set-up at the start tilt. What
the stage and the geometry do to it afterwards is measured by the ground truth, not corrected.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome, TargetInfo, Toolkit
from tomopilot.acquisition.strategies.geometry_model import initial_depth_um
from tomopilot.instrument.types import Image


class NoPrediction:
    """Fixed image shift and focus per target."""

    name = "none"

    def __init__(self, settings: AcquisitionSettings) -> None:
        self.settings = settings
        self.targets: dict[int, TargetInfo] = {}
        self.image_shift: dict[int, tuple[float, float]] = {}
        self.focus: dict[int, float] = {}
        self.skipped: dict[int, set[str]] = {}

    def setup(
        self,
        targets: list[TargetInfo],
        start_tilt_deg: float,
        focus0_um: float,
        start_is_um: dict[int, tuple[float, float]],
        toolkit: Toolkit,
        references: dict[str, Image],
    ) -> None:
        s = self.settings
        for info in targets:
            x, y = info.ss_um
            z0 = initial_depth_um(x, y, s.pretilt_deg, s.rotation_deg)
            self.targets[info.index] = info
            self.image_shift[info.index] = start_is_um[info.index]
            self.focus[info.index] = focus0_um + (info.defocus_um - s.max_defocus_um) - z0
            self.skipped[info.index] = {"+", "-", "start"} if info.skip else set()

    def alive(self, target: int, branch: str) -> bool:
        return branch not in self.skipped[target]

    def prepare(self, target: int, step: TiltStep) -> ExposureRequest:
        return ExposureRequest(
            image_shift_um=self.image_shift[target],
            focus_um=self.focus[target],
            target_defocus_um=self.targets[target].defocus_um,
        )

    def observe(
        self, target: int, step: TiltStep, image: Image, request: ExposureRequest
    ) -> Outcome:
        s = self.settings
        if s.min_counts_per_s > 0 and image.mean_counts_per_s < s.min_counts_per_s:
            self.abort(target, step.branch, "too dark")
            return Outcome(aborted="too dark")
        return Outcome()

    def abort(self, target: int, branch: str, reason: str) -> None:
        self.skipped[target] |= {"+", "-"} if branch == "start" else {branch}

    def recover(self, step: TiltStep, shift_um: tuple[float, float]) -> None:
        return None

    def correct_heights(self, corrections_um: dict[int, float]) -> None:
        """No model, nothing to correct."""

    def state(self) -> dict[str, Any]:
        return {
            "targets": {str(k): asdict(v) for k, v in self.targets.items()},
            "image_shift": {str(k): list(v) for k, v in self.image_shift.items()},
            "focus": {str(k): v for k, v in self.focus.items()},
            "skipped": {str(k): sorted(v) for k, v in self.skipped.items()},
        }

    def restore(
        self, state: dict[str, Any], references: dict[str, Image], toolkit: Toolkit | None = None
    ) -> None:
        self.targets = {
            int(k): TargetInfo(
                index=int(v["index"]),
                ss_um=(float(v["ss_um"][0]), float(v["ss_um"][1])),
                defocus_um=float(v["defocus_um"]),
                skip=bool(v["skip"]),
            )
            for k, v in state["targets"].items()
        }
        self.image_shift = {
            int(k): (float(v[0]), float(v[1])) for k, v in state["image_shift"].items()
        }
        self.focus = {int(k): float(v) for k, v in state["focus"].items()}
        self.skipped = {int(k): set(v) for k, v in state["skipped"].items()}

    def reference_keys(self) -> set[str]:
        return set()
