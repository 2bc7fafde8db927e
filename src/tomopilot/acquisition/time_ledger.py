"""Where the microscope's time goes, measured by the engine on the microscope's own clock.

Every command the engine (and the strategies and set-up steps it drives) sends to the
microscope passes through :class:`LedgeredMicroscope`, which reads the microscope's clock before
and after the command and books the elapsed time under an activity. A camera exposure is split
into the exposure itself (the preset's exposure time, known before the shot) and the camera's
overhead around it (preparation, readout, frame saving, waiting for a busy camera). Time between
commands (the engine thinking, on a real microscope) is booked as ``other`` when the ledger is
closed. On the twin the same run also has the twin's own ground-truth ledger; a test checks
that the two agree.

The journal keeps the ledger, closed at that moment, with the set-up and with every commit. A run
resumed after a crash continues from the last one kept and books the time from it to the resume
as ``interrupted``: the work lost in the crash (the exposure in flight, say) and, on a real
microscope, the time the run stood still until it was resumed. An operator's stop (an aborted
run) keeps its ledger in its ``finished`` record; the pause after it is not the run's time.

*Efficiency* is the physics over the time used: the Records' exposure time plus stage tilting,
over all the time the run kept the microscope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import LowDoseArea

#: Activities in the order reports show them.
ACTIVITIES = (
    "exposure",
    "stage_tilt",
    "tracking_exposure",
    "camera_overhead",
    "image_shift",
    "wait",
    "focus",
    "stage_move",
    "eucentricity",
    "housekeeping",
    "optics",
    "other",
    "interrupted",
)

#: The physics of a tilt series: its Records' exposure and the tilting between them.
PHYSICS = ("exposure", "stage_tilt")

_PARTS = ("stage", "optics", "camera", "measurements", "housekeeping", "clock")

_METHOD_ACTIVITY: dict[tuple[str, str], str] = {
    ("stage", "tilt_to"): "stage_tilt",
    ("stage", "move_to"): "stage_move",
    ("stage", "move_by"): "stage_move",
    ("optics", "set_image_shift_um"): "image_shift",
    ("optics", "set_image_shift_units"): "image_shift",
    ("measurements", "measure_defocus_um"): "focus",
    ("measurements", "autofocus"): "focus",
    ("measurements", "eucentricity"): "eucentricity",
    ("clock", "sleep"): "wait",
    ("clock", "advance"): "wait",
}
_PART_ACTIVITY = {
    "stage": "stage_move",
    "optics": "optics",
    "camera": "camera_overhead",
    "measurements": "focus",
    "housekeeping": "housekeeping",
    "clock": "wait",
}
_UNTIMED = {"now_s", "datetime", "position", "limits", "preset", "focus_um", "image_shift_um"}


class TimeLedger:
    """Microscope time by activity (seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(ACTIVITIES, 0.0)
        self.depth = 0

    def add(self, earlier: Mapping[str, float]) -> None:
        """Add an earlier ledger (a resumed run's first sessions)."""
        for activity, value in earlier.items():
            self.book(activity, float(value))

    def book(self, activity: str, seconds: float) -> None:
        """Add ``seconds`` to ``activity``."""
        if seconds > 0:
            self.seconds[activity] = self.seconds.get(activity, 0.0) + seconds

    def close(self, total_s: float) -> None:
        """Book what the commands did not account for of ``total_s`` as ``other``."""
        self.book("other", total_s - self.total_s)

    def snapshot(self, total_s: float) -> dict[str, float]:
        """:meth:`as_dict` as if closed at ``total_s`` (the ledger itself is not changed): what
        the journal keeps with each commit, so a crashed session's time is not lost."""
        seconds = dict(self.seconds)
        seconds["other"] = seconds.get("other", 0.0) + max(0.0, total_s - self.total_s)
        return {k: round(v, 3) for k, v in seconds.items()}

    @property
    def total_s(self) -> float:
        """All time booked."""
        return sum(self.seconds.values())

    def as_dict(self) -> dict[str, float]:
        """Seconds by activity (rounded to the millisecond)."""
        return {k: round(v, 3) for k, v in self.seconds.items()}


def efficiency(seconds: Mapping[str, float]) -> float:
    """(Record exposure + stage tilting) over all the time booked; 0 for an empty ledger."""
    total = sum(seconds.values())
    return sum(seconds.get(a, 0.0) for a in PHYSICS) / total if total > 0 else 0.0


class _LedgeredPart:
    """One part of the microscope whose commands are timed."""

    def __init__(self, part: Any, name: str, scope: Any, ledger: TimeLedger) -> None:
        object.__setattr__(self, "_part", part)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_scope", scope)
        object.__setattr__(self, "_ledger", ledger)

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._part, attr)
        if attr.startswith("_") or attr in _UNTIMED or not callable(value):
            return value
        return self._timed(attr, value)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._part, attr, value)

    def _timed(self, method: str, call: Callable[..., Any]) -> Callable[..., Any]:
        ledger, clock = self._ledger, self._scope.clock
        name = self._name

        def timed(*args: Any, **kwargs: Any) -> Any:
            if ledger.depth:
                return call(*args, **kwargs)
            exposure_s = self._exposure_s(method, args, kwargs)
            start = clock.now_s()
            ledger.depth += 1
            try:
                return call(*args, **kwargs)
            finally:
                ledger.depth -= 1
                elapsed = clock.now_s() - start
                if exposure_s is not None:
                    area, seconds = exposure_s
                    kind = "exposure" if area == LowDoseArea.RECORD else "tracking_exposure"
                    seconds = min(seconds, elapsed)
                    ledger.book(kind, seconds)
                    ledger.book("camera_overhead", elapsed - seconds)
                else:
                    activity = _METHOD_ACTIVITY.get((name, method), _PART_ACTIVITY[name])
                    ledger.book(activity, elapsed)

        return timed

    def _exposure_s(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[LowDoseArea, float] | None:
        if self._name != "camera" or method not in ("acquire", "acquire_movie"):
            return None
        area = LowDoseArea(kwargs.get("area", args[0] if args else LowDoseArea.RECORD))
        return area, float(self._scope.optics.preset(area).exposure_s)


class LedgeredMicroscope:
    """A microscope whose every command books its time in a :class:`TimeLedger`.

    Anything that is not one of the parts (``stage``, ``optics``, ``camera``, ``measurements``,
    ``housekeeping``, ``clock``) is the wrapped microscope's own attribute, so a twin's ground
    truth stays reachable.
    """

    def __init__(self, scope: Microscope, ledger: TimeLedger) -> None:
        self._scope = scope
        self.ledger = ledger
        self._parts = {
            name: _LedgeredPart(getattr(scope, name), name, scope, ledger) for name in _PARTS
        }

    @property
    def wrapped(self) -> Microscope:
        """The microscope underneath."""
        return self._scope

    def __getattr__(self, attr: str) -> Any:
        parts = self.__dict__.get("_parts", {})
        if attr in parts:
            return parts[attr]
        return getattr(self._scope, attr)


def unwrap(scope: Any) -> Any:
    """The microscope behind a ledger's proxy (``scope`` itself when it is not one).

    The proxy forwards every attribute, but it is not the microscope's class: code that asks
    *which* microscope it drives (is it the twin, to read its ground truth?) asks the unwrapped one.
    """
    while isinstance(scope, LedgeredMicroscope):
        scope = scope.wrapped
    return scope


def ledgered(scope: Microscope, ledger: TimeLedger) -> Microscope:
    """``scope`` with its commands booked in ``ledger`` (typed as the microscope it wraps)."""
    proxy: Any = LedgeredMicroscope(unwrap(scope), ledger)
    return proxy  # type: ignore[no-any-return]


__all__ = ["ACTIVITIES", "LedgeredMicroscope", "TimeLedger", "efficiency", "ledgered", "unwrap"]
