"""Seed a sequential session's predictor from the archive (Leginon loads earlier series).

UCSF Tomo starts each tilt group of a new series from the model of the series before it and
fits over the last few series (reference/leginon.md §1). A new session has none of its own, so
:func:`archive_history` turns the newest archived series of the same pixel size into the
:class:`~tomopilot.geometry.tilt_predictor.SeriesRecord` a session's history holds: each
series' measured positions per group (``+`` → group 0, ``−`` → group 1; tilt in radians), and
on the newest one the models the archive's own fit gives (:func:`~tomopilot.store.seeding.
seed_model`, φ, offset and the newest height per group), which the predictor starts from.
"""

from __future__ import annotations

import math
from pathlib import Path

from sqlalchemy import select

from tomopilot.geometry.tilt_model import TiltModel
from tomopilot.geometry.tilt_predictor import SeriesRecord
from tomopilot.store.database import Store
from tomopilot.store.models import SessionRow
from tomopilot.store.seeding import seed_model

_GROUP = {"+": 0, "-": 1}


def archive_history(
    store: Store,
    *,
    pixel_size_a: float | None = None,
    max_series: int = 8,
    exclude_session_id: int | None = None,
    exclude_run_dir: Path | None = None,
) -> list[SeriesRecord]:
    """Up to ``max_series`` newest archived series as history records, oldest first.

    ``exclude_run_dir``: leave out the session recorded from that folder, the run being
    acquired: a resumed run has already archived its own unfinished series, which are no
    earlier series to start from."""
    db = store.reader()
    try:
        if exclude_run_dir is not None and exclude_session_id is None:
            exclude_session_id = db.scalars(
                select(SessionRow.id).where(
                    SessionRow.run_dir.in_({str(exclude_run_dir), str(exclude_run_dir.resolve())})
                )
            ).first()
        seed = seed_model(
            db,
            pixel_size_a=pixel_size_a,
            max_series=max_series,
            exclude_session_id=exclude_session_id,
        )
    finally:
        db.close()
    records = []
    for series_id in sorted(seed.history)[-max_series:]:  # ids grow with time: oldest first
        groups = seed.history[series_id]
        record = SeriesRecord()
        for name, group in _GROUP.items():
            record.points[group] = [(math.radians(t), x, y) for t, x, y in groups.get(name, [])]
        records.append(record)
    if records:
        records[-1].models = {
            _GROUP[name]: TiltModel(g.phi_deg, g.offset_um, g.z0_um)
            for name, g in seed.groups.items()
        }
    return records
