"""Events that microscope backends emit on their bus."""

from __future__ import annotations

from dataclasses import dataclass

from tomopilot.core.events import Event


@dataclass(frozen=True, kw_only=True)
class StageMoved(Event):
    """The stage finished a move or tilt (readout values)."""

    x_um: float
    y_um: float
    z_um: float
    tilt_deg: float
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class ExposureTaken(Event):
    """The camera delivered an image."""

    exposure_id: int
    area: str
    dose_e_a2: float
    duration_s: float
    mean_counts: float


@dataclass(frozen=True, kw_only=True)
class HousekeepingDone(Event):
    """A housekeeping duty ran (``task`` is 'dewar_refill', 'feg_flash', 'zlp_refine', ...)."""

    task: str
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class FaultTriggered(Event):
    """An injected fault fired (twin only)."""

    fault: str
    detail: str = ""
