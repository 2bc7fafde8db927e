"""The run journal: every state change of a run, appended and fsync'd before it takes effect.

Records are JSON objects with a ``kind``:

- ``run``: the run began (strategy, targets, plan digest);
- ``map``: a target's reference image was taken (its exposure id, for reports);
- ``setup``: the set-up at the start tilt finished (strategy state, F0, start image shifts,
  the files of images the strategy holds that no stack has, the time ledger so far);
- ``started``: a Record is about to be taken (target, step);
- ``committed``: that Record is saved in its stack and mdoc (with its branch and applied image
  shift, the strategy state and held-image files after it, and the time ledger so far:
  ``time_ledger_s`` closed at the microscope clock's ``ledger_time_s``);
- ``lost``: an exposure that will not be retried;
- ``ended``: a branch of the scheme ended;
- ``finished``: the run ended.

:func:`replay_journal` folds them into a :class:`JournalState` from which ``--resume`` continues.
A Record ``started`` but never ``committed`` was in flight when the process died: it is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomopilot.acquisition.output.pause_hook import PauseHook
from tomopilot.core.errors import JournalError
from tomopilot.core.files import AppendOnlyJournal


@dataclass
class JournalState:
    """What a journal says about a run so far."""

    run: dict[str, Any] | None = None
    maps: dict[int, int] = field(default_factory=dict)
    setup: dict[str, Any] | None = None
    geometry: dict[str, Any] | None = None
    pattern: dict[str, Any] | None = None
    heights_pending: dict[str, Any] | None = None
    last_commit: dict[str, Any] | None = None
    sections: dict[int, int] = field(default_factory=dict)
    prior_dose: dict[int, float] = field(default_factory=dict)
    in_flight: dict[str, Any] | None = None
    lost: list[dict[str, Any]] = field(default_factory=list)
    ended_branches: set[str] = field(default_factory=set)
    finished: dict[str, Any] | None = None
    committed: list[dict[str, Any]] = field(default_factory=list)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    heights_done: bool = False
    ledger: dict[str, float] | None = None
    """The last time ledger journalled (set-up, commits, finish), closed at ``ledger_time_s``."""
    ledger_time_s: float | None = None


# What :attr:`JournalState.committed` keeps of each commit: the branch is needed to pick a
# target's tracking reference on resume, the applied image shift and focus to re-find it.
_COMMIT_KEYS = (
    "target",
    "step_index",
    "tilt_deg",
    "branch",
    "section",
    "exposure_id",
    "image_shift_um",
    "focus_um",
    "target_defocus_um",
    "ctf_um",
)


def replay_journal(path: Path) -> JournalState:
    """Fold a journal's records into the state of the run."""
    state = JournalState()
    for number, record in enumerate(AppendOnlyJournal(path).records(), start=1):
        kind = record.get("kind")
        if "time_ledger_s" in record and "ledger_time_s" in record:
            state.ledger = {str(k): float(v) for k, v in record["time_ledger_s"].items()}
            state.ledger_time_s = float(record["ledger_time_s"])
        elif kind == "run" and "start_s" in record:  # nothing booked yet: the clock started
            state.ledger, state.ledger_time_s = {}, float(record["start_s"])
        if kind == "run":
            state.run = record
        elif kind == "map":
            state.maps[int(record["target"])] = int(record["exposure_id"])
        elif kind == "setup":
            state.setup = record
            state.views = dict(record.get("views", {}))
        elif kind == "geometry":
            state.geometry = record
        elif kind == "pattern":
            state.pattern = record
        elif kind == "heights":  # refineGeo; the next commit's strategy state includes it
            state.heights_pending = record
            state.heights_done = True
        elif kind == "started":
            state.in_flight = record
        elif kind == "committed":
            state.last_commit = record
            state.views = dict(record.get("views", state.views))
            state.in_flight = None
            state.heights_pending = None
            state.sections[int(record["target"])] = int(record["section"]) + 1
            state.prior_dose = {int(k): float(v) for k, v in record["prior_dose"].items()}
            state.committed.append({k: record[k] for k in _COMMIT_KEYS if k in record})
        elif kind == "lost":
            state.lost.append(record)
            state.in_flight = None
        elif kind == "ended":
            state.ended_branches.add(str(record["branch"]))
        elif kind == "finished":
            state.finished = record
        elif kind == "resumed":
            state.finished = None  # an aborted run was continued
        elif kind != "note":
            raise JournalError(f"{path}:{number}: unknown journal record kind {kind!r}")
    return state


class RunJournal:
    """Append journal records for one run."""

    def __init__(self, path: Path, pause: PauseHook | None = None) -> None:
        self.path = path
        self._journal = AppendOnlyJournal(path)
        self.pause = pause  # a crash test's stop point (pause_hook.py); None in real runs

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record (durable on return)."""
        if self.pause is not None:
            self.pause.journal_line(kind, written=False)
        self._journal.append({"kind": kind, **fields})
        if self.pause is not None:
            self.pause.journal_line(kind, written=True)


def last_section_on_branch(state: JournalState, target: int, branch: str) -> int | None:
    """The stack section of ``target``'s last committed exposure on ``branch`` (or at the start
    tilt); its last exposure anywhere when none is; None when it has none."""
    sections = [c for c in state.committed if int(c["target"]) == target]
    if not sections:
        return None
    on_branch = [c for c in sections if branch_of(c) in (branch, "start")]
    chosen = on_branch[-1] if on_branch else sections[-1]
    return int(chosen["section"])


def branch_of(commit: dict[str, Any]) -> str:
    """The branch a journalled commit belongs to."""
    return str(commit.get("branch", "start"))
