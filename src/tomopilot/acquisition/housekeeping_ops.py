"""Timed microscope operations around the exposures: dewar refills, gun flashes, the slit.

``checkDewar`` waits out a refill in progress and starts one early when it would begin during
the next exposure; after each round of targets the cold FEG is flashed when the microscope
advises it (``coldFEG``) and the energy filter's zero-loss peak is refined every
``slitInterval`` minutes.
"""

from __future__ import annotations

import logging

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.instrument.protocol import Microscope

_log = logging.getLogger(__name__)

DEWAR_MARGIN_S = 15.0  # start a fill early if it is due within this (SerialEM can)


def protect_from_dewar(scope: Microscope, margin_s: float = DEWAR_MARGIN_S) -> None:
    """Before an exposure: wait out a refill, or start one that would fall into it (due
    within ``margin_s``)."""
    status = scope.housekeeping.dewar_status()
    if status.filling:
        waited = scope.housekeeping.wait_for_dewar()
        _log.info("waited %.0f s for a dewar fill", waited)
    elif status.seconds_until_next_fill < margin_s:
        # A fill would start during the exposure: start it now and wait it out.
        scope.housekeeping.refill_dewar()
        _log.info("started a dewar fill early to protect the exposure")


def after_round(scope: Microscope, settings: AcquisitionSettings, last_zlp_s: float) -> float:
    """Flash the gun and refine the slit when due; returns when the slit was last refined."""
    s = settings
    if s.cold_feg and scope.housekeeping.flash_advised():
        scope.housekeeping.flash_feg()
    if s.slit_interval_min > 0 and scope.clock.now_s() - last_zlp_s >= s.slit_interval_min * 60:
        scope.housekeeping.refine_zlp()
        return scope.clock.now_s()
    return last_zlp_s
