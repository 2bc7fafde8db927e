"""A line-aware reader of SerialEM / Tomography 5 mdoc files, for importing them.

mdocfile's table is convenient but it keeps no line numbers and drops the keys of
``[FrameSet]`` sections, so the import reads the file itself: global ``key = value`` lines and
``[T = ...]`` titles, then sections ``[Kind = index]`` (``ZValue``, ``FrameSet``, ``MontSection``
...) of ``key = value`` lines, every value with its 1-based line. Values are converted by
:func:`number`, :func:`integer` and :func:`file_name`, whose errors name the file, line and key.

The kinds of mdoc a session leaves (:func:`mdoc_kind`):

``tilt series``
    ``[ZValue]`` sections, one per tilt image of a stack (``<TS>.mrc.mdoc``).
``frame stack``
    One ``[FrameSet = 0]`` section describing one movie, written next to the movie.
``frame tilt series``
    One ``[FrameSet]`` plus many ``[ZValue]`` steps: a whole tilt series recorded in one long
    exposure (SerialEM's frame tilt series).
``montage``
    ``[MontSection]`` (and piece ``[ZValue]`` sections with ``PieceCoordinates``): a map.

Examples
--------
>>> doc = parse_mdoc_sections("PixelSpacing = 2.5\\n[T = SerialEM: x]\\n\\n[ZValue = 0]\\n"
...                           "TiltAngle = 3.0\\n")
>>> doc.kind, doc.sections[0]["TiltAngle"].line, number(doc.sections[0], "TiltAngle")
('tilt series', 5, 3.0)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tomopilot.core.input_files import input_boundary, os_name_error, read_input_text
from tomopilot.io.errors import FormatError, MissingFieldError

__all__ = [
    "MdocDocument",
    "MdocSectionBlock",
    "MdocValue",
    "file_name",
    "integer",
    "number",
    "parse_mdoc_sections",
    "read_mdoc_sections",
]

_SECTION = re.compile(r"^\[\s*([A-Za-z][\w]*)\s*=\s*(.*?)\s*\]$")
_KEY = re.compile(r"^[A-Za-z_][\w.\-]*$")
_MAX_SUBFRAMES = 1_000_000


@dataclass(frozen=True)
class MdocValue:
    """One ``key = value`` line: the text after ``=`` (stripped) and its 1-based line."""

    key: str
    text: str
    line: int


@dataclass
class MdocSectionBlock:
    """A ``[Kind = index]`` section and its values (key → value; the last one wins)."""

    kind: str
    index: str
    line: int
    values: dict[str, MdocValue] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str) -> MdocValue:
        return self.values[key]

    def get(self, key: str) -> MdocValue | None:
        """The value of ``key``, or None."""
        return self.values.get(key)


@dataclass
class MdocDocument:
    """An mdoc file as written: global values, titles and sections in file order."""

    path: Path | None
    globals: MdocSectionBlock
    titles: list[str] = field(default_factory=list)
    blocks: list[MdocSectionBlock] = field(default_factory=list)

    @property
    def sections(self) -> list[MdocSectionBlock]:
        """The ``[ZValue]`` sections (the images of the stack)."""
        return [b for b in self.blocks if b.kind == "ZValue"]

    @property
    def frame_sets(self) -> list[MdocSectionBlock]:
        """The ``[FrameSet]`` sections (movies described by a frame-stack mdoc)."""
        return [b for b in self.blocks if b.kind == "FrameSet"]

    @property
    def kind(self) -> str:
        """``tilt series``, ``frame stack``, ``frame tilt series``, ``montage`` or ``empty``."""
        kinds = {b.kind for b in self.blocks}
        if "MontSection" in kinds or any("PieceCoordinates" in b for b in self.sections):
            return "montage"
        if "FrameSet" in kinds:
            return "frame tilt series" if self.sections else "frame stack"
        return "tilt series" if self.sections else "empty"

    def first(self, key: str) -> MdocValue | None:
        """``key`` from the first section holding it, else from the globals."""
        for block in self.blocks:
            if key in block:
                return block[key]
        return self.globals.get(key)


def parse_mdoc_sections(text: str, path: Path | str | None = None) -> MdocDocument:
    """Split mdoc text into globals, titles and sections, keeping line numbers.

    Raises
    ------
    FormatError
        For a line that is neither ``key = value``, a ``[Kind = index]`` header nor blank,
        naming the file and line.
    """
    where = Path(path) if path is not None else None
    doc = MdocDocument(where, MdocSectionBlock("global", "", 0))
    current = doc.globals
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _SECTION.match(line)
        if header is not None:
            kind, index = header.group(1), header.group(2)
            if kind == "T":
                doc.titles.append(index)
                continue
            current = MdocSectionBlock(kind, index, number)
            doc.blocks.append(current)
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise FormatError(
                f"not a 'key = value' line or a [Section = n] header: {shown!r}",
                path=where,
                line=number,
            )
        current.values[key] = MdocValue(key, value.strip(), number)
    return doc


def read_mdoc_sections(path: Path | str) -> MdocDocument:
    """Read an mdoc file (UTF-8, or latin-1 as Windows programs write it); see
    :func:`parse_mdoc_sections`."""
    path = Path(path)
    text = read_input_text(path, what="mdoc", error=FormatError)
    with input_boundary(path, what="mdoc", error=FormatError):
        return parse_mdoc_sections(text, path)


def _missing(doc: MdocDocument, block: MdocSectionBlock, key: str) -> MissingFieldError:
    return MissingFieldError(
        f"[{block.kind} = {block.index}] has no {key}",
        path=doc.path,
        line=block.line,
        field=key,
    )


def number(
    block: MdocSectionBlock,
    key: str,
    doc: MdocDocument | None = None,
    *,
    finite: bool = True,
) -> float:
    """The value of ``key`` in ``block`` as a float; errors name the file, line and key.

    ``number(block, key)`` needs the key present; check with ``key in block`` first for an
    optional one.
    """
    doc = doc or MdocDocument(None, block)
    value = block.get(key)
    if value is None:
        raise _missing(doc, block, key)
    first = value.text.split()[0] if value.text.split() else ""
    try:
        result = float(first)
    except (ValueError, OverflowError):
        shown = value.text if len(value.text) <= 40 else value.text[:37] + "..."
        raise FormatError(
            f"{key} must be a number, not {shown!r}", path=doc.path, line=value.line, field=key
        ) from None
    if finite and not math.isfinite(result):
        raise FormatError(
            f"{key} must be a finite number, not {value.text!r}",
            path=doc.path,
            line=value.line,
            field=key,
        )
    return result


def integer(
    block: MdocSectionBlock,
    key: str,
    doc: MdocDocument | None = None,
    *,
    low: int = 0,
    high: int = _MAX_SUBFRAMES,
) -> int:
    """The value of ``key`` as an integer in ``[low, high]``; errors name file, line and key."""
    doc = doc or MdocDocument(None, block)
    value = block.get(key)
    if value is None:
        raise _missing(doc, block, key)
    text = value.text.split()[0] if value.text.split() else ""
    if not re.fullmatch(r"[-+]?\d{1,18}", text):
        shown = value.text if len(value.text) <= 40 else value.text[:37] + "..."
        raise FormatError(
            f"{key} must be a whole number, not {shown!r}",
            path=doc.path,
            line=value.line,
            field=key,
        )
    result = int(text)
    if not low <= result <= high:
        raise FormatError(
            f"{key} = {result} is outside [{low}, {high}]",
            path=doc.path,
            line=value.line,
            field=key,
        )
    return result


def file_name(block: MdocSectionBlock, key: str, doc: MdocDocument | None = None) -> str:
    """The value of ``key`` as a path the operating system can hold (no NUL, no over-long
    component); errors name file, line and key."""
    doc = doc or MdocDocument(None, block)
    value = block.get(key)
    if value is None or not value.text:
        raise _missing(doc, block, key)
    problem = os_name_error(value.text)
    if problem is not None:
        raise FormatError(
            f"{key} cannot be a file name: it {problem}",
            path=doc.path,
            line=value.line,
            field=key,
        )
    return value.text
