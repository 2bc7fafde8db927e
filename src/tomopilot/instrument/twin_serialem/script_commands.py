"""Script housekeeping: variables, properties and settings, dialogs, the log, the clock.

Dialogs are answered from the answers file (a prompt, or part of it, mapped to the answer) or
take their default: OK, Yes, the number or text offered. ``Pause`` answered "no" stops the script
as a user STOP would. ``KeyBreak`` answers 1 from the N-th call on when the answers give
``KeyBreak: N``, else 0 (nobody presses keys in an offline run).
"""

from __future__ import annotations

import json
import math

from tomopilot import __version__
from tomopilot.core.files import atomic_write_text
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMexited
from tomopilot.instrument.twin_serialem.session import BUILD_DATE, VERSION, Session, number_text

_UNITS_S = {"ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0}


def _text(value: object) -> str:
    return number_text(value) if isinstance(value, int | float) else str(value)


# -- variables, properties, settings -------------------------------------------------------------
@command("SetVariable", "SV")
def set_variable(session: Session, name: str, value: object) -> Reported:
    """Define a script variable (its value is kept as text, as in SerialEM)."""
    if not name or not (name[0].isalpha() or name[0] == "_") or not name.replace("_", "").isalnum():
        raise ValueError(f"{name!r} is not a valid variable name")
    session.variables[name] = _text(value)
    return None


@command("GetVariable", "S")
def get_variable(session: Session, name: str) -> Reported:
    """A variable's value as text (persistent variables included)."""
    if name in session.variables:
        return (session.variables[name],)
    if name in session.persistent:
        return (session.persistent[name],)
    raise ValueError(f"Variable {name} is not defined")


@command("IsVariableDefined", "S")
def is_variable_defined(session: Session, name: str) -> Reported:
    """1 if the variable exists."""
    return (1 if name in session.variables or name in session.persistent else 0,)


@command("SetPersistentVar", "SV")
def set_persistent_var(session: Session, name: str, value: object) -> Reported:
    """A variable that survives to the next run (kept in the run folder)."""
    set_variable(session, name, value)
    session.persistent[name] = session.variables.pop(name)
    session.save_persistent()
    return None


@command("ReportProperty", "S")
def report_property(session: Session, name: str) -> Reported:
    """A property's value."""
    key = session.properties.key(name)
    if key is None:
        raise ValueError(f"{name} is not a property that can be reported")
    return (session.properties.values[key],)


@command("SetProperty", "SF")
def set_property(session: Session, name: str, value: float) -> Reported:
    """Set a property for the rest of the session."""
    key = session.properties.key(name)
    if key is None:
        raise ValueError(f"{name} is not a property that can be set")
    if key == "ImageShiftLimit" and value <= 0:
        raise ValueError(f"ImageShiftLimit must be positive, not {value}")
    session.properties.values[key] = value
    return None


@command("ReportUserSetting", "S")
def report_user_setting(session: Session, name: str) -> Reported:
    """A user setting's value."""
    key = session.settings.key(name)
    if key is None:
        raise ValueError(f"{name} is not a user setting that can be reported")
    return (session.settings.values[key],)


@command("SetUserSetting", "SF|I")
def set_user_setting(session: Session, name: str, value: float, keep: int = 0) -> Reported:
    """Set a user setting; reports the old value (restored at the end unless ``keep``)."""
    key = session.settings.key(name)
    if key is None:
        raise ValueError(f"{name} is not a user setting that can be set")
    old = session.settings.values[key]
    if not keep:
        session.settings.originals.setdefault(key, old)
    session.settings.values[key] = value
    return (old,)


@command("SaveSettings")
def save_settings(session: Session) -> Reported:
    """Write the user settings (to semrun_settings.json in the run folder)."""
    path = session.directory / "semrun_settings.json"
    atomic_write_text(path, json.dumps(session.settings.values, indent=1))
    return None


@command("IsVersionAtLeast", "I|I")
def is_version_at_least(session: Session, version: int, date: int = 0) -> Reported:
    """1 if the emulated SerialEM version (4.2.0, 2025-01-01) is at least this."""
    ok = version <= VERSION and (date == 0 or date <= BUILD_DATE)
    return (1 if ok else 0,)


@command("ProgramTimeStamps")
def program_time_stamps(session: Session) -> Reported:
    """Print the program version and the date and time."""
    session.log(
        f"tomopilot {__version__} twin-backed serialem module (SerialEM {VERSION // 10000}."
        f"{VERSION // 100 % 100}.{VERSION % 100} interface)  "
        f"{session.scope.clock.datetime():%d-%b-%Y  %H:%M:%S}"
    )
    return None


@command("ReturnAllValuesAsTuples", "|I")
def return_all_values_as_tuples(session: Session, on: int = 1) -> Reported:
    """Return even single values as tuples."""
    session.all_tuples = bool(on)
    return None


# -- dialogs ---------------------------------------------------------------------------------------
def _yes(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().casefold() in ("1", "y", "yes", "true", "ok")
    return bool(value)


@command("OKBox", "S")
def ok_box(session: Session, text: str) -> Reported:
    """A message box with an OK button."""
    session.answers.answer("OKBox", text, "OK")
    session.log(f"[OKBox] {text}")
    return None


@command("YesNoBox", "S")
def yes_no_box(session: Session, text: str) -> Reported:
    """A Yes/No question: 1 for yes (the default), 0 for no."""
    answer = _yes(session.answers.answer("YesNoBox", text, 1))
    session.log(f"[YesNoBox] {text} -> {'Yes' if answer else 'No'}")
    return (1 if answer else 0,)


@command("Pause", "|S")
def pause(session: Session, text: str = "") -> Reported:
    """Ask whether to go on; "no" stops the script like STOP."""
    answer = _yes(session.answers.answer("Pause", text, 1))
    session.log(f"[Pause] {text} -> {'continue' if answer else 'stop'}")
    if not answer:
        raise SEMexited("User STOP")
    return None


@command("EnterDefaultedNumber", "FIS")
def enter_defaulted_number(
    session: Session, default: float, decimals: int, prompt: str
) -> Reported:
    """Ask for a number (integer when ``decimals`` is −1); the default when unanswered."""
    raw = session.answers.answer("EnterDefaultedNumber", prompt, default)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"The answer {raw!r} to {prompt!r} is not a number") from exc
    if decimals < 0:
        value = float(round(value))
    session.log(f"[EnterDefaultedNumber] {prompt} -> {number_text(value)}")
    return (value,)


@command("EnterOneNumber", "S")
def enter_one_number(session: Session, prompt: str) -> Reported:
    """Ask for a number (0 when unanswered)."""
    return enter_defaulted_number(session, 0.0, 2, prompt)


@command("EnterString", "SS")
def enter_string(session: Session, variable: str, prompt: str) -> Reported:
    """Ask for text, stored in ``variable`` (empty when unanswered)."""
    answer = str(session.answers.answer("EnterString", prompt, ""))
    session.variables[variable] = answer
    session.log(f"[EnterString] {prompt} -> {answer}")
    return (answer,)


@command("KeyBreak", "|S")
def key_break(session: Session, key: str = "B") -> Reported:
    """1 if the break key was pressed (see the module docstring), else 0."""
    calls = session.extensions.get("key_break_calls", 0) + 1
    session.extensions["key_break_calls"] = calls
    at = session.answers.replies.get("KeyBreak")
    pressed = isinstance(at, int | float) and not isinstance(at, bool) and calls >= at
    return (1 if pressed else 0,)


@command("Exit", "|I")
def exit_(session: Session, code: int = 0) -> Reported:
    """End the script."""
    raise SEMexited("Exit")


# -- the log ---------------------------------------------------------------------------------------
@command("Echo", "|V*")
def echo(session: Session, *words: object) -> Reported:
    """Print to the log."""
    session.log(" ".join(_text(w) for w in words))
    return None


@command("EchoBreakLines", "|V*")
def echo_break_lines(session: Session, *words: object) -> Reported:
    """Print to the log, one line per ``\\n`` in the text."""
    for line in " ".join(_text(w) for w in words).replace("\\n", "\n").split("\n"):
        session.log(line)
    return None


@command("SetStatusLine", "IS")
def set_status_line(session: Session, line: int, text: str) -> Reported:
    """Text for one of the status lines (1 to 3)."""
    if not 1 <= line <= 3:
        raise ValueError(f"Status line must be 1 to 3, not {line}")
    session.status_lines[line] = text
    return None


@command("ClearStatusLine", "|I")
def clear_status_line(session: Session, line: int = 0) -> Reported:
    """Clear one status line, or all (0)."""
    if line == 0:
        session.status_lines.clear()
    else:
        session.status_lines.pop(line, None)
    return None


@command("SetNextLogOutputStyle", "I|I")
def set_next_log_output_style(session: Session, style: int, colour: int = 0) -> Reported:
    """Style (bold/italic/underline bits) and colour of the next log line."""
    session.next_log_style = (style, colour)
    return None


@command("SuppressReports", "|I")
def suppress_reports(session: Session, on: int = 1) -> Reported:
    """Stop printing what Report commands report (values are still returned)."""
    session.suppress_reports = bool(on)
    return None


@command("NoMessageBoxOnError", "|I")
def no_message_box_on_error(session: Session, on: int = 1) -> Reported:
    """Report errors to the log instead of a message box."""
    session.no_message_box = bool(on)
    return None


def _write_log(session: Session, name: str) -> str:
    path = session.resolve(name if name.endswith(".log") else name + ".log")
    atomic_write_text(path, "\n".join(session.log_lines) + "\n")
    return str(path)


@command("SaveLog", "|IS")
def save_log(session: Session, overwrite: int = 0, name: str = "") -> Reported:
    """Save the log (to ``name``, default semrun.log in the working directory)."""
    session.extensions["log_file"] = _write_log(
        session, name or session.extensions.get("log_file", "semrun.log")
    )
    return None


@command("SaveLogOpenNew", "|S")
def save_log_open_new(session: Session, name: str = "") -> Reported:
    """Save the log and start a new one (saved as ``name`` from then on)."""
    _write_log(session, session.extensions.get("log_file", "semrun.log"))
    session.log_lines.clear()
    if name:
        session.extensions["log_file"] = name
    return None


# -- the clock -------------------------------------------------------------------------------------
@command("Delay", "F|S")
def delay(session: Session, amount: float, units: str = "") -> Reported:
    """Wait (on the microscope's clock): ms/msec, s/sec or min; bare numbers > 60 are ms."""
    if amount < 0 or math.isinf(amount):
        raise ValueError(f"Delay {amount} must not be negative")
    if units:
        factor = _UNITS_S.get(units.strip().casefold())
        if factor is None:
            raise ValueError(f"Delay units must be msec, sec or min, not {units!r}")
    else:
        factor = 1.0 if amount <= 60 else 1e-3
    session.scope.clock.sleep(amount * factor)
    return None


@command("ReportClock")
def report_clock(session: Session) -> Reported:
    """Seconds since the last ResetClock."""
    return (session.now_s() - session.clock_zero_s,)


@command("ResetClock")
def reset_clock(session: Session) -> Reported:
    """Start ReportClock from 0."""
    session.clock_zero_s = session.now_s()
    return None


# -- frames ----------------------------------------------------------------------------------------
@command("SetFrameBaseName", "IIIS")
def set_frame_base_name(
    session: Session, use_folder: int, use_number: int, use_date: int, base: str
) -> Reported:
    """The base name of frame files (``<base>_<number>_<tilt>.tif``)."""
    session.extensions["frame_base"] = (use_folder, use_number, use_date, base)
    return None


@command("SetFrameNameFormat", "I")
def set_frame_name_format(session: Session, flags: int) -> Reported:
    """Which parts make up frame names (recorded)."""
    session.extensions["frame_format"] = flags
    return None


@command("ReportFrameSavingPath")
def report_frame_saving_path(session: Session) -> Reported:
    """Where frames are saved (the frames/ folder of the working directory)."""
    return (str(session.directory / "frames"),)


@command("ReportLastFrameFile")
def report_last_frame_file(session: Session) -> Reported:
    """The last frame file saved (after SetDoseFracParams with saving on)."""
    last = session.extensions.get("last_frame_file")
    if last is None:
        raise ValueError("No frames have been saved (SetDoseFracParams set 1 1 saves them)")
    return (last,)


@command("ReportDateTime")
def report_date_time(session: Session) -> Reported:
    """(YYYYMMDD, HHMM) of the microscope clock."""
    now = session.scope.clock.datetime()
    return int(f"{now:%Y%m%d}"), int(f"{now:%H%M}")
