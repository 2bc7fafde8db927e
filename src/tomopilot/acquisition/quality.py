"""Ground-truth quality of a run on the twin: tracking, focus, dose and time per tilt series.

Only reports read the twin's ground truth. The true position of a target is the specimen point
at the centre of its map (the Preview taken when it was selected); for every Record the twin
knows where that point really was relative to the beam centre, and the true defocus at the
centre of the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tomopilot.acquisition.output.journal import JournalState, replay_journal
from tomopilot.acquisition.plan.run_config import AcquireConfig
from tomopilot.acquisition.plan.run_plan import target_of_area_root
from tomopilot.acquisition.plan.target_defocus import defocus_per_target
from tomopilot.core.config import load_config
from tomopilot.instrument.twin import GroundTruth, TwinMicroscope


@dataclass
class TargetQuality:
    """One tilt series judged against the truth."""

    target: int
    n_exposures: int
    tracking_rms_nm: float
    tracking_max_nm: float
    within_50nm: float
    defocus_rms_um: float
    defocus_rms_high_tilt_um: float
    dose_e_a2: float
    unintended_dose_e_a2: float
    minutes: float
    tracking_nm: list[float] = field(default_factory=list)
    defocus_error_um: list[float] = field(default_factory=list)
    tilts_deg: list[float] = field(default_factory=list)


@dataclass
class RunQuality:
    """All tilt series of a run, and the run's totals."""

    targets: list[TargetQuality]
    microscope_minutes: float
    n_exposures: int
    n_lost: int
    time_ledger_s: dict[str, float] = field(default_factory=dict)
    """The engine's ledger from the journal: microscope time by activity (empty if unfinished)."""
    twin_ledger_s: dict[str, float] = field(default_factory=dict)
    """The twin's own ledger over the run (ground truth), by the twin's activity names."""

    def pooled(self) -> dict[str, float]:
        """Figures over every exposure of the run."""
        track = (
            np.concatenate([t.tracking_nm for t in self.targets]) if self.targets else np.zeros(0)
        )
        focus = (
            np.concatenate([t.defocus_error_um for t in self.targets])
            if self.targets
            else np.zeros(0)
        )
        tilts = np.concatenate([t.tilts_deg for t in self.targets]) if self.targets else np.zeros(0)
        high = np.abs(tilts) > 40.0
        return {
            "tracking_rms_nm": _rms(track),
            "tracking_max_nm": float(track.max()) if track.size else 0.0,
            "within_50nm": float(np.mean(track <= 50.0)) if track.size else 0.0,
            "defocus_rms_um": _rms(focus),
            "defocus_rms_high_tilt_um": _rms(focus[high]),
            "minutes_per_tilt_series": self.microscope_minutes / max(1, len(self.targets)),
        }


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0


def assess(
    truth: GroundTruth,
    journal: JournalState,
    config: AcquireConfig,
    *,
    microscope_s: float,
    dose_half_size_um: float | None = None,
) -> RunQuality:
    """Judge a run: ``truth`` from its twin, ``journal`` from its journal."""
    settings = config.settings
    n_targets = max([*journal.maps.keys(), 0])
    levels = defocus_per_target(settings, n_targets)
    minutes = microscope_s / 60.0
    out = []
    for target, map_exposure in sorted(journal.maps.items()):
        point = truth.exposure(map_exposure).specimen_centre_um
        records = [c for c in journal.committed if int(c["target"]) == target]
        tracking, focus_err, tilts = [], [], []
        half = dose_half_size_um
        for record in records:
            exposure = truth.exposure(int(record["exposure_id"]))
            dx, dy = exposure.offset_nm(point)
            tracking.append(math.hypot(dx, dy))
            intended = record.get("target_defocus_um")  # the engine's, journalled
            if intended is None:  # journals before it was
                level = levels[target - 1]
                intended = settings.max_defocus_um if level is None else level
            focus_err.append(exposure.defocus_um - float(intended))
            tilts.append(float(record["tilt_deg"]))
            if half is None:
                half = min(exposure.field_shape) * exposure.pixel_size_a * 1e-4 / 2
        dose = truth.dose_received(point, half or 0.2)
        track = np.asarray(tracking)
        focus = np.asarray(focus_err)
        high = np.abs(np.asarray(tilts)) > 40.0 if tilts else np.zeros(0, bool)
        out.append(
            TargetQuality(
                target=target,
                n_exposures=len(records),
                tracking_rms_nm=_rms(track),
                tracking_max_nm=float(track.max()) if track.size else 0.0,
                within_50nm=float(np.mean(track <= 50.0)) if track.size else 0.0,
                defocus_rms_um=_rms(focus),
                defocus_rms_high_tilt_um=_rms(focus[high]) if focus.size else 0.0,
                dose_e_a2=dose.total_e_a2,
                unintended_dose_e_a2=dose.unintended_e_a2,
                minutes=minutes / max(1, len(journal.maps)),
                tracking_nm=tracking,
                defocus_error_um=focus_err,
                tilts_deg=tilts,
            )
        )
    finished = journal.finished or {}
    return RunQuality(
        targets=out,
        microscope_minutes=minutes,
        n_exposures=len(journal.committed),
        n_lost=len(journal.lost),
        time_ledger_s=dict(finished.get("time_ledger_s") or {}),
        twin_ledger_s=dict(truth.time_by_activity_s),
    )


def assess_areas(
    truth: GroundTruth, areas: Sequence[tuple[int, Path]], config: AcquireConfig
) -> RunQuality:
    """Judge a session of areas (``sequential``: one area per target): ``areas`` are (target
    number, journal path) pairs, each area's tilt series reported under its target's number;
    areas not started (no journal, no target map) are left out. The session's time runs from
    the first area's start to the last finish; its ledger is the sum of the areas' (empty
    while an area is unfinished)."""
    targets: list[TargetQuality] = []
    n_exposures = n_lost = 0
    start = end = None
    ledger: dict[str, float] = {}
    unfinished = False
    for number, path in areas:
        if not path.exists():
            continue
        journal = replay_journal(path)
        if not journal.maps:
            continue
        if journal.run is not None and start is None:
            start = float(journal.run["start_s"])
        if journal.finished is not None:
            end = float(journal.finished.get("time_s", 0.0))
        unfinished |= journal.finished is None
        quality = assess(truth, journal, config, microscope_s=1.0)
        for activity, seconds in quality.time_ledger_s.items():
            ledger[activity] = ledger.get(activity, 0.0) + seconds
        n_exposures += quality.n_exposures
        n_lost += quality.n_lost
        targets += [replace(t, target=number) for t in quality.targets]
    minutes = max(0.0, (end or 0.0) - (start or 0.0)) / 60.0
    per_series = minutes / max(1, len(targets))
    return RunQuality(
        targets=[replace(t, minutes=per_series) for t in targets],
        microscope_minutes=minutes,
        n_exposures=n_exposures,
        n_lost=n_lost,
        time_ledger_s={} if unfinished else ledger,  # the areas' engine ledgers, summed
        twin_ledger_s=dict(truth.time_by_activity_s),
    )


def area_journals(run_dir: Path, root: str) -> list[tuple[int, Path]]:
    """A session's area journals in ``run_dir`` (``<root>_t001.journal.jsonl``, …) with the
    numbers of the run's targets they acquired, in order. The number is the one the area's
    ``run`` line journals; journals written before it was journalled (or killed before their
    first line) are numbered by their root."""
    found = []
    for path in run_dir.glob(f"{root}_t*.journal.jsonl"):
        name = path.name.removesuffix(".journal.jsonl")
        by_name = target_of_area_root(root, name)
        if by_name is None:
            continue
        run = replay_journal(path).run
        found.append((int(run["area"]) if run and "area" in run else by_name, path))
    return sorted(found)


def assess_run_dir(run_dir: Path) -> RunQuality:
    """Rebuild a finished (or interrupted) twin run from its folder and judge it; a
    ``sequential`` session (one journal per area) is judged area by area."""
    configs = sorted(run_dir.glob("*_config.resolved.yaml"))
    journals = sorted(run_dir.glob("*.journal.jsonl"))
    if not configs or not journals:
        raise FileNotFoundError(f"{run_dir} holds no tomopilot run (no resolved config or journal)")
    config = load_config(configs[0], AcquireConfig)
    twin = TwinMicroscope(config.microscope.twin, command_log=run_dir / "twin_commands.jsonl")
    areas = area_journals(run_dir, config.output.root)
    if areas and not (run_dir / f"{config.output.root}.journal.jsonl").exists():
        return assess_areas(twin.ground_truth, areas, config)
    journal = replay_journal(journals[0])
    start = float(journal.run["start_s"]) if journal.run else 0.0
    return assess(twin.ground_truth, journal, config, microscope_s=twin.clock.now_s() - start)
