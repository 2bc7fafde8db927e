"""Crash-safe writing of SerialEM-style tilt-series ``.mdoc`` files.

The file is created with its global keys and titles in one atomic write; each section is then
appended as one write followed by fsync. Every section ends with a blank line, so a section
cut short by a crash (no closing blank line, or a last line without its line end) is told
apart from a complete one. :func:`parse_mdoc` reads our own files back, separating the
complete sections from such a torn tail; :func:`repair_mdoc` keeps exactly the first *n*
sections, rewriting the file atomically. Formatting lives in :mod:`tomopilot.io.mdoc_format`.

Examples
--------
>>> import tempfile, pathlib
>>> from tomopilot.io.mdoc_format import MdocHeader, MdocSection
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ts.mrc.mdoc"
>>> header = MdocHeader(pixel_spacing_a=2.5, image_file="ts.mrc", image_size_xy=(6, 4),
...                     data_mode=1, titles=("SerialEM: twin",))
>>> writer = MdocWriter(path, header)
>>> writer.append(MdocSection(tilt_angle_deg=3.0))
0
>>> parse_mdoc(path).sections[0].items["TiltAngle"]
'3'
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tomopilot.core.files import atomic_write_bytes
from tomopilot.io.errors import FormatError, TruncatedFileError
from tomopilot.io.mdoc_format import MdocHeader, MdocSection, Newline

__all__ = [
    "CorruptMdocError",
    "MdocHeader",
    "MdocSection",
    "MdocSectionText",
    "MdocWriter",
    "ParsedMdoc",
    "TornMdocError",
    "mdoc_section_count",
    "parse_mdoc",
    "repair_mdoc",
]

_log = logging.getLogger(__name__)

_ZVALUE = re.compile(r"\[ZValue = (-?\d+)\]\Z")
_TITLE = re.compile(r"\[T = (.*)\]\Z")
_ITEM_KEY = re.compile(r"[A-Za-z][\w.\-]*\Z")
_ENCODING = "utf-8"


class CorruptMdocError(FormatError):
    """An mdoc file is not one this module wrote, or was altered beyond a torn last section."""


class TornMdocError(CorruptMdocError):
    """An mdoc file ends in a section cut short by a crash (repair it first)."""


@dataclass
class MdocSectionText:
    """One complete section as stored: its ZValue, items in order and exact text."""

    z_value: int
    items: dict[str, str]
    text: str

    def renumbered(self, z_value: int, newline: Newline) -> str:
        """The section's text with another ZValue, every other byte unchanged."""
        first_end = self.text.index(newline)
        return f"[ZValue = {z_value}]" + self.text[first_end:]


@dataclass
class ParsedMdoc:
    """An mdoc file split into its header, complete sections and torn tail.

    Attributes
    ----------
    path
        The file read.
    newline
        ``"\\r\\n"`` or ``"\\n"``, as the file uses.
    header_text
        Global keys and titles, verbatim, up to the first section.
    header_items, titles
        The global ``key: value`` pairs and title texts.
    sections
        Complete sections in file order.
    torn_tail
        Text after the last complete section (empty unless a crash cut an append short).
    """

    path: Path
    newline: Newline
    header_text: str
    header_items: dict[str, str] = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)
    sections: list[MdocSectionText] = field(default_factory=list)
    torn_tail: str = ""

    def text(self, n_sections: int | None = None) -> str:
        """Header plus the first ``n_sections`` complete sections (all by default)."""
        kept = self.sections if n_sections is None else self.sections[:n_sections]
        return self.header_text + "".join(section.text for section in kept)


def _split_item(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition("=")
    key = key.strip()
    return (key, value.strip()) if sep and _ITEM_KEY.match(key) else None


def parse_mdoc(path: Path | str) -> ParsedMdoc:
    """Read an mdoc file written by :class:`MdocWriter` (or a crash in the middle of one).

    Raises
    ------
    CorruptMdocError
        If a line before the tail is malformed, ZValues are not 0, 1, 2 ... in order, or a
        section other than the last lacks its closing blank line.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptMdocError("mdoc file not found", path=path)
    text = path.read_bytes().decode(_ENCODING, errors="surrogateescape")
    newline: Newline = "\r\n" if "\r\n" in text else "\n"
    # Lines end at "\n" only (str.splitlines would also split at form feeds and the like).
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    offset, index = 0, 0
    parsed = ParsedMdoc(path, newline, "")
    while index < len(lines) and not lines[index].startswith("[ZValue"):
        line = lines[index]
        if not line.endswith("\n"):  # a torn start of section 0
            break
        body = line.rstrip("\r\n")
        title = _TITLE.match(body)
        if title:
            parsed.titles.append(title.group(1))
        elif body:
            item = _split_item(body)
            if item is None:
                raise CorruptMdocError(
                    f"not a 'key = value' line: {body!r}", path=path, line=index + 1
                )
            parsed.header_items[item[0]] = item[1]
        offset += len(line)
        index += 1
    parsed.header_text = text[:offset]
    while index < len(lines):
        start, start_index = offset, index
        section = _read_section(lines, index, path, expected_z=len(parsed.sections))
        if section is None:
            parsed.torn_tail = text[start:]
            break
        items, index = section
        offset += sum(len(line) for line in lines[start_index:index])
        parsed.sections.append(MdocSectionText(len(parsed.sections), items, text[start:offset]))
    return parsed


def _read_section(
    lines: list[str], index: int, path: Path, expected_z: int
) -> tuple[dict[str, str], int] | None:
    """Parse the section starting at ``lines[index]``; ``None`` if it is the torn tail."""
    first = lines[index]
    match = _ZVALUE.match(first.rstrip("\r\n"))
    if not first.endswith("\n"):
        return None
    if match is None:
        raise CorruptMdocError(
            f"expected a [ZValue] line, got {first!r}", path=path, line=index + 1
        )
    if int(match.group(1)) != expected_z:
        raise CorruptMdocError(
            f"section {expected_z} is numbered ZValue = {match.group(1)}", path=path, line=index + 1
        )
    items: dict[str, str] = {}
    for number in range(index + 1, len(lines)):
        line = lines[number]
        if not line.endswith("\n"):
            return None
        body = line.rstrip("\r\n")
        if not body:
            return items, number + 1
        item = _split_item(body)
        if item is None:
            raise CorruptMdocError(
                f"not a 'key = value' line: {body!r}", path=path, line=number + 1
            )
        items[item[0]] = item[1]
    return None


def written_by_tomopilot(parsed: ParsedMdoc) -> bool:
    """True when the file's ``Version`` key is the one :class:`MdocWriter` writes."""
    return parsed.header_items.get("Version", "").startswith("tomopilot")


def _refuse_foreign(parsed: ParsedMdoc) -> None:
    """Only our own files can be torn: another program's file is not blamed on a crash."""
    if written_by_tomopilot(parsed):
        return
    version = parsed.header_items.get("Version")
    writer = f"Version = {version}" if version else "no tomopilot Version key"
    raise CorruptMdocError(
        f"this mdoc was not written by tomopilot ({writer}): its last section ends without the "
        "blank line tomopilot writes after every section (SerialEM writes files that way). "
        "tomopilot continues and repairs only mdocs it wrote itself",
        path=parsed.path,
    )


class MdocWriter:
    """Append ``[ZValue]`` sections to a tilt-series mdoc, each durable before returning.

    Parameters
    ----------
    path
        The mdoc file (``<stack>.mrc.mdoc``). Created with the header in one atomic write;
        an existing file is refused: continue it with :meth:`open`.
    header
        Global keys and titles.
    newline
        ``"\\n"`` (default) or ``"\\r\\n"`` as SerialEM writes on Windows.
    """

    def __init__(self, path: Path | str, header: MdocHeader, *, newline: Newline = "\n") -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; continue it with MdocWriter.open")
        self.newline: Newline = newline
        data = header.to_text(newline).encode(_ENCODING)
        atomic_write_bytes(self.path, data)
        self.n_sections = 0
        self._size = len(data)

    @classmethod
    def open(cls, path: Path | str, header: MdocHeader | None = None) -> MdocWriter:
        """Continue an mdoc file, checking it first.

        Parameters
        ----------
        path
            The mdoc file.
        header
            When given, the file's global keys and titles must be exactly these.

        Raises
        ------
        TornMdocError
            If the file ends in a torn section (call :func:`repair_mdoc` first).
        CorruptMdocError
            If the file is malformed or its header differs from ``header``.
        """
        parsed = parse_mdoc(path)
        if parsed.torn_tail:
            _refuse_foreign(parsed)
            raise TornMdocError(
                f"the file ends in an incomplete section after {len(parsed.sections)} complete "
                "ones (an append cut short by a crash); repair it first",
                path=path,
            )
        if header is not None and parsed.header_text != header.to_text(parsed.newline):
            for key, value in header.items():
                if parsed.header_items.get(key) != value:
                    raise CorruptMdocError(
                        f"header holds {parsed.header_items.get(key)!r}, expected {value!r}",
                        path=path,
                        field=key,
                    )
            raise CorruptMdocError("header titles differ from the expected ones", path=path)
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.newline = parsed.newline
        writer.n_sections = len(parsed.sections)
        writer._size = len(parsed.text().encode(_ENCODING, errors="surrogateescape"))
        return writer

    def append(self, section: MdocSection) -> int:
        """Append one section as the next ZValue; return its index once durable."""
        data = section.to_text(self.n_sections, self.newline).encode(_ENCODING)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            try:
                view, offset = memoryview(data), self._size
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, self._size)  # leave no torn section behind an error
                raise
        finally:
            os.close(fd)
        self._size += len(data)
        self.n_sections += 1
        return self.n_sections - 1


def repair_mdoc(path: Path | str, n_sections: int) -> MdocWriter:
    """Keep exactly the first ``n_sections`` complete sections, rewriting atomically.

    Sections beyond the committed count and a torn tail are dropped; the kept bytes are
    unchanged. Nothing is rewritten when the file already holds exactly that.

    Raises
    ------
    TruncatedFileError
        If the file holds fewer than ``n_sections`` complete sections (committed data lost).
    CorruptMdocError
        If the file is malformed before its tail.
    """
    path = Path(path)
    parsed = parse_mdoc(path)
    if parsed.torn_tail:
        _refuse_foreign(parsed)
    if len(parsed.sections) < n_sections:
        raise TruncatedFileError(
            f"{n_sections} sections were committed but only {len(parsed.sections)} are complete",
            path=path,
        )
    if len(parsed.sections) != n_sections or parsed.torn_tail:
        data = parsed.text(n_sections).encode(_ENCODING, errors="surrogateescape")
        atomic_write_bytes(path, data)
        _log.info(
            "%s: kept %d sections, dropped %d and %d characters of a torn one",
            path,
            n_sections,
            len(parsed.sections) - n_sections,
            len(parsed.torn_tail),
        )
    return MdocWriter.open(path)


def mdoc_section_count(path: Path | str) -> int:
    """Complete sections in an mdoc file (a torn last section is not counted)."""
    return len(parse_mdoc(path).sections)
