"""One target's exposure at a tilt, as commands: its image shift and focus, then the Record.

``apply_request`` sets what the strategy asked for, checks the dewar after the shift (PACEtomo's
``checkFilling`` order: the query runs while the shift settles) and waits PACEtomo's ``delayIS``
unless SerialEM's own settling is trusted (``builtin_settling``). ``record_with_retries`` takes
the Record (a movie when frames are saved), retrying a camera time-out or a missing beam
``CAMERA_RETRIES`` times before the exposure is given up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tomopilot.acquisition.housekeeping_ops import protect_from_dewar
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import ExposureRequest, Toolkit
from tomopilot.instrument.errors import CameraTimeoutError, NoBeamError
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, Movie

_log = logging.getLogger(__name__)

CAMERA_RETRIES = 2


def apply_request(
    scope: Microscope,
    request: ExposureRequest,
    settings: AcquisitionSettings,
    levers: tuple[str, ...],
) -> None:
    """Image shift and focus for the exposure, the dewar check, then ``delayIS``."""
    s = settings
    scope.optics.set_image_shift_um(*request.image_shift_um)
    scope.optics.set_focus_um(request.focus_um)
    if s.check_dewar:
        # After the shift, as PACEtomo checks (checkFilling between its image shift and
        # its delayIS): the query runs while the shift settles.
        protect_from_dewar(scope)
    if s.delay_is_s > 0 and "builtin_settling" not in levers:
        scope.clock.sleep(s.delay_is_s)


def record_with_retries(
    toolkit: Toolkit,
    request: ExposureRequest,
    *,
    save_frames: bool,
    what: str,
    lost: Callable[[str], None],
) -> tuple[Image, Movie | None] | None:
    """The Record (and its movie when ``save_frames``), or ``None`` after ``lost(reason)`` when
    the camera failed more than ``CAMERA_RETRIES`` times running. ``what`` names the exposure
    in the log."""
    failures = 0
    while True:
        try:
            if save_frames:
                movie = toolkit.record_movie(
                    request.exposure_s, magnification=request.magnification
                )
                return movie.image, movie
            image = toolkit.record(request.exposure_s, magnification=request.magnification)
            return image, None
        except (CameraTimeoutError, NoBeamError) as exc:
            failures += 1
            _log.warning("%s: %s (attempt %d)", what, exc, failures)
            if failures > CAMERA_RETRIES:
                lost(str(exc))
                return None


__all__ = ["CAMERA_RETRIES", "apply_request", "record_with_retries"]
