"""The state of one script session: the microscope, buffers, variables, files, Navigator, log.

A :class:`Session` is what the module's commands act on. It holds no ground truth: the module
drives the microscope only through the ``Microscope`` protocol, exactly as SerialEM drives a real
one. For the ground-truth report it writes a side record (which exposure each saved image was,
which map each Navigator point was picked on) that only reports read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tomopilot.core.errors import TomopilotError
from tomopilot.core.files import AppendOnlyJournal, atomic_write_text
from tomopilot.instrument.errors import (
    CameraTimeoutError,
    ImageShiftLimitError,
    InstrumentError,
    NoBeamError,
    StageError,
    StageLimitError,
)
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.twin_serialem.buffers import Buffers
from tomopilot.instrument.twin_serialem.commands import CAMERA_SETS
from tomopilot.instrument.twin_serialem.errors import SEMerror, SEMexited, command_error
from tomopilot.instrument.types import AreaPreset, LowDoseArea

_log = logging.getLogger(__name__)

# Parameter-set index -> low-dose area (SerialEM: 0 View, 1 Focus, 2 Trial, 3 Record, 4 Preview,
# 5 Search).
SET_AREAS: tuple[LowDoseArea, ...] = (
    LowDoseArea.VIEW,
    LowDoseArea.FOCUS,
    LowDoseArea.TRIAL,
    LowDoseArea.RECORD,
    LowDoseArea.PREVIEW,
    LowDoseArea.SEARCH,
)
RECORD_FILE = "semrun_record.jsonl"
PERSISTENT_FILE = "semrun_persistent_vars.json"

# The SerialEM version the module answers IsVersionAtLeast with (its interface follows 4.2).
VERSION = 40200
BUILD_DATE = 20250101


@dataclass
class Answers:
    """Replies to dialogs: prompt text (or a part of it, case-insensitive) -> answer.

    Dialogs with no matching answer take their default (OK, Yes, the number or text offered).
    Every dialog asked is kept in :attr:`asked` with its answer and whether it was defaulted.
    """

    replies: dict[str, object] = field(default_factory=dict)
    asked: list[dict[str, object]] = field(default_factory=list)

    def answer(self, kind: str, prompt: str, default: object) -> object:
        """The reply to a dialog of ``kind`` showing ``prompt``."""
        text = prompt.casefold()
        for key, value in self.replies.items():
            if key.casefold() in text:
                self.asked.append({"dialog": kind, "prompt": prompt, "answer": value, "key": key})
                return value
        self.asked.append({"dialog": kind, "prompt": prompt, "answer": default, "key": None})
        return default

    def unused(self) -> list[str]:
        """Answers that no dialog asked for (a misspelt prompt, say)."""
        used = {a["key"] for a in self.asked}
        return [k for k in self.replies if k not in used]


@dataclass
class Properties:
    """SerialEM properties and user settings the module knows (name -> value)."""

    values: dict[str, float]
    originals: dict[str, float] = field(default_factory=dict)

    def key(self, name: str) -> str | None:
        """The stored spelling of a case-insensitive name, or None."""
        folded = name.casefold()
        return next((k for k in self.values if k.casefold() == folded), None)


class SessionRecord:
    """The side record of a session for the ground-truth report (append-only JSON lines)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._journal = AppendOnlyJournal(path) if path is not None else None
        self.entries: list[dict[str, Any]] = []

    def add(self, kind: str, **data: Any) -> None:
        """Record one fact (``image``, ``map``, ``nav_point`` ...)."""
        entry = {"kind": kind, **data}
        self.entries.append(entry)
        if self._journal is not None:
            self._journal.append(entry)


class Session:
    """Everything one script run changes, and the microscope it runs on.

    Parameters
    ----------
    scope
        The microscope (the twin, or any backend of the protocol).
    directory
        The working directory: relative file names resolve here (``ReportDirectory``).
    answers
        Replies to dialogs.
    on_log
        Called with every line the script prints to SerialEM's log (``Echo``, reports).
    record_dir
        Where the ground-truth side record goes; None keeps it in memory only.
    """

    passthrough_errors: tuple[type[BaseException], ...] = (SEMexited,)

    def __init__(
        self,
        scope: Microscope,
        *,
        directory: Path | str | None = None,
        answers: Mapping[str, object] | None = None,
        on_log: Callable[[str], None] | None = None,
        record_dir: Path | str | None = None,
    ) -> None:
        self.scope = scope
        self.directory = Path(directory or Path.cwd()).resolve()
        self.answers = Answers(dict(answers or {}))
        self.on_log = on_log
        self.log_lines: list[str] = []
        self.record = SessionRecord(
            Path(record_dir) / RECORD_FILE if record_dir is not None else None
        )
        self.buffers = Buffers()
        self.variables: dict[str, str] = {}
        self.persistent: dict[str, str] = {}
        self.reported: tuple[object, ...] = ()
        self.all_tuples = False
        self.suppress_reports = False
        self.no_message_box = False
        self.low_dose = True
        self.ld_area = LowDoseArea.RECORD
        self.target_defocus_um = -2.0
        self.saved_presets: dict[LowDoseArea, AreaPreset] = {}
        self.saved_ld_params: dict[LowDoseArea, AreaPreset] = {}
        self.clock_zero_s = scope.clock.now_s()
        self.valves_open = True
        self.beam_tilt_mrad = (0.0, 0.0)
        self.beam_tilt_saved: tuple[float, float] | None = None
        self.next_flash_high_temp = False
        self.last_autofocus: tuple[float, float] | None = None
        self.align_limit_um: float | None = None
        self.dose_area = 0
        self.dose_accumulators: dict[int, float] = {}
        self.status_lines: dict[int, str] = {}
        self.next_log_style: tuple[int, int] | None = None
        self.command_count: dict[str, int] = {}
        self.properties = Properties(
            {
                "ImageShiftLimit": scope.optics.image_shift_limit_um,
                "MaximumTiltAngle": scope.stage.limits.tilt_deg,
                "StageRelaxation": 0.025,
                "StageMontageBacklash": 5.0,
                "TiltBacklash": 3.0,
                "EnableExternalPython": 1.0,
                "DefaultRollBuffers": 3.0,
                "ReadBufferInLowDose": 3.0,
                "DriftSettlingTime": 0.0,
                "RealignItemMaxShiftMicrons": 3.0,
            }
        )
        self.settings = Properties(
            {
                "ShiftToTiltAxis": 1.0,
                "NavAlignOption": 1.0,
                "DriftProtection": 0.0,
                "AlignTrimFraction": 0.25,
                "TargetDefocus": -2.0,
            }
        )
        # filled by the families that need them (files, navigator, frames)
        self.extensions: dict[str, Any] = {}
        self._persistent_path = (
            Path(record_dir) / PERSISTENT_FILE if record_dir is not None else None
        )
        if self._persistent_path is not None and self._persistent_path.exists():
            self.persistent = {
                str(k): str(v) for k, v in json.loads(self._persistent_path.read_text()).items()
            }

    # -- command life cycle ----------------------------------------------------------------------
    def begin_command(self, name: str, args: tuple[Any, ...]) -> None:
        """Clear the reported values; count the command."""
        self.reported = ()
        for index in range(1, 7):
            self.variables.pop(f"reportedValue{index}", None)
        self.command_count[name] = self.command_count.get(name, 0) + 1

    def end_command(self, values: tuple[object, ...]) -> None:
        """Keep the reported values (also as ``reportedValueN`` variables)."""
        self.reported = values
        for index, value in enumerate(values, start=1):
            self.variables[f"reportedValue{index}"] = _text(value)

    def translate_error(self, name: str, args: tuple[Any, ...], exc: Exception) -> SEMerror:
        """A SerialEM-style error for a failure inside a command."""
        if isinstance(exc, ImageShiftLimitError):
            what = f"Image shift beyond the limit ({exc})"
        elif isinstance(exc, StageLimitError):
            what = f"Stage position out of range ({exc})"
        elif isinstance(exc, StageError):
            what = f"Stage error ({exc})"
        elif isinstance(exc, CameraTimeoutError):
            what = f"Camera timeout ({exc})"
        elif isinstance(exc, NoBeamError):
            what = f"No beam ({exc})"
        elif isinstance(exc, InstrumentError | TomopilotError | OSError | ValueError):
            what = str(exc)
        else:
            _log.exception("internal error in the twin-backed serialem module (%s)", name)
            what = f"Internal error of the twin-backed module ({type(exc).__name__}: {exc})"
        return command_error(name, args, what)

    # -- helpers shared by the families --------------------------------------------------------
    def log(self, text: str) -> None:
        """Print a line to the session log (SerialEM's log window)."""
        self.log_lines.append(text)
        if self.on_log is not None:
            self.on_log(text)

    def report(self, text: str) -> None:
        """A report line, unless ``SuppressReports`` is on."""
        if not self.suppress_reports:
            self.log(text)

    def area_of_set(self, camera_set: int) -> LowDoseArea:
        """The low-dose area of a parameter set index."""
        return SET_AREAS[camera_set]

    def set_of_area(self, area: LowDoseArea) -> int:
        """The parameter set index of a low-dose area."""
        return SET_AREAS.index(area)

    def set_letter(self, camera_set: int) -> str:
        """``V``, ``F``, ``T``, ``R``, ``P`` or ``S``."""
        return CAMERA_SETS[camera_set]

    def resolve(self, name: str) -> Path:
        """A file name resolved against the working directory."""
        path = Path(name)
        return path if path.is_absolute() else self.directory / path

    def now_s(self) -> float:
        """The microscope clock."""
        return self.scope.clock.now_s()

    def save_persistent(self) -> None:
        """Keep persistent variables for the next run in the same folder."""
        if self._persistent_path is not None:
            atomic_write_text(self._persistent_path, json.dumps(self.persistent, indent=1))


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def number_text(value: float) -> str:
    """A number as SerialEM prints it in reports."""
    return _text(float(value))
