"""Idempotent writes: every row found by its natural key, created or updated in place.

Both the live recorder and ``tomopilot archive import`` write through these, so a run recorded
live and imported afterwards (or imported twice) ends as one set of rows. An update never
replaces a known value by an unknown one (``None`` leaves a column as it was); with
``fill_only=True`` (an import) it only fills columns that are still empty, so what the live
recorder saw is never replaced by what the files say.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from tomopilot.store.models import (
    AreaRow,
    Base,
    ExposureRow,
    GroundTruthRow,
    HousekeepingRow,
    ProcessingJobRow,
    SessionRow,
    TargetRow,
    TiltSeriesRow,
)

R = TypeVar("R", bound=Base)


def _update(row: Base, values: dict[str, Any], fill_only: bool = False) -> bool:
    changed = False
    for key, value in values.items():
        if value is None or (fill_only and getattr(row, key) not in (None, "")):
            continue
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


def _get_or_create(db: Session, model: type[R], keys: dict[str, Any], values: dict[str, Any]) -> R:
    fill_only = bool(values.pop("fill_only", False))
    row = db.scalars(select(model).filter_by(**keys)).one_or_none()
    if row is None:
        row = model(**keys, **{k: v for k, v in values.items() if v is not None})
        db.add(row)
        db.flush()
        return row
    _update(row, values, fill_only)
    return row


def upsert_session(db: Session, run_dir: str, **values: Any) -> SessionRow:
    """The session of ``run_dir`` (its resolved path is the natural key)."""
    return _get_or_create(db, SessionRow, {"run_dir": run_dir}, values)


def upsert_area(db: Session, session: SessionRow, name: str, **values: Any) -> AreaRow:
    """An area of a session, by name."""
    return _get_or_create(db, AreaRow, {"session_id": session.id, "name": name}, values)


def upsert_target(db: Session, area: AreaRow, number: int, **values: Any) -> TargetRow:
    """A target of an area, by its 1-based number."""
    return _get_or_create(db, TargetRow, {"area_id": area.id, "number": number}, values)


def upsert_tilt_series(db: Session, session: SessionRow, name: str, **values: Any) -> TiltSeriesRow:
    """A tilt series of a session, by its file stem."""
    return _get_or_create(db, TiltSeriesRow, {"session_id": session.id, "name": name}, values)


def upsert_exposure(db: Session, series: TiltSeriesRow, ordinal: int, **values: Any) -> ExposureRow:
    """An exposure of a tilt series, by its acquisition order (0-based)."""
    return _get_or_create(
        db, ExposureRow, {"tilt_series_id": series.id, "ordinal": ordinal}, values
    )


def upsert_truth(db: Session, exposure: ExposureRow, **values: Any) -> GroundTruthRow:
    """The twin's ground truth of an exposure."""
    return _get_or_create(db, GroundTruthRow, {"exposure_id": exposure.id}, values)


def upsert_housekeeping(
    db: Session, session: SessionRow, ordinal: int, **values: Any
) -> HousekeepingRow:
    """The ``ordinal``-th housekeeping duty of a session."""
    return _get_or_create(
        db, HousekeepingRow, {"session_id": session.id, "ordinal": ordinal}, values
    )


def upsert_processing_job(
    db: Session, session: SessionRow, job_dir: str, **values: Any
) -> ProcessingJobRow:
    """A processing job of a session, by its folder (relative to the run folder)."""
    return _get_or_create(
        db, ProcessingJobRow, {"session_id": session.id, "job_dir": job_dir}, values
    )


def tracking_values(
    image_shift_um: tuple[float | None, float | None],
    alignment_um: tuple[float | None, float | None],
) -> dict[str, float | None]:
    """Leginon's prediction (the shift applied), position (shift + alignment) and error.

    >>> tracking_values((1.0, 2.0), (0.1, -0.2))["measured_y_um"]
    1.8
    """
    out: dict[str, float | None] = {}
    for axis, shift, found in zip("xy", image_shift_um, alignment_um, strict=True):
        out[f"predicted_{axis}_um"] = shift
        out[f"tracking_error_{axis}_um"] = found
        out[f"measured_{axis}_um"] = (
            None if shift is None or found is None else round(shift + found, 9)
        )
    return out
