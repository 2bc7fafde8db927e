"""RELION-style job folders: ``<Type>/jobNNN/``, ``note.txt``, ``log.txt`` and sentinel files.

RELION's pipeliner watches a job folder for ``RELION_JOB_EXIT_SUCCESS``, ``RELION_JOB_EXIT_FAILURE``
or ``RELION_JOB_EXIT_ABORTED``, and asks a running job to stop by creating
``RELION_JOB_ABORT_NOW``. A program run as a RELION External job receives the job folder as
``--pipeline_control``. :class:`RelionJob` honours that contract, so tomopilot's jobs can run
from RELION's GUI or on their own; paths written into STAR files are relative to the project
directory, as RELION expects.

Examples
--------
>>> import tempfile, pathlib
>>> project = pathlib.Path(tempfile.mkdtemp())
>>> job = RelionJob.create(project, "MotionCorr")
>>> job.directory.relative_to(project).as_posix()
'MotionCorr/job001'
>>> job.begin(["tomopilot", "preprocess", "motioncorr"])
>>> _ = job.finish(JobStatus.SUCCESS)
>>> sorted(p.name for p in job.directory.iterdir())
['RELION_JOB_EXIT_SUCCESS', 'log.txt', 'note.txt']
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from tomopilot.core.files import atomic_write_text
from tomopilot.io.star import TiltSeries, write_star

SENTINEL_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
SENTINEL_FAILURE = "RELION_JOB_EXIT_FAILURE"
SENTINEL_ABORTED = "RELION_JOB_EXIT_ABORTED"
ABORT_REQUEST = "RELION_JOB_ABORT_NOW"

_JOB_NAME = re.compile(r"^job(\d{3,})$")


class JobStatus(StrEnum):
    """How a job ended, with the sentinel file each writes."""

    SUCCESS = SENTINEL_SUCCESS
    FAILURE = SENTINEL_FAILURE
    ABORTED = SENTINEL_ABORTED


def next_job_number(project_dir: Path) -> int:
    """One more than the highest ``jobNNN`` under any job-type folder of the project."""
    highest = 0
    if project_dir.is_dir():
        for type_dir in project_dir.iterdir():
            if not type_dir.is_dir() or type_dir.name.startswith("."):
                continue
            for child in type_dir.iterdir():
                match = _JOB_NAME.match(child.name)
                if match and child.is_dir():
                    highest = max(highest, int(match.group(1)))
    return highest + 1


@dataclass
class RelionJob:
    """A job folder inside a RELION project directory.

    Attributes
    ----------
    directory
        The job folder (``<project>/<Type>/jobNNN``, or any folder given by the user).
    project_dir
        The folder STAR paths are relative to.
    """

    directory: Path
    project_dir: Path

    @classmethod
    def create(cls, project_dir: Path | str, job_type: str) -> RelionJob:
        """A new job folder with the next free job number."""
        project = Path(project_dir)
        number = next_job_number(project)
        directory = project / job_type / f"job{number:03d}"
        directory.mkdir(parents=True, exist_ok=False)
        return cls(directory, project)

    @classmethod
    def at(cls, directory: Path | str, project_dir: Path | str | None = None) -> RelionJob:
        """An existing or user-named job folder (``--output`` or ``--pipeline_control``).

        The project directory defaults to the job folder's grandparent when the folder looks
        like ``<Type>/jobNNN``, else to the current directory.
        """
        folder = Path(directory)
        if project_dir is not None:
            project = Path(project_dir)
        elif _JOB_NAME.match(folder.resolve().name):
            project = folder.resolve().parent.parent
        else:
            project = Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, project)

    @property
    def log_path(self) -> Path:
        """The job's ``log.txt``."""
        return self.directory / "log.txt"

    def relative(self, path: Path | str) -> str:
        """``path`` relative to the project directory when it is below it, else absolute."""
        target = Path(path).resolve()
        base = self.project_dir.resolve()
        if target.is_relative_to(base):
            return target.relative_to(base).as_posix()
        return target.as_posix()

    def absolute(self, path: Path | str) -> Path:
        """A path as STAR files hold it: kept when absolute, else below the project directory."""
        given = Path(path)
        return given if given.is_absolute() else self.project_dir / given

    def begin(self, argv: list[str]) -> None:
        """Clear old exit sentinels and any abort request; record the command in ``note.txt``."""
        for name in (SENTINEL_SUCCESS, SENTINEL_FAILURE, SENTINEL_ABORTED, ABORT_REQUEST):
            (self.directory / name).unlink(missing_ok=True)
        stamp = datetime.now().isoformat(timespec="seconds")
        note = self.directory / "note.txt"
        previous = note.read_text() if note.exists() else ""
        atomic_write_text(note, previous + f"++++ with the following command(s) ({stamp}):\n")
        with note.open("a") as handle:
            handle.write(" ".join(shlex.quote(a) for a in argv) + "\n++++\n")
        self.log(f"started: {' '.join(argv)}")

    def log(self, text: str) -> None:
        """Append a time-stamped line to ``log.txt``."""
        stamp = datetime.now().isoformat(timespec="seconds")
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")

    def abort_requested(self) -> bool:
        """Whether RELION (or the user) created ``RELION_JOB_ABORT_NOW``."""
        return (self.directory / ABORT_REQUEST).exists()

    def finish(self, status: JobStatus) -> Path:
        """Write the exit sentinel (removing the abort request once honoured)."""
        if status is JobStatus.ABORTED:
            (self.directory / ABORT_REQUEST).unlink(missing_ok=True)
        self.log(f"finished: {status.name}")
        return atomic_write_text(self.directory / status.value, "")

    def status(self) -> JobStatus | None:
        """The sentinel present in the folder, if any."""
        for status in JobStatus:
            if (self.directory / status.value).exists():
                return status
        return None


def write_tilt_series_star(job: RelionJob, ts: TiltSeries, table: pd.DataFrame) -> dict[str, Any]:
    """Write ``tilt_series/<TS>.star`` in the job folder; return its row of the global table."""
    path = job.directory / "tilt_series" / f"{ts.name}.star"
    write_star(path, {ts.name: table})
    row = dict(ts.globals)
    row["rlnTomoName"] = ts.name
    row["rlnTomoTiltSeriesStarFile"] = job.relative(path)
    return row


def write_global_star(job: RelionJob, name: str, rows: list[dict[str, Any]]) -> Path | None:
    """Write the global table ``name`` of the job's tilt series (nothing when there are none)."""
    if not rows:
        return None
    path = job.directory / name
    write_star(path, {"global": pd.DataFrame(rows)})
    return path
