"""Navigator's Acquire at Items with a script as the primary action, as SerialEM runs it.

For every item marked Acquire, in table order, the stage moves to the item, the item becomes the
current one (``ReportNavItem``, ``RealignToNavItem`` and ``MoveToNavItem`` act on it;
``ReportIfNavAcquiring`` reports 1 and its index, variable navAcqIndex counts the items done) and
the script runs once. ``EndAcquireAtItems`` ends the acquisition after the current item. A
command failing in the script stops the acquisition, unless ``NoMessageBoxOnError`` was set, in
which case the error is logged and the Navigator goes on with the next item (SerialEM's
behaviour).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.module import SerialEMModule
from tomopilot.instrument.twin_serialem.navigator_commands import nav_of


@dataclass
class AcquireResult:
    """Which items were acquired, which failed (with the error) and whether it was ended early."""

    acquired: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    ended_early: bool = False


def acquire_at_items(module: SerialEMModule, run_script: Callable[[], None]) -> AcquireResult:
    """Run ``run_script`` once at every item marked Acquire."""
    session = module.session
    nav = nav_of(session)
    targets = [item for item in nav.items if item.acquire]
    result = AcquireResult()
    session.extensions["end_acquire"] = False
    nav.acquiring = True
    try:
        for done, item in enumerate(targets):
            if item not in nav.items:  # deleted by the script meanwhile
                continue
            nav.current = nav.items.index(item) + 1
            session.variables["navAcqIndex"] = str(done + 1)
            x, y, z = item.stage_um
            session.scope.stage.move_to(x_um=x, y_um=y, z_um=z)
            session.log(f"Acquire at Items: item {item.label} ({done + 1} of {len(targets)})")
            try:
                run_script()
            except SEMerror as exc:
                if not session.no_message_box:
                    raise
                session.log(f"Acquire at Items: item {item.label} failed: {exc}")
                result.failed.append((item.label, str(exc)))
            else:
                result.acquired.append(item.label)
            if session.extensions.get("end_acquire"):
                result.ended_early = done + 1 < len(targets)
                break
    finally:
        nav.acquiring = False
    return result
