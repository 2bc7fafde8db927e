"""The set-up's autofocus, with its scale checked against known lens changes.

A beam-tilt autofocus reads the defocus from the image shift a beam tilt causes, through a
calibration (SerialEM's focus calibration) that is right to a few percent: a reading of −4 µm
may stand for −4.08 µm, and an autofocus to −4 µm then leaves every target 80 nm off before
its first tilt. The lens focus itself changes exactly by what is asked. So, after the usual
autofocus, the Focus area is read at the focus ± :data:`SCALE_STEP_UM`: the readings' change
over the known change is the autofocus's scale, their mean over the scale the defocus there,
and the focus is set so that the Focus area sits at the wanted defocus. SerialEM calibrates
its autofocus the same way, with known focus changes, once per magnification.
"""

from __future__ import annotations

import logging

from tomopilot.instrument.protocol import Microscope

_log = logging.getLogger(__name__)

# The lens change either side of the focus for the scale reading: large enough that the
# readings' noise (~40 nm each) leaves the scale within ~0.5 % (20 nm at −4 µm), small enough
# that the Focus area stays within the autofocus's range (−8 µm for a −4 µm target).
SCALE_STEP_UM = 4.0
# Readings averaged at each of the two lens settings: with one, the scale's noise (0.7 %)
# costs as much at −4 µm (30 nm) as the reading's own noise.
SCALE_READINGS = 2
# A scale outside this is no calibration error but a failed reading: kept at 1.
SCALE_LIMITS = (0.8, 1.25)


def autofocus_with_scale(scope: Microscope, target_defocus_um: float) -> float:
    """Autofocus the Focus area to ``target_defocus_um`` and correct the autofocus's scale
    error (see module docstring); returns the scale found (1 when the readings failed)."""
    scope.measurements.autofocus(target_defocus_um)
    focus = scope.optics.focus_um()
    readings = []
    for change in (SCALE_STEP_UM, -SCALE_STEP_UM):
        scope.optics.set_focus_um(focus + change)
        pair = [scope.measurements.measure_defocus_um() for _ in range(SCALE_READINGS)]
        readings.append(sum(pair) / len(pair))
    scale = (readings[0] - readings[1]) / (2 * SCALE_STEP_UM)
    if not SCALE_LIMITS[0] <= scale <= SCALE_LIMITS[1]:
        _log.warning("autofocus scale read as %.3f: not believed, the autofocus kept", scale)
        scope.optics.set_focus_um(focus)
        return 1.0
    defocus = (readings[0] + readings[1]) / 2 / scale  # at ``focus``
    scope.optics.set_focus_um(focus + (target_defocus_um - defocus))
    _log.info(
        "autofocus scale %.4f: focus corrected by %.3f µm", scale, target_defocus_um - defocus
    )
    return scale
