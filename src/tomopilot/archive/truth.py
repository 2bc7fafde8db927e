"""The twin's ground truth of each Record, as the archive's ``ground_truth`` columns.

The true position of a target is the specimen point at the centre of its map (the Preview taken
when it was selected), as :mod:`tomopilot.acquisition.quality` judges a run; for each Record the
twin knows where that point was relative to the beam centre and the true defocus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.time_ledger import unwrap
from tomopilot.archive.recorder import TruthSource
from tomopilot.instrument.twin import GroundTruth, TwinMicroscope


def truth_columns(truth: GroundTruth, map_exposure: int, exposure: int) -> dict[str, float]:
    """True tracking error (nm, x along the tilt axis), true defocus and tilt of a Record."""
    point = truth.exposure(map_exposure).specimen_centre_um
    record = truth.exposure(exposure)
    dx_nm, dy_nm = record.offset_nm(point)
    return {
        "true_error_x_nm": float(dx_nm),
        "true_error_y_nm": float(dy_nm),
        "true_defocus_um": float(record.defocus_um),
        "true_tilt_deg": float(record.tilt_deg),
    }


def live_truth_source(scope: Any, journal_path: Path) -> TruthSource | None:
    """Ground truth from a running twin (``None`` for a real microscope); ``scope`` may be the
    engine's ledgered proxy of it."""
    scope = unwrap(scope)
    if not isinstance(scope, TwinMicroscope):
        return None
    maps: dict[Path, dict[int, int]] = {}

    def lookup(event: dict[str, Any]) -> dict[str, float] | None:
        # a stack <root>_ts_NNN.mrc belongs to the journal <root>.journal.jsonl (a sequential
        # session keeps one per area); the run's own journal otherwise
        root, sep, _ = str(event.get("stack") or "").rpartition("_ts_")
        journal = journal_path.with_name(f"{root}.journal.jsonl") if sep else journal_path
        if not journal.is_file():
            journal = journal_path
        target = int(event["target"])
        known = maps.setdefault(journal, {})
        if target not in known and journal.is_file():
            known.update(replay_journal(journal).maps)
        if target not in known:
            return None
        return truth_columns(scope.ground_truth, known[target], int(event["exposure_id"]))

    return lookup
