"""Tilting the stage to a step of the scheme, and the image shift the engine may set before it.

The stage approaches each tilt from below (``approach_deg``) so backlash is taken up the same
way every time; PACEtomo's ``delayTilt`` follows unless SerialEM's own settling is trusted
(``builtin_settling``). With ``settle_in_startup`` the tilt's first image shift is set before
the stage tilts when the strategy knows it (``first_shift_um``), so it settles during the tilt.
"""

from __future__ import annotations

import contextlib
import math

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import Strategy
from tomopilot.instrument.errors import ImageShiftLimitError
from tomopilot.instrument.protocol import Microscope


def shift_before_tilt(
    scope: Microscope, strategy: Strategy, step: TiltStep, levers: tuple[str, ...]
) -> None:
    """With ``settle_in_startup``, the tilt's first image shift before the stage tilts, when
    the strategy knows it (``first_shift_um``): SerialEM's IS time-out then runs during the
    tilt, not after it. The shift moves the beam, not the stage, so the tilt is unchanged."""
    first_shift = getattr(strategy, "first_shift_um", None)
    if first_shift is None or "settle_in_startup" not in levers:
        return
    shift = first_shift(step)
    if shift is None:
        return
    # Beyond the limit: the strategy meets it itself when it takes the shot.
    with contextlib.suppress(ImageShiftLimitError):
        scope.optics.set_image_shift_um(*shift)


def tilt_to_step(
    scope: Microscope,
    step: TiltStep,
    settings: AcquisitionSettings,
    levers: tuple[str, ...],
    *,
    recovering: bool,
) -> None:
    """Tilt to ``step`` (from below when the scheme or a recovery asks), then PACEtomo's
    ``delayTilt`` unless ``builtin_settling`` is in use."""
    s = settings
    at_start = math.isclose(scope.stage.position().tilt_deg, step.tilt_deg, abs_tol=1e-3)
    if step.branch == "start" and not recovering and at_start:
        return  # the set-up approached the start tilt already
    if step.approach_deg is not None or recovering:
        approach = (
            step.approach_deg if step.approach_deg is not None else step.tilt_deg - s.step_deg
        )
        limit = scope.stage.limits.tilt_deg
        scope.stage.tilt_to(max(-limit, min(limit, approach)))
    scope.stage.tilt_to(step.tilt_deg)
    if s.delay_tilt_s > 0 and "builtin_settling" not in levers:
        scope.clock.sleep(s.delay_tilt_s)


__all__ = ["shift_before_tilt", "tilt_to_step"]
