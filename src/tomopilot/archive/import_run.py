"""``tomopilot archive import``: a finished run folder into the archive.

Two kinds of folder are understood: tomopilot's (journal, resolved configuration, stacks and
mdocs; on the twin also its command log, from which the ground truth is rebuilt) and
SerialEM/PACEtomo's (stacks with their mdocs, and a PACEtomo targets file if there is one).
RELION-style job folders inside (``MotionCorr/job002/``...) become processing jobs with the state
their sentinel file tells.
Every file is read and checked before anything is written, and the rows are written in one
transaction: a torn mdoc or a stack shorter than its mdoc is an :class:`ArchiveImportError`
naming the file, and the database is left as it was. Rows are found by natural keys and an
import only fills columns that are still empty, so importing twice changes nothing, and
importing a run that was recorded live keeps what the recorder saw.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tomopilot.acquisition.output.journal import JournalState, replay_journal
from tomopilot.archive.apply_events import AREA_NAME, SessionInfo, apply_event, area_name
from tomopilot.archive.mdoc_sections import (
    ArchiveImportError,
    MdocTable,
    TornRunFileError,
    match_sections,
    number,
    read_mdoc_table,
)
from tomopilot.archive.recorder import PENDING_FILE
from tomopilot.core.errors import TomopilotError
from tomopilot.io.mdoc_format import parse_serialem_datetime
from tomopilot.store import Store
from tomopilot.store.models import ExposureRow
from tomopilot.store.writes import (
    tracking_values,
    upsert_area,
    upsert_exposure,
    upsert_processing_job,
    upsert_session,
    upsert_target,
    upsert_tilt_series,
    upsert_truth,
)
from tomopilot.targeting.targets import load_targets

_log = logging.getLogger(__name__)

SORT_BACKUP_SUFFIX = "_unsorted.mrc.mdoc"


@dataclass
class SeriesFiles:
    """One tilt series found in the folder, read and checked."""

    name: str
    mdoc: MdocTable
    stack: Path
    order: list[int]
    """Section indices in acquisition order."""
    exposure_ids: list[int | None] = field(default_factory=list)
    target: int | None = None
    map_exposure: int | None = None
    """The target's map (its true position on the twin), from the series' journal."""


@dataclass
class ImportResult:
    """What an import found and wrote."""

    run_dir: Path
    kind: str
    n_series: int
    n_exposures: int
    n_new_exposures: int
    n_truth: int
    replayed_events: int = 0


def _mdocs(run_dir: Path) -> list[Path]:
    found = sorted(p for p in run_dir.glob("*.mdoc") if not p.name.endswith(SORT_BACKUP_SUFFIX))
    return found


def _stack_sections(stack: Path) -> int | None:
    if not stack.is_file():
        return None
    try:
        with mrcfile.open(stack, header_only=True, permissive=True) as mrc:
            return int(mrc.header.nz)
    except (OSError, ValueError) as error:
        raise TornRunFileError(f"{stack}: not a readable MRC stack ({error})") from error


def _acquisition_order(table: MdocTable) -> list[int]:
    def when(index: int) -> tuple[float, int]:
        raw = table.sections[index].get("DateTime")
        try:
            return (parse_serialem_datetime(raw).timestamp() if raw else float(index), index)
        except (ValueError, TomopilotError):
            return (float(index), index)

    return sorted(range(len(table.sections)), key=when)


def _read_series(run_dir: Path) -> list[SeriesFiles]:
    series = []
    for path in _mdocs(run_dir):
        table = read_mdoc_table(path)
        stack_name = path.name[: -len(".mdoc")]
        if "." not in stack_name:
            stack_name = table.header.get("ImageFile", stack_name + ".mrc")
        stack = run_dir / Path(stack_name).name
        n_stack = _stack_sections(stack)
        if n_stack is not None and n_stack < len(table.sections):
            raise TornRunFileError(
                f"{stack}: {n_stack} images but its mdoc {path.name} lists "
                f"{len(table.sections)} (a stack cut short)"
            )
        name = stack.name.rsplit(".", 1)[0]
        series.append(SeriesFiles(name, table, stack, _acquisition_order(table)))
    if not series:
        raise ArchiveImportError(f"{run_dir}: no mdoc files (not a run folder)")
    return series


RESOLVED_SUFFIX = "_config.resolved.yaml"


def _link_journals(run_dir: Path, series: list[SeriesFiles]) -> bool:
    """Link each series ``<root>_ts_NNN`` to the journal ``<root>.journal.jsonl`` (one per area
    in a sequential session); ``False`` if the folder holds no journal at all."""
    states: dict[str, JournalState | None] = {}
    for files in series:
        root, sep, _ = files.name.rpartition("_ts_")
        if not sep:
            continue
        if root not in states:
            path = run_dir / f"{root}.journal.jsonl"
            states[root] = replay_journal(path) if path.is_file() else None
        state = states[root]
        if state is not None:
            _link_journal(files, state)
    return any(state is not None for state in states.values()) or any(
        run_dir.glob("*.journal.jsonl")
    )


def _twin_truth(run_dir: Path) -> Any:
    configs = sorted(run_dir.glob("*" + RESOLVED_SUFFIX))
    log = run_dir / "twin_commands.jsonl"
    if not configs or not log.is_file():
        return None
    from tomopilot.acquisition.plan.run_config import AcquireConfig
    from tomopilot.core.config import load_config
    from tomopilot.instrument.twin import TwinMicroscope

    config = load_config(configs[0], AcquireConfig)
    return TwinMicroscope(config.microscope.twin, command_log=log).ground_truth


def _link_journal(files: SeriesFiles, state: JournalState) -> None:
    try:
        target = int(files.name.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return
    records = [r for r in state.committed if int(r["target"]) == target]
    if records:
        files.target = target
        files.map_exposure = state.maps.get(target)
        tilts = [float(items["TiltAngle"]) for items in files.mdoc.sections]
        order = match_sections([float(r["tilt_deg"]) for r in records], tilts)
        if len(records) != len(files.mdoc.sections) or min(order, default=0) < 0:
            raise TornRunFileError(
                f"{files.mdoc.path}: {len(files.mdoc.sections)} sections but the journal "
                f"committed {len(records)} Records of target {target}"
            )
        files.order = order
        files.exposure_ids = [int(r["exposure_id"]) for r in records]


def _exposure_values(items: dict[str, str], stack: str, section: int) -> dict[str, Any]:
    ctf = number(items, "CtfFind")
    if ctf is None:
        ctf = number(items, "Ctfplotter")
    shift = (number(items, "ImageShift", 0), number(items, "ImageShift", 1))
    return {
        "section": section,
        "file": stack,
        "tilt_deg": number(items, "TiltAngle"),
        "image_shift_x_um": shift[0],
        "image_shift_y_um": shift[1],
        "stage_x_um": number(items, "StagePosition", 0),
        "stage_y_um": number(items, "StagePosition", 1),
        "stage_z_um": number(items, "StageZ"),
        "target_defocus_um": number(items, "TargetDefocus"),
        "predicted_defocus_um": number(items, "Defocus"),
        "measured_defocus_um": ctf,
        "dose_e_a2": number(items, "ExposureDose"),
        "prior_dose_e_a2": number(items, "PriorRecordDose"),
        "mean_counts": number(items, "MinMaxMean", 2),
        "exposure_s": number(items, "ExposureTime"),
        "datetime": items.get("DateTime"),
        **tracking_values(shift, (None, None)),
        "fill_only": True,
    }


def _replay_pending(store: Store, run_dir: Path, info: SessionInfo) -> int:
    path = run_dir / PENDING_FILE
    if not path.is_file():
        return 0
    n = 0
    with store.session() as db:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                _log.warning("%s: a torn last line skipped", path)
                continue
            try:
                with db.begin_nested():  # one refused event leaves the others to be recorded
                    n += apply_event(db, info, str(item["key"]), item["event"])
            except (KeyError, TypeError, ValueError, IntegrityError) as error:
                _log.warning("%s: an unrecordable %s event skipped (%s)", path, item, error)
    return n


def _processing_jobs(run_dir: Path) -> list[tuple[str, str, str]]:
    """RELION-style job folders (``Type/jobNNN/``) under the run folder, with their state."""
    jobs = []
    for job in sorted(run_dir.glob("*/job[0-9][0-9][0-9]")):
        if not job.is_dir():
            continue
        if (job / "RELION_JOB_EXIT_SUCCESS").exists():
            status = "finished"
        elif (job / "RELION_JOB_EXIT_FAILURE").exists():
            status = "failed"
        elif (job / "RELION_JOB_EXIT_ABORTED").exists():
            status = "aborted"
        else:
            status = "running"
        jobs.append((job.parent.name, str(job.relative_to(run_dir)), status))
    return jobs


def _area_of(files: SeriesFiles, run_dir: Path) -> str:
    """A series' area, named as the live recorder names it (:func:`area_name`): a session's
    areas are the roots ``<root>_tNNN`` of their series beside ``<root>_config.resolved.yaml``."""
    root, sep, _ = files.name.rpartition("_ts_")
    configs = sorted(run_dir.glob("*" + RESOLVED_SUFFIX))
    if not sep or not configs:
        return AREA_NAME
    return area_name(root, configs[0].name[: -len(RESOLVED_SUFFIX)])


def _write(
    db: Session, run_dir: Path, kind: str, series: list[SeriesFiles], truth: Any
) -> tuple[int, int]:
    session = upsert_session(
        db, str(run_dir), name=run_dir.name, source=kind, is_twin=truth is not None, fill_only=True
    )
    if session.status == "running" and kind != "live":
        session.status = "finished"
    areas = [_area_of(files, run_dir) for files in series]
    targets_files = sorted(run_dir.glob("*_tgts.txt"))
    if targets_files and (AREA_NAME in areas or not areas):
        area = upsert_area(db, session, AREA_NAME)
        try:
            for n, planned in enumerate(load_targets(targets_files[0]).targets, start=1):
                upsert_target(db, area, n, ss_x_um=planned.ss_x_um, ss_y_um=planned.ss_y_um)
        except TomopilotError as error:
            _log.warning("targets of %s not imported: %s", run_dir, error)
    n_exposures = n_truth = 0
    for number_, (files, area_name_) in enumerate(zip(series, areas, strict=True), start=1):
        area = upsert_area(db, session, area_name_)
        target = upsert_target(db, area, files.target or number_, fill_only=True)
        if target.status in ("pending", "acquiring"):
            target.status = "done"
        pixel = number(files.mdoc.header, "PixelSpacing")
        row = upsert_tilt_series(
            db,
            session,
            files.name,
            number=files.target or number_,
            target_id=target.id,
            stack_file=files.stack.name,
            mdoc_file=files.mdoc.path.name,
            n_planned=len(files.mdoc.sections),
            pixel_size_a=pixel,
            status="finished",
            fill_only=True,
        )
        for ordinal, section in enumerate(files.order):
            values = _exposure_values(files.mdoc.sections[section], files.stack.name, section)
            exposure_id = files.exposure_ids[ordinal] if files.exposure_ids else None
            values["backend_exposure_id"] = exposure_id
            exposure = upsert_exposure(db, row, ordinal, **values)
            n_exposures += 1
            if truth is not None and exposure_id is not None and files.map_exposure is not None:
                from tomopilot.archive.truth import truth_columns

                columns = truth_columns(truth, files.map_exposure, exposure_id)
                upsert_truth(db, exposure, **columns, fill_only=True)
                n_truth += 1
    for job_type, job_dir, status in _processing_jobs(run_dir):
        upsert_processing_job(db, session, job_dir, job_type=job_type, status=status)
    return n_exposures, n_truth


def import_run(store: Store, run_dir: Path | str) -> ImportResult:
    """Import a finished run folder (see the module's description).

    Raises
    ------
    ArchiveImportError
        The folder or one of its files cannot be imported; nothing was written.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ArchiveImportError(f"{run_dir}: not a folder")
    series = _read_series(run_dir)
    kind = "serialem"
    truth = None
    if _link_journals(run_dir, series):
        kind = "tomopilot"
        truth = _twin_truth(run_dir)
    info = SessionInfo(run_dir=str(run_dir), name=run_dir.name, is_twin=truth is not None)
    replayed = _replay_pending(store, run_dir, info)
    with store.session() as db:
        before = db.scalar(select(func.count()).select_from(ExposureRow)) or 0
        n_exposures, n_truth = _write(db, run_dir, kind, series, truth)
        after = db.scalar(select(func.count()).select_from(ExposureRow)) or 0
    return ImportResult(
        run_dir=run_dir,
        kind=kind,
        n_series=len(series),
        n_exposures=n_exposures,
        n_new_exposures=after - before,
        n_truth=n_truth,
        replayed_events=replayed,
    )
