"""After a run: each exposure's section in its (possibly tilt-sorted) stack, from the mdoc."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tomopilot.archive.mdoc_sections import ArchiveImportError, match_sections, read_mdoc_table
from tomopilot.store.models import SessionRow, TiltSeriesRow

_log = logging.getLogger(__name__)


def resync_sections(db: Session, run_dir: str) -> int:
    """Set every exposure's ``section`` from its series' mdoc; returns how many moved."""
    session = db.scalars(select(SessionRow).filter_by(run_dir=run_dir)).one_or_none()
    if session is None:
        return 0
    moved = 0
    for series in db.scalars(select(TiltSeriesRow).filter_by(session_id=session.id)):
        path = Path(run_dir) / series.mdoc_file
        if not path.is_file():
            continue
        try:
            table = read_mdoc_table(path)
        except ArchiveImportError as error:
            _log.warning("sections of %s not updated: %s", series.name, error)
            continue
        tilts = [float(items["TiltAngle"]) for items in table.sections]
        exposures = list(series.exposures)
        for exposure, section in zip(
            exposures, match_sections([e.tilt_deg for e in exposures], tilts), strict=True
        ):
            if section >= 0 and exposure.section != section:
                exposure.section = section
                moved += 1
    return moved
