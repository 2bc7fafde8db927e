"""What a run is given (:class:`RunPlan`) and how it ended (:class:`RunSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tomopilot.acquisition.output.saved_images import ts_stem
from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltScheme
from tomopilot.acquisition.time_ledger import efficiency
from tomopilot.targeting.targets import Target


@dataclass
class RunPlan:
    """Everything a run needs that is not the microscope."""

    settings: AcquisitionSettings
    targets: list[Target]
    scheme: TiltScheme
    area_stage_um: tuple[float, float] | None
    strategy: str
    run_dir: Path
    root: str
    save_frames: bool = False
    frame_suffix: str = ".tif"
    geo_points_um: list[tuple[float, float]] = field(default_factory=list)
    sequential: SequentialSettings = field(default_factory=SequentialSettings)
    area: int | None = None
    """For one area of a session (``sequential``: one area per target), the number of the
    run's target it acquires, journalled in the area's ``run`` line; None for a whole run."""

    def ts_stem(self, target: int) -> str:
        """Tilt-series file stem of a target (1-based)."""
        return ts_stem(self.root, target)


def area_root(root: str, target: int) -> str:
    """The root of a session's area for the run's target ``target`` (``L1``, 7 → ``L1_t007``)."""
    return f"{root}_t{target:03d}"


def target_of_area_root(root: str, name: str) -> int | None:
    """The inverse of :func:`area_root` (None if ``name`` is not an area root of ``root``), for
    area journals written before the target number was journalled."""
    head, sep, digits = name.rpartition("_t")
    if not sep or head != root or not digits.isdigit():
        return None
    return int(digits)


@dataclass
class RunSummary:
    """How a run ended."""

    status: str
    n_exposures: int
    lost: int
    microscope_s: float
    sections: dict[int, int] = field(default_factory=dict)
    time_by_activity_s: dict[str, float] = field(default_factory=dict)
    """Microscope time by activity, from the engine's own clock (see ``time_ledger``)."""

    @property
    def efficiency(self) -> float:
        """(Record exposure + stage tilting) over the time used."""
        return efficiency(self.time_by_activity_s)
