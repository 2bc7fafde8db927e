"""The table of script commands: names, argument signatures, handlers, and the dispatcher.

Every command of the twin-backed module is registered here once, with a signature string that
drives argument checking, and a handler in the module of its family (``optics_commands``,
``navigator_commands`` ...). The same table counts coverage against :data:`LISTED`, the commands a
public parallel-tomography script collection uses.

Signature strings: required kinds, then ``|``, then optional kinds; a trailing ``*`` repeats the
last kind. Kinds:

``F`` a number (int or float), ``I`` an integer, ``S`` text, ``B`` a buffer letter A..T,
``V`` text or a number, ``C`` a camera parameter set (V F T R P S or 0..5).

Return values follow the module's rules: no reported value gives ``None``, one gives the bare
value, more give a tuple; numbers come back as ``float``. Reported values are cleared before
each command.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tomopilot.instrument.twin_serialem.errors import SEMerror, command_error

if TYPE_CHECKING:
    from tomopilot.instrument.twin_serialem.session import Session

Reported = tuple[object, ...] | None
Handler = Callable[..., Reported]

BUFFER_LETTERS = "ABCDEFGHIJKLMNOPQRST"
CAMERA_SETS = "VFTRPS"  # SerialEM's parameter-set order: View 0 ... Preview 4, Search 5


@dataclass(frozen=True)
class Command:
    """One script command: its name, argument kinds and handler."""

    name: str
    required: str
    optional: str
    repeat: bool
    handler: Handler
    always_tuple: bool = False

    @property
    def usage(self) -> str:
        """The signature in SerialEM's help style: ``AlignTo buf [# # ...]``."""
        words = {"F": "#", "I": "#", "S": "text", "B": "buf", "V": "val", "C": "set"}
        parts = [words[k] for k in self.required]
        parts += [f"[{words[k]}]" for k in self.optional]
        if self.repeat:
            parts.append("...")
        return " ".join([self.name, *parts])


COMMANDS: dict[str, Command] = {}


def command(
    name: str, signature: str = "", *, aliases: tuple[str, ...] = (), always_tuple: bool = False
) -> Callable[[Handler], Handler]:
    """Register a handler for ``name`` (and its aliases) with an argument signature."""
    required, _, optional = signature.partition("|")
    repeat = signature.endswith("*")
    optional = optional.rstrip("*")
    if repeat and not optional:
        required = required.rstrip("*")
    for kind in required + optional:
        if kind not in "FISBVC":
            raise ValueError(f"bad argument kind {kind!r} in the signature of {name}")

    def register(handler: Handler) -> Handler:
        for each in (name, *aliases):
            if each in COMMANDS:
                raise ValueError(f"command {each} registered twice")
            COMMANDS[each] = Command(each, required, optional, repeat, handler, always_tuple)
        return handler

    return register


def _check(cmd: Command, args: tuple[Any, ...]) -> list[Any]:
    n_req, n_opt = len(cmd.required), len(cmd.optional)
    if len(args) < n_req:
        raise command_error(
            cmd.name, args, f"Too few arguments ({len(args)} given, {n_req} required: {cmd.usage})"
        )
    if len(args) > n_req + n_opt and not cmd.repeat:
        raise command_error(
            cmd.name,
            args,
            f"Too many arguments ({len(args)} given, at most {n_req + n_opt}: {cmd.usage})",
        )
    kinds = cmd.required + cmd.optional
    out: list[Any] = []
    for index, value in enumerate(args):
        kind = kinds[min(index, len(kinds) - 1)] if kinds else "V"
        out.append(_convert(cmd, args, index, kind, value))
    return out


def _convert(cmd: Command, args: tuple[Any, ...], index: int, kind: str, value: Any) -> Any:
    where = f"Argument {index + 1}"
    if kind == "F":
        if isinstance(value, numbers.Real) and not isinstance(value, bool | str):
            number = float(value)
            if not math.isfinite(number):
                raise command_error(cmd.name, args, f"{where} is not a finite number ({value})")
            return number
        raise command_error(cmd.name, args, f"{where} must be a number, not {value!r}")
    if kind == "I":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool | str):
            return int(value)
        raise command_error(cmd.name, args, f"{where} must be an integer, not {value!r}")
    if kind == "S":
        if isinstance(value, str):
            return value
        raise command_error(cmd.name, args, f"{where} must be a string, not {value!r}")
    if kind == "B":
        if isinstance(value, str) and len(value) == 1 and value.upper() in BUFFER_LETTERS:
            return value.upper()
        raise command_error(
            cmd.name, args, f"{where} must be a buffer letter A to T, not {value!r}"
        )
    if kind == "C":
        if isinstance(value, str) and len(value) == 1 and value.upper() in CAMERA_SETS:
            return CAMERA_SETS.index(value.upper())
        if isinstance(value, numbers.Integral) and 0 <= int(value) < len(CAMERA_SETS):
            return int(value)
        raise command_error(
            cmd.name,
            args,
            f"{where} must be a parameter set V, F, T, R, P, S or 0 to 5, not {value!r}",
        )
    # V: text or number
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value) if not isinstance(value, numbers.Integral) else int(value)
    raise command_error(cmd.name, args, f"{where} must be text or a number, not {value!r}")


def _as_returned(value: object) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"a reported value must be a number or text, not {value!r}")


def run_command(session: Session, name: str, args: tuple[Any, ...]) -> object:
    """Check the arguments, run the handler, and return what the module returns.

    Raises ``SEMerror`` (and ``SEMexited``) only; an unexpected failure inside a handler is
    reported as a ``SEMerror`` naming the command, with our exception chained for debugging.
    """
    cmd = COMMANDS[name]
    session.begin_command(name, args)
    converted = _check(cmd, args)
    try:
        reported = cmd.handler(session, *converted)
    except SEMerror:
        raise
    except session.passthrough_errors:
        raise
    except Exception as exc:  # our internals must never surface as a traceback of ours
        raise session.translate_error(name, args, exc) from exc
    values = tuple(_as_returned(v) for v in (reported or ()))
    session.end_command(values)
    if not values:
        return None
    if len(values) == 1 and not (cmd.always_tuple or session.all_tuples):
        return values[0]
    return values


# The commands a public parallel-tomography script collection uses (issue 11's list).
LISTED: tuple[str, ...] = (
    "AccumulateRecordDose",
    "AcquireToMatchBuffer",
    "AddBufToStackWindow",
    "AddImagePosAsNavPoint",
    "AddStagePointsAsPolygon",
    "AddStagePosAsNavPoint",
    "AddToAutodoc",
    "AdjustBeamTiltforIS",
    "AdjustStagePosForNav",
    "AlignBetweenMags",
    "AlignTo",
    "AllowFileOverwrite",
    "AreDewarsFilling",
    "AreaForCumulRecordDose",
    "CameraProperties",
    "CameraToSpecimenMatrix",
    "ChangeFocus",
    "ChangeItemColor",
    "ChangeItemDraw",
    "ChangeItemLabel",
    "ChangeItemNote",
    "ClearStatusLine",
    "CloseFile",
    "Copy",
    "CropCenterToSize",
    "CtfFind",
    "Ctfplotter",
    "Delay",
    "DeleteNavigatorItem",
    "DoesFileExist",
    "Echo",
    "EchoBreakLines",
    "EndAcquireAtItems",
    "EnterDefaultedNumber",
    "EnterString",
    "Eucentricity",
    "Exit",
    "G",
    "GetNavGroupImageCoords",
    "GetNavGroupStageCoords",
    "GetUniqueNavID",
    "GetVariable",
    "GoToLowDoseArea",
    "ISToSpecimenMatrix",
    "ImageConditions",
    "ImageProperties",
    "ImageShiftByMicrons",
    "ImageShiftByPixels",
    "ImageShiftByUnits",
    "IsFEGFlashingAdvised",
    "IsVariableDefined",
    "IsVersionAtLeast",
    "KeyBreak",
    "L",
    "LimitNextAutoAlign",
    "LoadOtherMap",
    "LongOperation",
    "MoveStageTo",
    "MoveToNavItem",
    "NavIndexItemDrawnOn",
    "NavIndexWithLabel",
    "NavIndexWithNote",
    "NewMap",
    "NextFEGFlashHighTemp",
    "NoMessageBoxOnError",
    "OKBox",
    "OpenNewFile",
    "OpenOldFile",
    "Pause",
    "ProgramTimeStamps",
    "R",
    "ReadFile",
    "ReadNavFile",
    "ReadOtherFile",
    "RealignToOtherItem",
    "ReduceImage",
    "RefineZLP",
    "ReportAlignShift",
    "ReportAutoFocus",
    "ReportAxisPosition",
    "ReportCameraProperty",
    "ReportClock",
    "ReportColumnOrGunValve",
    "ReportComaVsISmatrix",
    "ReportCurrentBuffer",
    "ReportDefocus",
    "ReportDirectory",
    "ReportExposure",
    "ReportFileNumber",
    "ReportFileZsize",
    "ReportFocusDrift",
    "ReportFrameSavingPath",
    "ReportGroupStatus",
    "ReportISforBufferShift",
    "ReportIfNavAcquiring",
    "ReportIfNavOpen",
    "ReportIlluminatedArea",
    "ReportImageShift",
    "ReportItemAcquire",
    "ReportLDDefocusOffset",
    "ReportLastFrameFile",
    "ReportMag",
    "ReportMeanCounts",
    "ReportNavFile",
    "ReportNavItem",
    "ReportNumTableItems",
    "ReportOtherItem",
    "ReportProperty",
    "ReportSpecimenShift",
    "ReportStageXYZ",
    "ReportTiltAngle",
    "ReportTiltAxisOffset",
    "ResetClock",
    "ResetImageShift",
    "RestoreBeamTilt",
    "RestoreCameraSet",
    "RestoreLowDoseParams",
    "S",
    "SaveLog",
    "SaveLogOpenNew",
    "SaveNavigator",
    "SaveSettings",
    "Search",
    "SetBinning",
    "SetCameraArea",
    "SetColumnOrGunValve",
    "SetDefocus",
    "SetExposure",
    "SetFrameBaseName",
    "SetFrameNameFormat",
    "SetImageShift",
    "SetItemAcquire",
    "SetMag",
    "SetNewFileType",
    "SetNextLogOutputStyle",
    "SetPersistentVar",
    "SetProperty",
    "SetStatusLine",
    "SetTargetDefocus",
    "SetTiltAxisOffset",
    "SetUserSetting",
    "SetVariable",
    "SkipAcquiringNavItem",
    "SnapshotToFile",
    "SpecimenToCameraMatrix",
    "SpecimenToISMatrix",
    "SpecimenToStageMatrix",
    "SuppressReports",
    "TiltBy",
    "TiltTo",
    "UpdateItemZ",
    "UpdateLowDoseParams",
    "UserSetDirectory",
    "V",
    "WriteAutodoc",
    "YesNoBox",
    "bufferImage",
)


@dataclass(frozen=True)
class Coverage:
    """How many of the listed commands the module implements."""

    implemented: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    @property
    def n_listed(self) -> int:
        """Commands in the list."""
        return len(self.implemented) + len(self.missing)

    def __str__(self) -> str:
        return f"{len(self.implemented)}/{self.n_listed} listed commands implemented"


MODULE_FUNCTIONS = ("bufferImage", "PutImageInBuffer", "ConnectToSEM", "ReturnAllValuesAsTuples")


def coverage() -> Coverage:
    """Implemented / listed commands (module functions such as ``bufferImage`` included)."""
    import tomopilot.instrument.twin_serialem.all_commands  # noqa: F401  (fills the table)

    known = set(COMMANDS) | set(MODULE_FUNCTIONS)
    implemented = tuple(n for n in LISTED if n in known)
    missing = tuple(n for n in LISTED if n not in known)
    extra = tuple(sorted(set(COMMANDS) - set(LISTED)))
    return Coverage(implemented, missing, extra)
