"""Read the archive for the pages and the JSON API."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tomopilot.store.models import (
    AreaRow,
    EventLogRow,
    ExposureRow,
    GroundTruthRow,
    HousekeepingRow,
    SessionRow,
    TargetRow,
    TiltSeriesRow,
)
from tomopilot.web.schemas import (
    AreaOut,
    EventOut,
    ExposureOut,
    HousekeepingOut,
    SessionDetail,
    SessionOut,
    TargetOut,
    TiltSeriesDetail,
    TiltSeriesOut,
)

TIMELINE_KINDS = (
    "RunStarted",
    "SetupStep",
    "BranchAborted",
    "TargetSkipped",
    "ExposureLost",
    "RunStateChanged",
    "RunFinished",
    "HousekeepingDone",
    "FaultTriggered",
)


def _rms(values: Sequence[float]) -> float | None:
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else None


def _counts(db: Session, session_id: int) -> tuple[int, int, int]:
    n_series = db.scalar(
        select(func.count()).select_from(TiltSeriesRow).filter_by(session_id=session_id)
    )
    n_exposures = db.scalar(
        select(func.count())
        .select_from(ExposureRow)
        .join(TiltSeriesRow)
        .where(TiltSeriesRow.session_id == session_id)
    )
    planned = db.scalar(
        select(func.coalesce(func.sum(TiltSeriesRow.n_planned), 0)).where(
            TiltSeriesRow.session_id == session_id
        )
    )
    return int(n_series or 0), int(n_exposures or 0), int(planned or 0)


def _planned(db: Session, row: SessionRow, series_planned: int) -> int:
    if row.n_tilts_planned and row.source == "live":
        n_targets = db.scalar(
            select(func.count())
            .select_from(TargetRow)
            .join(AreaRow)
            .where(AreaRow.session_id == row.id, TargetRow.status != "skipped")
        )
        return int(row.n_tilts_planned * (n_targets or row.n_targets))
    return series_planned


def _session_out(db: Session, row: SessionRow) -> SessionOut:
    n_series, n_exposures, planned = _counts(db, row.id)
    return SessionOut(
        id=row.id,
        name=row.name,
        run_dir=row.run_dir,
        source=row.source,
        strategy=row.strategy,
        status=row.status,
        n_tilt_series=n_series,
        n_exposures=n_exposures,
        n_planned=max(_planned(db, row, planned), n_exposures),
        microscope_minutes=row.microscope_minutes,
        is_twin=row.is_twin,
    )


def list_sessions(db: Session) -> list[SessionOut]:
    """Every session, newest first."""
    rows = db.scalars(select(SessionRow).order_by(SessionRow.id.desc())).all()
    return [_session_out(db, row) for row in rows]


def revision(db: Session, session_id: int | None = None) -> int:
    """A number that grows whenever something is recorded (for a session, or anywhere)."""
    events = select(func.coalesce(func.max(EventLogRow.id), 0))
    exposures = select(func.coalesce(func.max(ExposureRow.id), 0))
    if session_id is not None:
        events = events.where(EventLogRow.session_id == session_id)
        exposures = exposures.join(TiltSeriesRow).where(TiltSeriesRow.session_id == session_id)
    return int(db.scalar(events) or 0) + int(db.scalar(exposures) or 0)


def _summary(kind: str, payload: str) -> str:
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return kind
    if kind == "SetupStep":
        return f"set-up: {data.get('step')} {data.get('detail', '')}".strip()
    if kind == "BranchAborted":
        return (
            f"target {data.get('target')}: branch {data.get('branch')} ends ({data.get('reason')})"
        )
    if kind == "TargetSkipped":
        return f"target {data.get('target')} skipped ({data.get('reason')})"
    if kind == "ExposureLost":
        return (
            f"target {data.get('target')} at {data.get('tilt_deg')}°: lost ({data.get('reason')})"
        )
    if kind == "HousekeepingDone":
        return f"{data.get('task')} ({float(data.get('duration_s', 0)):.0f} s)"
    if kind == "RunFinished":
        return f"run {data.get('status')}: {data.get('n_exposures')} exposures"
    if kind == "RunStarted":
        return f"run {'resumed' if data.get('resumed') else 'started'} ({data.get('strategy')})"
    if kind == "RunStateChanged":
        return f"run {data.get('state')}"
    if kind == "FaultTriggered":
        return f"fault: {data.get('fault')} {data.get('detail', '')}".strip()
    return kind


def _series_out(db: Session, series: TiltSeriesRow) -> TiltSeriesOut:
    exposures = list(series.exposures)
    errors_nm = [
        1000 * math.hypot(e.tracking_error_x_um or 0.0, e.tracking_error_y_um or 0.0)
        for e in exposures
        if e.tracking_error_x_um is not None
    ]
    truths = db.scalars(
        select(GroundTruthRow).join(ExposureRow).where(ExposureRow.tilt_series_id == series.id)
    ).all()
    true_nm = [math.hypot(t.true_error_x_nm, t.true_error_y_nm) for t in truths]
    return TiltSeriesOut(
        id=series.id,
        session_id=series.session_id,
        name=series.name,
        number=series.number,
        status=series.status,
        n_exposures=len(exposures),
        n_planned=max(series.n_planned, len(exposures)),
        pixel_size_a=series.pixel_size_a,
        tracking_rms_nm=_rms(errors_nm),
        true_tracking_rms_nm=_rms(true_nm),
        last_tilt_deg=exposures[-1].tilt_deg if exposures else None,
    )


def session_detail(db: Session, session_id: int) -> SessionDetail | None:
    """A session's page data."""
    row = db.get(SessionRow, session_id)
    if row is None:
        return None
    base = _session_out(db, row)
    elapsed = None if row.start_s is None or row.last_s is None else row.last_s - row.start_s
    eta = None
    if elapsed is not None and base.n_exposures and row.status in ("running", "paused"):
        eta = elapsed / base.n_exposures * max(0, base.n_planned - base.n_exposures)
    elif row.status not in ("running", "paused"):
        eta = 0.0
    recent = db.scalars(
        select(ExposureRow)
        .join(TiltSeriesRow)
        .where(TiltSeriesRow.session_id == session_id)
        .order_by(ExposureRow.id.desc())
        .limit(20)
    ).all()
    rates = [e.dose_e_a2 / e.exposure_s for e in recent if e.dose_e_a2 and e.exposure_s]
    housekeeping = db.scalars(
        select(HousekeepingRow).filter_by(session_id=session_id).order_by(HousekeepingRow.ordinal)
    ).all()
    timeline = db.scalars(
        select(EventLogRow)
        .where(EventLogRow.session_id == session_id, EventLogRow.kind.in_(TIMELINE_KINDS))
        .order_by(EventLogRow.id)
        .limit(500)
    ).all()
    series = db.scalars(
        select(TiltSeriesRow).filter_by(session_id=session_id).order_by(TiltSeriesRow.number)
    ).all()
    areas = db.scalars(select(AreaRow.id).filter_by(session_id=session_id)).all()
    return SessionDetail(
        **base.model_dump(),
        start_s=row.start_s,
        elapsed_s=elapsed,
        eta_s=eta,
        dose_rate_e_a2_s=sum(rates) / len(rates) if rates else None,
        n_lost=row.n_lost,
        areas=list(areas),
        tilt_series=[_series_out(db, s) for s in series],
        housekeeping=[
            HousekeepingOut(time_s=h.time_s, task=h.task, duration_s=h.duration_s, detail=h.detail)
            for h in housekeeping
        ],
        timeline=[
            EventOut(kind=e.kind, time_s=e.time_s, summary=_summary(e.kind, e.payload))
            for e in timeline
        ],
        revision=revision(db, session_id),
    )


def session_exposures(db: Session, session_id: int) -> list[ExposureRow]:
    """Every exposure of a session in recording order (for the session's time plots)."""
    return list(
        db.scalars(
            select(ExposureRow)
            .join(TiltSeriesRow)
            .where(TiltSeriesRow.session_id == session_id)
            .order_by(ExposureRow.id)
        )
    )


def series_detail(db: Session, series_id: int) -> TiltSeriesDetail | None:
    """A tilt series with its exposures and, on the twin, their truth."""
    series = db.get(TiltSeriesRow, series_id)
    if series is None:
        return None
    out = []
    for e in series.exposures:
        truth = e.truth
        out.append(
            ExposureOut(
                **{name: getattr(e, name) for name in ExposureOut.model_fields if hasattr(e, name)},
                true_error_x_nm=truth.true_error_x_nm if truth else None,
                true_error_y_nm=truth.true_error_y_nm if truth else None,
                true_defocus_um=truth.true_defocus_um if truth else None,
            )
        )
    return TiltSeriesDetail(**_series_out(db, series).model_dump(), exposures=out)


def area_detail(db: Session, area_id: int) -> AreaOut | None:
    """An area with its targets, their status and the tilt of the newest Record."""
    area = db.get(AreaRow, area_id)
    if area is None:
        return None
    last = db.scalars(
        select(ExposureRow)
        .join(TiltSeriesRow)
        .where(TiltSeriesRow.session_id == area.session_id)
        .order_by(ExposureRow.id.desc())
        .limit(1)
    ).first()
    series_of = {
        s.target_id: s.id
        for s in db.scalars(select(TiltSeriesRow).filter_by(session_id=area.session_id))
    }
    targets = sorted(area.targets, key=lambda t: t.number)
    return AreaOut(
        id=area.id,
        session_id=area.session_id,
        name=area.name,
        pretilt_deg=area.pretilt_deg,
        rotation_deg=area.rotation_deg,
        beam_diameter_um=area.beam_diameter_um,
        current_tilt_deg=last.tilt_deg if last else None,
        targets=[
            TargetOut(
                number=t.number,
                ss_x_um=t.ss_x_um,
                ss_y_um=t.ss_y_um,
                status=t.status,
                detail=t.detail,
                tilt_series_id=series_of.get(t.id),
            )
            for t in targets
        ],
    )
