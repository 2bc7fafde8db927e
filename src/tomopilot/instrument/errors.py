"""The instrument layer's error family: one typed error per failure kind."""

from __future__ import annotations

from tomopilot.core.errors import TomopilotError


class InstrumentError(TomopilotError):
    """Base of every failure reported by a microscope backend."""


class ImageShiftLimitError(InstrumentError):
    """A requested image shift lies beyond the hard limit of the optics.

    Attributes
    ----------
    requested_um, limit_um
        The requested specimen shift magnitude per axis and the limit, both in µm.
    """

    def __init__(self, requested_um: tuple[float, float], limit_um: float) -> None:
        self.requested_um = requested_um
        self.limit_um = limit_um
        x, y = requested_um
        super().__init__(
            f"image shift ({x:.3f}, {y:.3f}) µm exceeds the limit of ±{limit_um:g} µm per axis"
        )


class StageLimitError(InstrumentError):
    """A stage move or tilt beyond the stage's travel."""

    def __init__(self, axis: str, requested: float, low: float, high: float, unit: str) -> None:
        self.axis = axis
        self.requested = requested
        self.low = low
        self.high = high
        super().__init__(
            f"stage {axis} = {requested:g} {unit} is outside its travel [{low:g}, {high:g}] {unit}"
        )


class StageError(InstrumentError):
    """The stage failed to complete a move (a goniometer error, not a limit)."""


class CameraTimeoutError(InstrumentError):
    """The camera did not deliver an image in time."""


class NoBeamError(InstrumentError):
    """No electrons arrive: the beam is blanked, the valves are closed or the gun is off."""


class CalibrationError(InstrumentError):
    """A calibration the operation needs is missing or unusable."""


class OperatorStop(InstrumentError):
    """The operator stopped the microscope software (SerialEM's STOP button or ``Exit``).

    The run ends as a resumable abort: nothing more is sent to the microscope, the files hold
    every committed exposure, and ``tomopilot acquire --resume`` continues from the journal.
    """
