"""Read a tilt series' mdoc for the archive, and match its sections to recorded exposures.

SerialEM and tomopilot both write mdocs; SerialEM's last section often lacks its closing blank
line, which tomopilot's strict parser reports as a torn tail. Such a tail is accepted here when
every line of it is a whole ``key = value`` item with a ``TiltAngle``; anything else is a torn
file and a :class:`TornRunFileError` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tomopilot.core.errors import TomopilotError
from tomopilot.io.errors import FormatError
from tomopilot.io.mdoc_writer import parse_mdoc

_ZVALUE = re.compile(r"\[ZValue\s*=\s*(-?\d+)\]\s*\Z")
_ITEM = re.compile(r"([A-Za-z][\w.\-]*)\s*=\s*(\S.*)\Z")


class ArchiveImportError(TomopilotError):
    """A run folder cannot be imported (nothing was written)."""


class TornRunFileError(ArchiveImportError):
    """A file of the run folder was cut short or is malformed."""


@dataclass
class MdocTable:
    """An mdoc's global items and its sections' items, in file order."""

    path: Path
    header: dict[str, str]
    sections: list[dict[str, str]]


def _tail_section(tail: str, path: Path, expected_z: int) -> dict[str, str] | None:
    lines = [line.strip() for line in tail.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return None
    first = _ZVALUE.match(lines[0])
    if first is None or int(first.group(1)) != expected_z:
        raise TornRunFileError(f"{path}: torn mdoc (the last section starts {lines[0]!r})")
    items: dict[str, str] = {}
    for line in lines[1:]:
        match = _ITEM.match(line)
        if match is None:
            raise TornRunFileError(f"{path}: torn mdoc (section {expected_z} ends in {line!r})")
        items[match.group(1)] = match.group(2).strip()
    if "TiltAngle" not in items:
        raise TornRunFileError(f"{path}: torn mdoc (section {expected_z} has no TiltAngle)")
    return items


def read_mdoc_table(path: Path) -> MdocTable:
    """Every section of ``path``.

    Raises
    ------
    TornRunFileError
        A section is cut short or a line is malformed (the message names file and line).
    """
    try:
        parsed = parse_mdoc(path)
    except FormatError as error:
        raise TornRunFileError(f"{path}: {error}") from error
    sections = [dict(section.items) for section in parsed.sections]
    if parsed.torn_tail:
        tail = _tail_section(parsed.torn_tail, path, len(sections))
        if tail is not None:
            sections.append(tail)
    for number, items in enumerate(sections):
        if "TiltAngle" not in items:
            raise TornRunFileError(f"{path}: section {number} has no TiltAngle")
        try:
            float(items["TiltAngle"])
        except ValueError:
            raise TornRunFileError(
                f"{path}: section {number}: TiltAngle {items['TiltAngle']!r} is not a number"
            ) from None
    return MdocTable(path, dict(parsed.header_items), sections)


def number(items: dict[str, str], key: str, index: int = 0) -> float | None:
    """The ``index``-th number of ``key`` (``None`` if absent or not a number)."""
    raw = items.get(key)
    if raw is None:
        return None
    parts = raw.split()
    if index >= len(parts):
        return None
    try:
        return float(parts[index])
    except ValueError:
        return None


def match_sections(recorded_tilts_deg: list[float], file_tilts_deg: list[float]) -> list[int]:
    """For each recorded tilt (acquisition order), its section in the file.

    The file may have been sorted by tilt after the run; each exposure takes the first unused
    section of the closest tilt, so equal tilts keep their order (the sort is stable).

    >>> match_sections([0.0, 3.0, -3.0, 6.0], [-3.0, 0.0, 3.0, 6.0])
    [1, 2, 0, 3]
    """
    used: set[int] = set()
    out = []
    for tilt in recorded_tilts_deg:
        best = None
        for index, candidate in enumerate(file_tilts_deg):
            if index in used:
                continue
            if best is None or abs(candidate - tilt) < abs(file_tilts_deg[best] - tilt) - 1e-6:
                best = index
        if best is None:
            out.append(-1)
            continue
        used.add(best)
        out.append(best)
    return out
