"""Turn one engine or microscope event (as its dictionary) into archive rows.

Each event is applied in one transaction together with its :class:`EventLogRow`; an event whose
key is already logged is skipped, so a retry after a failed commit never writes twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tomopilot.store.models import EventLogRow, HousekeepingRow, SessionRow, TiltSeriesRow
from tomopilot.store.writes import (
    tracking_values,
    upsert_area,
    upsert_exposure,
    upsert_housekeeping,
    upsert_session,
    upsert_target,
    upsert_tilt_series,
    upsert_truth,
)

AREA_NAME = "area 1"


@dataclass
class SessionInfo:
    """What the recorder knows of its run before any event (from the plan)."""

    run_dir: str
    name: str
    targets_um: list[tuple[float, float]] = field(default_factory=list)
    skipped: set[int] = field(default_factory=set)
    area_stage_um: tuple[float, float] | None = None
    pretilt_deg: float | None = None
    rotation_deg: float | None = None
    beam_diameter_um: float | None = None
    n_tilts: int = 0
    is_twin: bool = False


def _session(db: Session, info: SessionInfo) -> SessionRow:
    return upsert_session(db, info.run_dir, name=info.name, source="live", is_twin=info.is_twin)


def area_name(area: str, session_root: str) -> str:
    """The archive's name of an area: ``area 1`` for a run of one area (its root is the
    session's), else the area's own root (a sequential session's ``<root>_tNNN``)."""
    return AREA_NAME if area in ("", session_root) else area


def _area_and_targets(
    db: Session, info: SessionInfo, session: SessionRow, event: dict[str, Any]
) -> None:
    name = area_name(str(event.get("area") or ""), info.name)
    if name == AREA_NAME:
        stage = info.area_stage_um or (None, None)
        targets = list(enumerate(info.targets_um, start=1))
        skipped = info.skipped
    else:  # one area of a session: its own place and targets, from the event
        stage = (event.get("area_stage_x_um"), event.get("area_stage_y_um"))
        targets = [(n, (x, y)) for n, (x, y) in enumerate(event.get("targets_ss_um") or (), 1)]
        skipped = set()
    area = upsert_area(
        db,
        session,
        name,
        stage_x_um=stage[0],
        stage_y_um=stage[1],
        pretilt_deg=info.pretilt_deg,
        rotation_deg=info.rotation_deg,
        beam_diameter_um=info.beam_diameter_um,
    )
    for number, (x_um, y_um) in targets:
        target = upsert_target(db, area, number, ss_x_um=x_um, ss_y_um=y_um)
        if number in skipped:
            target.status = "skipped"


def _target_status(
    db: Session,
    session: SessionRow,
    number: int,
    status: str,
    detail: str,
    area_name_: str = AREA_NAME,
) -> None:
    area = upsert_area(db, session, area_name_)
    target = upsert_target(db, area, number)
    if target.status not in ("skipped",) or status == "skipped":
        target.status = status
    if detail:
        target.detail = (target.detail + "; " if target.detail else "") + detail


def _exposure(db: Session, session: SessionRow, info: SessionInfo, e: dict[str, Any]) -> None:
    stack = str(e.get("stack") or f"{info.name}_ts_{int(e['target']):03d}.mrc")
    name = stack[: -len(".mrc")] if stack.endswith(".mrc") else stack
    area = upsert_area(db, session, area_name(str(e.get("area") or ""), info.name))
    target = upsert_target(db, area, int(e["target"]))
    if target.status == "pending":
        target.status = "acquiring"
    series = upsert_tilt_series(
        db,
        session,
        name,
        number=int(e["target"]),
        target_id=target.id,
        stack_file=stack,
        mdoc_file=stack + ".mdoc",
        n_planned=int(e.get("n_steps") or info.n_tilts),
        pixel_size_a=e.get("pixel_size_a"),
    )
    ordinal = int(e["section"])
    exposure = upsert_exposure(
        db,
        series,
        ordinal,
        section=ordinal,
        file=stack,
        tilt_deg=float(e["tilt_deg"]),
        branch=e.get("branch", ""),
        image_shift_x_um=e["image_shift_x_um"],
        image_shift_y_um=e["image_shift_y_um"],
        stage_x_um=e.get("stage_x_um"),
        stage_y_um=e.get("stage_y_um"),
        stage_z_um=e.get("stage_z_um"),
        target_defocus_um=e.get("target_defocus_um"),
        predicted_defocus_um=e.get("focus_um"),
        measured_defocus_um=e.get("measured_defocus_um"),
        predicted_z_um=e.get("predicted_dz_um"),
        dose_e_a2=e.get("dose_e_a2"),
        prior_dose_e_a2=e.get("prior_dose_e_a2"),
        mean_counts=e.get("mean_counts"),
        exposure_s=e.get("exposure_s"),
        time_s=e.get("time_s"),
        datetime=e.get("datetime"),
        backend_exposure_id=e.get("exposure_id"),
        **tracking_values(
            (e["image_shift_x_um"], e["image_shift_y_um"]),
            (e.get("alignment_x_um"), e.get("alignment_y_um")),
        ),
    )
    truth = e.get("truth")
    if truth:
        upsert_truth(db, exposure, **truth)


def _housekeeping(db: Session, session: SessionRow, e: dict[str, Any]) -> None:
    count = db.scalar(
        select(func.count()).select_from(HousekeepingRow).filter_by(session_id=session.id)
    )
    upsert_housekeeping(
        db,
        session,
        int(count or 0),
        time_s=float(e.get("time_s", 0.0)),
        task=str(e.get("task", "")),
        duration_s=float(e.get("duration_s", 0.0)),
        detail=str(e.get("detail", "")),
    )


def apply_event(db: Session, info: SessionInfo, key: str, event: dict[str, Any]) -> bool:
    """Write one event's rows; ``False`` if it was written before (same ``key``)."""
    session = _session(db, info)
    logged = db.scalars(select(EventLogRow).filter_by(session_id=session.id, seq=key)).first()
    if logged is not None:
        return False
    kind = event.get("kind", "")
    time_s = float(event.get("time_s", 0.0))
    if kind == "RunStarted":
        upsert_session(
            db,
            info.run_dir,
            strategy=event.get("strategy"),
            status="running",
            n_targets=int(event.get("n_targets", 0)),
            n_tilts_planned=int(event.get("n_tilts", 0)),
        )
        if session.start_s is None:
            session.start_s = time_s
        _area_and_targets(db, info, session, event)
    elif kind == "ExposureRecorded":
        _exposure(db, session, info, event)
    elif kind == "TargetSkipped":
        _target_status(db, session, int(event["target"]), "skipped", str(event.get("reason", "")))
    elif kind == "BranchAborted":
        detail = f"branch {event.get('branch')} ended at {event.get('tilt_deg')}°: "
        where = area_name(str(event.get("area") or ""), info.name)
        number_ = int(event["target"])
        _target_status(db, session, number_, "acquiring", detail + event["reason"], where)
    elif kind == "ExposureLost":
        session.n_lost += 1
    elif kind == "RunStateChanged":
        session.status = str(event.get("state", session.status))
    elif kind == "RunFinished":
        session.status = str(event.get("status", "finished"))
        session.microscope_minutes = float(event.get("microscope_minutes", 0.0))
        for series in db.scalars(select(TiltSeriesRow).filter_by(session_id=session.id)):
            series.status = session.status
        if session.status == "finished":
            for area in session.areas:
                for target in area.targets:
                    if target.status in ("pending", "acquiring"):
                        target.status = "done"
    elif kind == "HousekeepingDone":
        _housekeeping(db, session, event)
    session.last_s = max(session.last_s or time_s, time_s)
    db.add(
        EventLogRow(
            session_id=session.id,
            seq=key,
            kind=kind,
            time_s=time_s,
            payload=json.dumps(event, sort_keys=True, default=str),
        )
    )
    return True
