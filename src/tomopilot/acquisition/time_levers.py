"""Time savers the engine can command, and which strategy uses which.

Each lever is something SerialEM offers on a real microscope, so a saving it makes on the twin
is one a facility can have (the twin models each one, ``instrument/twin/timing.py``):

- ``early_return``: for a Record that saves its frames, the camera hands back the full sum as
  soon as it is ready and finishes the frame stack and its writing in the background
  (SerialEM's ``EarlyReturnNextShot -1`` before the shot, which the SerialEM backend sends);
  the stage tilts, image shifts and single shots that follow overlap it, and only the next
  shot that saves frames waits for the camera. SerialEM returns early only from a shot that
  saves or aligns dose-fractionation frames (K2/K3), so a run that saves no frames, and every
  Preview, View or tracking shot, gets nothing from it.
- ``settle_in_startup``: image-shift settling is a time-out that the next exposure waits out
  while the camera starts up (SerialEM's image-shift time-out, ``SetISTimeOut``, with the
  camera start-up counted, ``StartupForISDelays``), instead of a sleep before the exposure is
  even asked for. The engine then also sets a tilt's first image shift before the stage tilts
  when the strategy knows it (``first_shift_um``: fused's tracking spot), so it settles during
  the tilt.
- ``builtin_settling``: no script delays on top of the microscope's own settling (PACEtomo's
  ``delayTilt`` after each tilt and ``delayIS`` after each image shift). SerialEM already waits
  its calibrated settling after every tilt (``TiltDelay`` properties, 0.2 s + 0.8 s minimum) and
  image shift (the IS delay table); the twin models both (the stage's tilt settle, the IS table)
  and the slow stage drift after a move (τ 45–90 s), which a 0.3 s delay does not change.
  Engine-side only: the microscope needs no command. (SerialEM waits out a script's image shift
  only when ``SetImageShift`` carries the settling multiplier ``#D``; tomopilot's SerialEM backend
  sends it with every shift, so its time-out always runs during the camera's start-up.)

``pace`` and ``none`` imitate PACEtomo on SerialEM. PACEtomo's image shifts
(``SetImageShift``/``ImageShiftByMicrons`` without the settling multiplier) set no SerialEM
time-out: the deflectors settle while its dewar check, ``delayIS`` and the camera's start-up run,
and the beam comes on about 0.8 s after the shift. That is ``settle_in_startup``, so the two use
it: without it the twin would first sleep the table's settling and only then PACEtomo's
``delayIS`` (about 0.45 s per Record that PACEtomo does not spend). They use neither of the other
levers. ``fused`` uses all three unless the ``timeLevers`` setting names a subset.
"""

from __future__ import annotations

from typing import get_args

from tomopilot.acquisition.plan.settings import AcquisitionSettings, TimeLever
from tomopilot.instrument.protocol import Microscope

ALL_LEVERS: tuple[str, ...] = get_args(TimeLever)
_PACETOMO = ("settle_in_startup",)  # how PACEtomo's shifts settle on SerialEM (see above)
_BY_STRATEGY: dict[str, tuple[str, ...]] = {
    "fused": ALL_LEVERS,
    "pace": _PACETOMO,
    "none": _PACETOMO,
}


def levers_for(strategy: str, settings: AcquisitionSettings) -> tuple[str, ...]:
    """The levers a run of ``strategy`` with ``settings`` uses."""
    if settings.time_levers is not None:
        return tuple(settings.time_levers)
    return _BY_STRATEGY.get(strategy, ())


def switch_levers(scope: Microscope, levers: tuple[str, ...]) -> tuple[str, ...]:
    """Command the microscope's side of each lever; returns the levers in use (the engine's
    own, and those the microscope offers)."""
    used = [lever for lever in levers if lever == "builtin_settling"]  # the engine's own
    commands = {
        "early_return": ("camera", "set_early_return"),
        "settle_in_startup": ("optics", "set_settling_during_startup"),
    }
    for lever, (part, method) in commands.items():
        command = getattr(getattr(scope, part), method, None)
        if command is None:
            continue  # a microscope without the lever runs as before
        command(lever in levers)
        if lever in levers:
            used.append(lever)
    return tuple(used)


__all__ = ["ALL_LEVERS", "levers_for", "switch_levers"]
