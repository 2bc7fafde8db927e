"""The digital twin assembled: a :class:`~tomopilot.instrument.Microscope` that knows the truth."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from tomopilot.core.events import EventBus
from tomopilot.instrument.errors import InstrumentError
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.twin.camera import TwinCamera
from tomopilot.instrument.twin.config import FaultSpec, TwinConfig
from tomopilot.instrument.twin.core import TwinClock, TwinCore, logged
from tomopilot.instrument.twin.ground_truth import GroundTruth
from tomopilot.instrument.twin.housekeeping import TwinHousekeeping
from tomopilot.instrument.twin.measurements import TwinMeasurements
from tomopilot.instrument.twin.optics import TwinOptics
from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.specimen import GridSpecimen, HoleyFilm, Lamella
from tomopilot.instrument.twin.stage import TwinStage


class TwinMicroscope:
    """A seeded, deterministic microscope on a simulated clock.

    Parameters
    ----------
    config
        The twin's configuration (defaults: Krios-like, autoloader, lamella).
    events
        The bus the twin reports on; a new one by default.
    command_log
        A JSON-lines file where every command is recorded before it runs. If it already holds
        commands (a previous process drove this twin and died), they are replayed first, so the
        twin continues exactly where the physical microscope would be.

    Attributes
    ----------
    ground_truth
        What really happened at every exposure. Reports and tests read it; acquisition
        algorithms must not.
    specimen
        The specimen model (lamella or holey film), for reports and tests.
    """

    def __init__(
        self,
        config: TwinConfig | None = None,
        *,
        events: EventBus | None = None,
        command_log: Path | str | None = None,
    ) -> None:
        self.config = config or TwinConfig()
        self.name = self.config.name
        self.clock = TwinClock()
        self.events = events or EventBus()
        self._core = TwinCore(self.config, self.clock, self.events)
        self.clock.attach(self._core)
        self.stage = TwinStage(self._core)
        self.optics = TwinOptics(self._core)
        self.camera = TwinCamera(self._core, self.stage, self.optics)
        self.measurements = TwinMeasurements(self._core, self.stage, self.optics, self.camera)
        self.housekeeping = TwinHousekeeping(self._core)
        self.replayed_commands = 0
        if command_log is not None:
            self._replay(self._core.open_command_log(Path(command_log)))
        self.clock.pace(self.config.microscope_s_per_wall_s)  # after a replay, never during

    _part = "scope"

    def _replay(self, commands: list[dict[str, Any]]) -> None:
        """Re-run logged commands, without rendering, to rebuild the state after a crash.

        The twin is deterministic, so the same commands leave the stage, clock, faults and
        ground truth exactly as they were; images are not rendered again. A command that failed
        the first time (an injected fault) fails again and is passed over.
        """
        parts: dict[str, Any] = {
            "stage": self.stage,
            "optics": self.optics,
            "camera": self.camera,
            "measurements": self.measurements,
            "housekeeping": self.housekeeping,
            "clock": self.clock,
            "scope": self,
        }
        self._core.replaying = True
        try:
            for number, command in enumerate(commands, start=1):
                try:
                    target = parts[command["part"]]
                    method = getattr(target, command["method"])
                except (KeyError, AttributeError) as exc:
                    raise InstrumentError(
                        f"{self._core.command_log.path if self._core.command_log else ''}:"
                        f"{number}: unknown twin command {command!r}"
                    ) from exc
                with contextlib.suppress(InstrumentError):
                    method(*command.get("args", []), **command.get("kwargs", {}))
                self.replayed_commands += 1
        finally:
            self._core.replaying = False

    @property
    def ground_truth(self) -> GroundTruth:
        """The ground-truth log."""
        return self._core.truth

    @property
    def specimen(self) -> Lamella | HoleyFilm | GridSpecimen:
        """The specimen model."""
        return self._core.specimen

    @logged
    def inject_fault(self, spec: FaultSpec | dict[str, Any]) -> None:
        """Schedule a fault while running (see :class:`FaultSpec`)."""
        if not isinstance(spec, FaultSpec):
            spec = FaultSpec.model_validate(spec)
        self._core.faults.inject(spec)

    def true_eucentric_z_um(self) -> float:
        """Stage z at which the specimen's reference plane sits on the tilt axis (truth)."""
        return self._core.stage.eucentric_z_um

    def true_tilt_axis_offset_um(self, tilt_deg: float = 1.0) -> float:
        """Lateral offset of the mechanical tilt axis for the branch of ``tilt_deg`` (truth)."""
        return self._core.stage.axis_offset_um(tilt_deg)

    def true_rotation_axis_offset_um(self, tilt_deg: float = 1.0) -> float:
        """Where the specimen really rotates now, as a tilt-axis offset (µm, specimen y; truth).

        The mechanical axis of the branch plus the goniometer's lab-frame displacement
        (step errors, jumps, drift, reversal play) in y: the whole rotating assembly moved, the
        axis with it. This is the axis a defocus-versus-tilt measurement sees; run-out that
        grows with the tilt shifts it further over a small range (not included here).
        """
        displacement = self._core.stage.displacement_um(self.clock.now_s())
        return self._core.stage.axis_offset_um(tilt_deg) + float(displacement[1])

    def true_pose(self) -> StagePose:
        """Where the specimen really is now (truth)."""
        return self._core.stage.pose(self.clock.now_s())

    def true_runout_um(self, tilt_deg: float) -> tuple[float, float, float]:
        """The goniometer's run-out (x, y, z) at a tilt, run-away branches included (truth)."""
        x, y, z = self._core.stage.runout_um(tilt_deg)
        return float(x), float(y), float(z)

    def true_runaway_branches(self) -> dict[str, float]:
        """Tilt branches (``"+"``, ``"-"``) whose run-out runs away past its onset, with the
        rate in µm per 3° step (truth)."""
        return self._core.stage.runaway_branches()

    def true_stage_jumps(self) -> list[tuple[float, float]]:
        """The goniometer's sudden jumps so far, random and injected, as (time_s, magnitude_um)
        in the order they happened (truth)."""
        return list(self._core.stage.jumps)

    def describe(self) -> dict[str, object]:
        """A summary of the twin: microscope, stage profile and specimen."""
        cfg = self.config
        return {
            "name": cfg.name,
            "seed": cfg.seed,
            "optics": {
                "voltage_kv": cfg.optics.voltage_kv,
                "cs_mm": cfg.optics.cs_mm,
                "amplitude_contrast": cfg.optics.amplitude_contrast,
                "image_shift_limit_um": cfg.optics.image_shift_limit_um,
                "energy_filter_slit_ev": cfg.optics.slit_width_ev,
            },
            "stage": cfg.stage.model_dump(mode="json"),
            "camera": {"name": cfg.camera.name, "size_px": list(cfg.camera.size_px)},
            "presets": {
                area: {
                    "magnification": p.magnification,
                    "pixel_size_a": p.pixel_size_a,
                    "exposure_s": p.exposure_s,
                    "dose_e_a2": round(p.dose_e_a2, 4),
                    "defocus_offset_um": p.defocus_offset_um,
                }
                for area, p in cfg.presets.model_dump().items()
                for p in [getattr(cfg.presets, area)]
            },
            "specimen": self.specimen.describe(),
        }


def as_microscope(scope: TwinMicroscope) -> Microscope:
    """The twin typed as the protocol (mypy checks here that the twin implements it)."""
    return scope
