"""Dose bookkeeping, and the microscope's housekeeping: dewars, the gun, the energy filter.

Long operations take their time on the microscope's (simulated) clock. Intervals are in hours:
an operation runs when more time than its interval has passed since it last ran, always with 0,
and with a negative interval only the time is noted.
"""

from __future__ import annotations

from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.session import Session

MAX_ACCUMULATORS = 250
# Seconds a long operation the twin does not model otherwise takes.
LONG_OPERATION_S = {"bu": 90.0, "lo": 60.0, "in": 120.0, "un": 180.0, "da": 30.0}
NO_INTERVAL = ("in", "un")


@command("AccumulateRecordDose", "F")
def accumulate_record_dose(session: Session, dose_e_a2: float) -> Reported:
    """Add dose to the current accumulator (written as PriorRecordDose of later Records)."""
    if dose_e_a2 < 0:
        raise ValueError(f"Dose {dose_e_a2} must not be negative")
    area = session.dose_area
    session.dose_accumulators[area] = session.dose_accumulators.get(area, 0.0) + dose_e_a2
    return None


@command("AreaForCumulRecordDose", "I")
def area_for_cumul_record_dose(session: Session, area: int) -> Reported:
    """Choose the accumulator (0 to 250) that Records' PriorRecordDose comes from."""
    if not 0 <= area <= MAX_ACCUMULATORS:
        raise ValueError(f"Accumulator {area} is out of range (0 to {MAX_ACCUMULATORS})")
    session.dose_area = area
    return None


@command("AreDewarsFilling")
def are_dewars_filling(session: Session) -> Reported:
    """1 while the autofill dewars are filling, else 0."""
    return (1 if session.scope.housekeeping.dewar_status().filling else 0,)


@command("DewarsRemainingTime")
def dewars_remaining_time(session: Session) -> Reported:
    """Seconds until the next scheduled fill."""
    return (session.scope.housekeeping.dewar_status().seconds_until_next_fill,)


@command("IsFEGFlashingAdvised", "|I")
def is_feg_flashing_advised(session: Session, high_temp: int = 0) -> Reported:
    """1 when the cold FEG asks to be flashed."""
    return (1 if session.scope.housekeeping.flash_advised() else 0,)


@command("NextFEGFlashHighTemp", "I")
def next_feg_flash_high_temp(session: Session, high: int) -> Reported:
    """Make the next flash a high-temperature one (1) or not (0)."""
    session.next_flash_high_temp = bool(high)
    return None


@command("RefineZLP", "|F")
def refine_zlp(session: Session, interval_min: float = 0.0) -> Reported:
    """Re-centre the slit on the zero-loss peak, unless it was done within ``interval_min``."""
    last = session.extensions.get("zlp_time_s")
    now = session.now_s()
    if interval_min > 0 and last is not None and now - last < interval_min * 60:
        return None
    session.scope.housekeeping.refine_zlp()
    session.extensions["zlp_time_s"] = session.now_s()
    session.report(f"Refined the zero-loss peak at {session.scope.clock.datetime():%H:%M}")
    return None


@command("ReportColumnOrGunValve")
def report_column_or_gun_valve(session: Session) -> Reported:
    """1 if the column valves are open."""
    return (1 if session.valves_open else 0,)


@command("SetColumnOrGunValve", "I")
def set_column_or_gun_valve(session: Session, open_: int) -> Reported:
    """Open (1) or close (0) the column valves; closed, the camera sees no beam."""
    session.valves_open = bool(open_)
    return None


def _due(session: Session, op: str, interval_h: float) -> bool:
    times = session.extensions.setdefault("long_op_time_s", {})
    now = session.now_s()
    if interval_h < 0:
        times[op] = now
        return False
    last = times.get(op)
    return not (interval_h > 0 and last is not None and now - last < interval_h * 3600)


@command("LongOperation", "S|V*")
def long_operation(session: Session, *words: object) -> Reported:
    """Run long operations: Re(fill), FF (flash FEG), Bu(ffer cycle), Lo(ader cycle), In(ventory),
    Un(load), Da(rk reference); each but In and Un followed by an interval in hours."""
    housekeeping = session.scope.housekeeping
    index = 0
    while index < len(words):
        word = words[index]
        if not isinstance(word, str) or len(word) < 2:
            raise ValueError(f"Long operation must be named by a word, not {word!r}")
        op = word[:2].casefold()
        if op not in (*LONG_OPERATION_S, "re", "ff"):
            raise ValueError(f"Unknown long operation {word!r}")
        interval = 0.0
        if op not in NO_INTERVAL:
            if index + 1 >= len(words) or isinstance(words[index + 1], str):
                raise ValueError(f"Long operation {word} needs an interval in hours")
            interval = float(words[index + 1])  # type: ignore[arg-type]
            index += 1
        index += 1
        if not _due(session, op, interval):
            continue
        if op == "re":
            housekeeping.refill_dewar()
        elif op == "ff":
            housekeeping.flash_feg()
            session.next_flash_high_temp = False
        else:
            session.scope.clock.sleep(LONG_OPERATION_S[op])
        session.extensions.setdefault("long_op_time_s", {})[op] = session.now_s()
        session.report(f"Long operation {word} done")
    return None
