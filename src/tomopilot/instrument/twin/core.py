"""Shared state of one twin: configuration, clock, random streams, mechanics and ground truth.

The parts of the twin microscope (stage, optics, camera, measurements, housekeeping) each hold
a reference to one :class:`TwinCore`, so they see the same clock, stage and specimen.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel

from tomopilot.core.clock import SimulatedClock
from tomopilot.core.events import EventBus
from tomopilot.core.files import AppendOnlyJournal
from tomopilot.instrument.twin.config import TwinConfig
from tomopilot.instrument.twin.detector import Detector
from tomopilot.instrument.twin.faults import FaultInjector
from tomopilot.instrument.twin.ground_truth import GroundTruth
from tomopilot.instrument.twin.image_shift_settling import ShiftTransient
from tomopilot.instrument.twin.specimen import build_specimen
from tomopilot.instrument.twin.stage_model import StageModel

# Random streams: a stable number per purpose, so adding a draw in one purpose never changes
# what another purpose sees.
STREAM_STAGE = 1
STREAM_SPECIMEN = 2
STREAM_NOISE = 3
STREAM_TEXTURE = 4
STREAM_MOTION = 5
STREAM_MEASURE = 6
STREAM_HOUSEKEEPING = 7


class TwinCore:
    """State shared by the parts of one twin microscope."""

    def __init__(self, config: TwinConfig, clock: SimulatedClock, events: EventBus) -> None:
        self.command_log: AppendOnlyJournal | None = None
        self.replaying = False
        self._depth = 0
        self.config = config
        self.clock = clock
        self.events = events
        self.truth = GroundTruth()
        self.stage = StageModel(config.stage, self.rng(STREAM_STAGE, 0))
        self.specimen = build_specimen(
            config.specimen, int(self.rng(STREAM_SPECIMEN, 0).integers(2**31))
        )
        self.detector = Detector(config.camera, config.seed)
        self.faults = FaultInjector(config.faults)
        self.n_exposures = 0
        hk = self.rng(STREAM_HOUSEKEEPING, 0)
        hconf = config.housekeeping
        first = hconf.dewar_first_fill_s
        self.next_fill_s = (
            first
            if first is not None
            else float(hk.uniform(0.3, 1.0) * hconf.dewar_refill_interval_s)
        )
        self.fill_end_s = -math.inf
        self.last_flash_s = -float(hk.uniform(0.0, 0.5) * hconf.feg_flash_interval_s)
        self.last_zlp_refine_s = 0.0
        self.zlp_offset_start_ev = float(hk.normal(0.0, 0.3))
        # Time levers a controlling program can switch on (see ``timing.py``): the camera
        # returning before its read-out ends, and image-shift settling overlapping the camera's
        # start-up. When each of those ends on the clock:
        self.early_return = False
        self.settle_during_startup = False
        self.camera_free_s = -math.inf  # frames written: the next shot that saves frames
        self.settled_s = -math.inf
        # The image shifts still settling (image_shift_settling.py): what a beam that comes on
        # before SerialEM's criterion is met still sees.
        self.is_transients: list[ShiftTransient] = []

    def rng(self, stream: int, index: int) -> np.random.Generator:
        """A generator for one purpose and index, independent of call order."""
        return np.random.default_rng(np.random.SeedSequence([self.config.seed, stream, index]))

    def spend(self, activity: str, seconds: float) -> None:
        """Advance the simulated clock, booking the time, and run what falls due meanwhile."""
        if seconds <= 0:
            return
        SimulatedClock.advance(self.clock, seconds)  # internal: not a command of its own
        self.truth.spend(activity, seconds)
        self._update_dewar()

    def wait_until(self, activity: str, time_s: float) -> None:
        """Spend the time until ``time_s`` (nothing if it has passed)."""
        self.spend(activity, time_s - self.clock.now_s())

    def _update_dewar(self) -> None:
        now = self.clock.now_s()
        hconf = self.config.housekeeping
        while now >= self.next_fill_s:
            start = self.next_fill_s
            self.fill_end_s = start + hconf.dewar_refill_duration_s
            self.next_fill_s = start + hconf.dewar_refill_interval_s
            self.stage.start_drift_burst(start, factor=5.0)
            self.truth.note(start, "dewar_fill_started", until_s=self.fill_end_s)

    def start_fill(self, time_s: float) -> None:
        """Begin a dewar fill now (a scheduled or forced one)."""
        hconf = self.config.housekeeping
        self.fill_end_s = time_s + hconf.dewar_refill_duration_s
        self.next_fill_s = time_s + hconf.dewar_refill_interval_s
        self.stage.start_drift_burst(time_s, factor=5.0)
        self.truth.note(time_s, "dewar_fill_started", until_s=self.fill_end_s)

    def filling(self) -> bool:
        """Whether a dewar fill is under way."""
        self._update_dewar()
        return self.clock.now_s() < self.fill_end_s

    def zlp_offset_ev(self) -> float:
        """How far the zero-loss peak has drifted from the slit centre."""
        hours = (self.clock.now_s() - self.last_zlp_refine_s) / 3600.0
        return self.zlp_offset_start_ev + self.config.optics.zlp_drift_ev_per_h * hours

    def feg_factor(self) -> float:
        """Beam current relative to just after a flash (the cold FEG's emission decays)."""
        hconf = self.config.housekeeping
        hours = max(0.0, self.clock.now_s() - self.last_flash_s) / 3600.0
        return float((1.0 - hconf.feg_decay_per_h) ** hours)

    def zlp_factor(self) -> float:
        """Fraction of the zero-loss peak that passes the energy-filter slit."""
        optics = self.config.optics
        if optics.slit_width_ev <= 0:
            return 1.0
        sigma = optics.zlp_fwhm_ev / 2.3548
        half = optics.slit_width_ev / 2
        offset = self.zlp_offset_ev()
        inside = 0.5 * (
            math.erf((half - offset) / (sigma * math.sqrt(2)))
            - math.erf((-half - offset) / (sigma * math.sqrt(2)))
        )
        return float(inside)

    # -- the command log: the twin's memory across a crash of the software driving it ---------
    def open_command_log(self, path: Path) -> list[dict[str, Any]]:
        """Log every state-changing command to ``path``; returns the commands already there."""
        self.command_log = AppendOnlyJournal(path)
        return list(self.command_log.records())

    def enter(self, part: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Record a top-level command before it runs (nested calls are not recorded)."""
        if self._depth == 0 and self.command_log is not None and not self.replaying:
            self.command_log.append(
                {
                    "part": part,
                    "method": method,
                    "args": [_plain(a) for a in args],
                    "kwargs": {k: _plain(v) for k, v in kwargs.items()},
                }
            )
        self._depth += 1

    def leave(self) -> None:
        """End of a command."""
        self._depth -= 1


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


class _HasCore(Protocol):
    @property
    def _core(self) -> TwinCore: ...

    @property
    def _part(self) -> str: ...


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=_HasCore)


def logged(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Decorate a state-changing method of a twin part so the command log records it."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._core.enter(self._part, method.__name__, args, kwargs)
        try:
            return method(self, *args, **kwargs)
        finally:
            self._core.leave()

    return wrapper


class TwinClock(SimulatedClock):
    """The twin's simulated clock: waits requested from outside are commands and get logged."""

    _part = "clock"

    def __init__(self, core: TwinCore | None = None, start_s: float = 0.0) -> None:
        super().__init__(start_s)
        self._core_ref = core

    @property
    def _core(self) -> TwinCore:
        if self._core_ref is None:
            raise RuntimeError("the twin clock is not attached to a twin")
        return self._core_ref

    def attach(self, core: TwinCore) -> None:
        """Bind the clock to its twin (done once by the twin)."""
        self._core_ref = core

    def sleep(self, duration_s: float) -> None:
        self.advance(duration_s)

    @logged
    def advance(self, duration_s: float) -> None:
        core = self._core
        SimulatedClock.advance(self, duration_s)
        core.truth.spend("wait", duration_s)
