"""PACEtomo targets files (``<root>_tgts.txt``) and run files (``<root>_tgts_runXX.txt``).

The format (pacetomo.md §4.1) is plain text of ``key = value`` lines split on single spaces,
so values hold no spaces; blank lines separate blocks::

    _set tiltTargets = 0
    _bset previewAli = true

    _tgt = 001
    tgtfile = L03_tgt_001.mrc
    SSX = 0
    SSY = 0
    skip = False

    _geo = 1
    SSX = 2.5
    SSY = 4.0

- ``_set name = value`` overrides a numeric script setting (PACEtomo parses it as a float);
  ``_bset name = true|false|yes|no|on|off|1|0`` a boolean one.
- ``_spos = sec,pos`` (run files) is the resume position.
- ``_tgt = NNN`` opens a target; its keys follow (``tgtfile``, ``tsfile``, ``viewfile``,
  ``SSX``, ``SSY``, ``stageX``, ``stageY``, ``skip``, ``SPACEscore``, ``LDArea``, any other).
  In run files a target is followed by ``_pbr`` / ``_nbr`` branch blocks.
- ``_geo = n`` opens a geometry point (SSX, SSY relative to target 1 at 0°).

This module keeps the file's content as plain dataclasses with the values as written, checks
the syntax and the types of the known keys, and reports errors with the file and line. The
typed model is :class:`tomopilot.targeting.targets.TargetSet`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tomopilot.core.files import atomic_write_text
from tomopilot.core.input_files import input_boundary, read_input_text
from tomopilot.io.errors import FormatError

FLOAT_KEYS = frozenset({"SSX", "SSY", "stageX", "stageY", "SPACEscore"})
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True}
BOOL_WORDS.update({"false": False, "no": False, "off": False, "0": False})
SKIP_WORDS = {"True": True, "False": False, "true": True, "false": False, "1": True, "0": False}
BRANCH_KINDS = ("_pbr", "_nbr")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^\d+$")


class TargetsFormatError(FormatError):
    """A targets or run file is malformed (the message names the file and line)."""


@dataclass
class SettingLine:
    """A ``_set`` (numeric) or ``_bset`` (boolean) override, value as written."""

    name: str
    value: str
    boolean: bool = False


@dataclass
class KeyBlock:
    """A block opened by ``_tgt``/``_geo``/``_pbr``/``_nbr``: its number and its entries."""

    number: str
    entries: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        """The value of ``key``, or ``None``."""
        return next((v for k, v in self.entries if k == key), None)


@dataclass
class TargetBlock(KeyBlock):
    """A ``_tgt`` block and, in run files, its branch blocks (``_pbr``, ``_nbr``)."""

    branches: dict[str, KeyBlock] = field(default_factory=dict)


@dataclass
class TargetsFileData:
    """Everything in a targets or run file, values as written."""

    settings: list[SettingLine] = field(default_factory=list)
    spos: str | None = None
    targets: list[TargetBlock] = field(default_factory=list)
    geo_points: list[KeyBlock] = field(default_factory=list)


def parse_float(
    text: str, *, what: str, path: Path | None = None, line: int | None = None
) -> float:
    """A finite float from ``text``, or a :class:`TargetsFormatError` naming ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise TargetsFormatError(
            f"{what} must be a number, not {text!r}", path=path, line=line
        ) from None
    if not math.isfinite(value):
        raise TargetsFormatError(f"{what} must be finite, not {text!r}", path=path, line=line)
    return value


def parse_bool(text: str, *, what: str, path: Path | None = None, line: int | None = None) -> bool:
    """A boolean in PACEtomo's spellings (``True``/``false``/``yes``/``on``/``1`` ...)."""
    word = text.lower()
    if word not in BOOL_WORDS:
        raise TargetsFormatError(
            f"{what} must be true or false, not {text!r}", path=path, line=line
        )
    return BOOL_WORDS[word]


def _check_value(key: str, value: str, path: Path | None, line: int) -> None:
    if key in FLOAT_KEYS:
        parse_float(value, what=key, path=path, line=line)
    elif key == "skip" and value not in SKIP_WORDS:
        raise TargetsFormatError(f"skip must be True or False, not {value!r}", path=path, line=line)


def parse_targets_text(text: str, path: Path | str | None = None) -> TargetsFileData:
    """Parse a targets or run file.

    Raises
    ------
    TargetsFormatError
        For a line that is not ``key = value`` (or ``_set name = value``), a key outside any
        block, a block number that is not a number, a repeated key in a block, or a value of
        the wrong type for a known key.
    """
    where = Path(path) if path is not None else None
    data = TargetsFileData()
    block: KeyBlock | None = None
    target: TargetBlock | None = None
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        tokens = line.split(" ")
        if tokens[0] in ("_set", "_bset"):
            if len(tokens) != 4 or tokens[2] != "=" or not _NAME.match(tokens[1]):
                raise TargetsFormatError(
                    f"expected '{tokens[0]} name = value', got {line[:60]!r}",
                    path=where,
                    line=number,
                )
            boolean = tokens[0] == "_bset"
            if boolean:
                parse_bool(tokens[3], what=f"_bset {tokens[1]}", path=where, line=number)
            else:
                parse_float(tokens[3], what=f"_set {tokens[1]}", path=where, line=number)
            data.settings.append(SettingLine(tokens[1], tokens[3], boolean))
            continue
        if len(tokens) != 3 or tokens[1] != "=":
            raise TargetsFormatError(
                f"expected 'key = value' (values hold no spaces), got {line[:60]!r}",
                path=where,
                line=number,
            )
        key, value = tokens[0], tokens[2]
        if key == "_spos":
            data.spos = value
            block = None
        elif key in ("_tgt", "_geo"):
            if not _NUMBER.match(value):
                raise TargetsFormatError(
                    f"{key} number must be digits, not {value!r}", path=where, line=number
                )
            if key == "_tgt":
                target = TargetBlock(value)
                data.targets.append(target)
                block = target
            else:
                block = KeyBlock(value)
                data.geo_points.append(block)
                target = None
        elif key in BRANCH_KINDS:
            if target is None:
                raise TargetsFormatError(
                    f"{key} block outside a _tgt block", path=where, line=number
                )
            block = KeyBlock(value)
            target.branches[key] = block
        else:
            if block is None:
                raise TargetsFormatError(
                    f"key {key!r} outside a _tgt or _geo block", path=where, line=number
                )
            if block.get(key) is not None:
                raise TargetsFormatError(
                    f"key {key!r} appears twice in one block", path=where, line=number
                )
            _check_value(key, value, where, number)
            block.entries.append((key, value))
    return data


def read_targets_file(path: Path | str) -> TargetsFileData:
    """Read a targets or run file (see :func:`parse_targets_text`)."""
    path = Path(path)
    text = read_input_text(path, what="targets", error=TargetsFormatError)
    with input_boundary(path, what="targets", error=TargetsFormatError):
        return parse_targets_text(text, path)


def format_targets(data: TargetsFileData) -> str:
    """The text of a targets file, as PACEtomo writes it."""
    blocks: list[list[str]] = []
    head = [f"{'_bset' if s.boolean else '_set'} {s.name} = {s.value}" for s in data.settings]
    if data.spos is not None:
        head.append(f"_spos = {data.spos}")
    if head:
        blocks.append(head)
    for target in data.targets:
        blocks.append([f"_tgt = {target.number}"] + [f"{k} = {v}" for k, v in target.entries])
        for kind in BRANCH_KINDS:
            if kind in target.branches:
                branch = target.branches[kind]
                blocks.append(
                    [f"{kind} = {branch.number}"] + [f"{k} = {v}" for k, v in branch.entries]
                )
    for geo in data.geo_points:
        blocks.append([f"_geo = {geo.number}"] + [f"{k} = {v}" for k, v in geo.entries])
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


def _check_writable(data: TargetsFileData) -> None:
    for setting in data.settings:
        if not _NAME.match(setting.name) or not setting.value or " " in setting.value:
            raise TargetsFormatError(
                f"setting {setting.name!r} = {setting.value!r} cannot be written"
            )
    blocks: list[KeyBlock] = [*data.targets, *data.geo_points]
    blocks += [b for t in data.targets for b in t.branches.values()]
    for block in blocks:
        for key, value in block.entries:
            if (
                not _NAME.match(key)
                or key.startswith("_")
                or not value
                or any(c.isspace() for c in value)
            ):
                raise TargetsFormatError(
                    f"entry {key!r} = {value!r} cannot be written (no spaces, no empty values)"
                )


def write_targets_file(path: Path | str, data: TargetsFileData) -> Path:
    """Write a targets file atomically (temporary file + rename), after checking every value.

    Raises
    ------
    TargetsFormatError
        If a key or value could not be read back (spaces, empty values); nothing is written.
    """
    _check_writable(data)
    return atomic_write_text(path, format_targets(data))
