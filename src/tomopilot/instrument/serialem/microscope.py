"""A :class:`~tomopilot.instrument.Microscope` that drives SerialEM.

On opening, the backend records what it may change and prepares the microscope:

- Low Dose is turned on (``SetLowDoseMode 1``) if it was off;
- the column valve is opened (``SetColumnOrGunValve 1``) if it was closed;
- the image shift (``ReportImageShift``), the Record focus (``ReportDefocus`` in Record), the
  tilt (``ReportTiltAngle``) are remembered; the autofocus target and tilt-axis offset are
  remembered before tomopilot first changes them.

:meth:`SerialEMMicroscope.close` puts all of it back, in reverse: camera parameter sets
(``RestoreCameraSet``), magnifications and Focus/Trial axis positions it changed, the autofocus
target, the tilt-axis offset, the image shift and the focus in Record, the tilt, then the
column valve and Low Dose mode as they were. The stage x/y/z is left where the run ended. After
the operator's STOP nothing is sent at all (SerialEM is the operator's again); ``close`` then only
notes what it did not restore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tomopilot.core.clock import Clock
from tomopilot.core.events import EventBus
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.serialem.camera import SerialEMCamera
from tomopilot.instrument.serialem.connect import Address, connect, import_serialem
from tomopilot.instrument.serialem.core import SerialEMCore, SerialEMOptions, reported_int
from tomopilot.instrument.serialem.duties import SerialEMHousekeeping, SerialEMMeasurements
from tomopilot.instrument.serialem.motion import SerialEMOptics, SerialEMStage
from tomopilot.instrument.serialem.session import SerialEMError, SerialEMSession

_log = logging.getLogger(__name__)


class SerialEMMicroscope:
    """SerialEM as a tomopilot microscope.

    Parameters
    ----------
    session
        A connected :class:`~tomopilot.instrument.serialem.session.SerialEMSession`.
    options
        Facility settings SerialEM cannot report (stage travel, backlash, beam size).
    events
        The bus it reports on.
    name
        A human-readable name.
    prepare
        Record the state to restore and prepare Low Dose and the valve (default). ``serialem
        check`` passes False to look without touching.
    """

    def __init__(
        self,
        session: SerialEMSession,
        *,
        options: SerialEMOptions | None = None,
        events: EventBus | None = None,
        name: str = "SerialEM",
        prepare: bool = True,
    ) -> None:
        self.name = name
        self.events = events or EventBus()
        self.session = session
        self._core = SerialEMCore(session, options or SerialEMOptions(), self.events)
        self.stage = SerialEMStage(self._core)
        self.optics = SerialEMOptics(self._core)
        self.camera = SerialEMCamera(self._core)
        self.measurements = SerialEMMeasurements(self._core)
        self.housekeeping = SerialEMHousekeeping(self._core)
        self.closed = False
        if prepare:
            self._prepare()

    @property
    def clock(self) -> Clock:
        """SerialEM's clock (``ReportClock``, ``Delay``)."""
        return self._core.clock

    @property
    def options(self) -> SerialEMOptions:
        """The facility settings in use."""
        return self._core.options

    def set_exposure_ids(self, provider: Callable[[], int] | None) -> None:
        """Name exposures by ``provider()`` (the twin-backed loop's ground-truth index)."""
        self.camera.exposure_ids = provider

    def _prepare(self) -> None:
        core, session = self._core, self.session
        originals = core.originals
        low_dose = session.values("ReportLowDose")
        if not low_dose or reported_int(low_dose[0]) == 0:
            session.call("SetLowDoseMode", 1)
            originals.low_dose_was_off = True
        if reported_int(session.number("ReportColumnOrGunValve")) == 0:
            session.call("SetColumnOrGunValve", 1)
            originals.valve_was_closed = True
        x, y = session.floats("ReportImageShift", n=2)
        originals.image_shift_units = (x, y)
        originals.focus_um = core.focus_um()
        originals.tilt_deg = core.stage_position().tilt_deg

    def close(self) -> list[str]:
        """Restore what tomopilot changed (see the module's docstring); returns what was done.

        Safe to call twice; after a STOP it sends nothing.
        """
        if self.closed:
            return []
        self.closed = True
        if self.session.stopped:
            _log.info("SerialEM was stopped by the operator: tomopilot restored nothing")
            return ["nothing restored: SerialEM was stopped by the operator"]
        core, session = self._core, self.session
        o = core.originals
        steps: list[tuple[str, str, tuple[Any, ...]]] = []
        if o.camera_sets_changed:
            steps.append(("camera parameter sets", "RestoreCameraSet", ()))
        for letter, mag in o.magnifications.items():
            steps.append((f"{letter} magnification", "_mag", (letter, mag)))
        for letter, position in o.axis_positions.items():
            steps.append((f"{letter} axis position", "SetAxisPosition", (letter, position)))
        if o.target_defocus_um is not None:
            steps.append(("autofocus target", "SetTargetDefocus", (o.target_defocus_um,)))
        if o.tilt_axis_offset_um is not None:
            steps.append(("tilt-axis offset", "SetTiltAxisOffset", (o.tilt_axis_offset_um,)))
        if o.image_shift_units is not None:
            steps.append(("image shift", "SetImageShift", o.image_shift_units))
        if o.focus_um is not None:
            steps.append(("focus", "_focus", (o.focus_um,)))
        if o.tilt_deg is not None:
            steps.append(("tilt", "TiltTo", (o.tilt_deg,)))
        if o.valve_was_closed:
            steps.append(("column valve (closed)", "SetColumnOrGunValve", (0,)))
        if o.low_dose_was_off:
            steps.append(("Low Dose mode (off)", "SetLowDoseMode", (0,)))
        done = []
        for what, command, args in steps:
            try:
                if command == "_mag":
                    core.go_to(str(args[0]))
                    session.call("SetMag", round(float(args[1])))
                elif command == "_focus":
                    core.go_to("R")
                    session.call("SetDefocus", float(args[0]))
                else:
                    session.call(command, *args)
                done.append(f"restored the {what}")
            except SerialEMError as exc:  # restore the rest; say what failed
                _log.error("could not restore the %s: %s", what, exc)
                done.append(f"could not restore the {what}: {exc}")
                if session.stopped:
                    break
        return done

    def __enter__(self) -> SerialEMMicroscope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_microscope(scope: SerialEMMicroscope) -> Microscope:
    """The backend typed as the protocol (mypy checks here that it implements it)."""
    return scope


def open_serialem(
    address: Address,
    *,
    module: Any | None = None,
    options: SerialEMOptions | None = None,
    events: EventBus | None = None,
    prepare: bool = True,
) -> SerialEMMicroscope:
    """Connect to SerialEM and return the microscope.

    ``module`` defaults to SerialEM's own ``serialem`` module, imported now (a clear
    :class:`~tomopilot.instrument.serialem.session.SerialEMUnavailableError` says how to get
    it if it is missing).
    """
    if module is None:
        module = import_serialem()
    session = connect(module, address)
    return SerialEMMicroscope(
        session, options=options, events=events, name=f"SerialEM at {address}", prepare=prepare
    )
