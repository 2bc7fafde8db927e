"""SerialEM Navigator files (``.nav``): the autodoc format, read and written without loss.

A Navigator file is an IMOD autodoc: global ``key = value`` lines (``AdocVersion = 2.00``,
``LastSavedAs``), then sections ``[Item = label]`` (and ``[MontParam = n]``, ``[StateParam =
n]`` ...) of ``key = value`` lines, one blank line before each section header. Values are kept
as the text SerialEM wrote (``StageXYZ = 75.8717 11.681 -39.8515``), in file order, so a file
read and written again is byte-identical: unknown keys, key order, number formatting and CRLF
line endings all survive. Typed access to items lives in :mod:`tomopilot.targeting.nav_items`.

The XML variant SerialEM can also save (``<navigator><PreData>...``) is read by
:func:`read_nav`, which recognises it by its first character (see
:mod:`tomopilot.io.navigator_xml`).

Examples
--------
>>> doc = parse_nav_text("AdocVersion = 2.00\\n\\n[Item = 1]\\nType = 0\\nStageXYZ = 1 2 3\\n")
>>> doc.sections[0].name, doc.sections[0].get("StageXYZ")
('1', '1 2 3')
>>> format_nav(doc) == "AdocVersion = 2.00\\n\\n[Item = 1]\\nType = 0\\nStageXYZ = 1 2 3\\n"
True
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tomopilot.core.files import atomic_write_text
from tomopilot.core.input_files import DEFAULT_MAX_TEXT_BYTES, input_boundary, read_input_bytes
from tomopilot.io.errors import FormatError

ADOC_VERSION = "2.00"
_HEADER = re.compile(r"^\[\s*([^\s=\]]+)\s*=\s*(.*?)\s*\]\s*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class NavigatorFormatError(FormatError):
    """A Navigator file is malformed (the message names the file and line)."""


@dataclass
class NavEntry:
    """One ``key = value`` line; ``value`` is the text after ``=`` as written.

    ``line`` is the 1-based line it was read from (``None`` for entries made in code).
    A comment line (``# ...``) is kept as an entry with ``key`` ``"#"`` and the whole line
    as ``value``.
    """

    key: str
    value: str
    line: int | None = field(default=None, compare=False)


@dataclass
class NavSection:
    """A section ``[kind = name]`` and its entries, in file order."""

    kind: str
    name: str
    entries: list[NavEntry] = field(default_factory=list)
    line: int | None = field(default=None, compare=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of the first entry ``key``, or ``default``."""
        for entry in self.entries:
            if entry.key == key:
                return entry.value
        return default

    def entry(self, key: str) -> NavEntry | None:
        """The first entry ``key``, or ``None``."""
        return next((e for e in self.entries if e.key == key), None)

    def set(self, key: str, value: str, *, before: str | None = None) -> None:
        """Replace the value of ``key``, or add it (before the entry ``before`` if given)."""
        existing = self.entry(key)
        if existing is not None:
            existing.value = value
            return
        new = NavEntry(key, value)
        if before is not None:
            for index, entry in enumerate(self.entries):
                if entry.key == before:
                    self.entries.insert(index, new)
                    return
        self.entries.append(new)

    def remove(self, key: str) -> None:
        """Drop every entry ``key``."""
        self.entries = [e for e in self.entries if e.key != key]

    def keys(self) -> list[str]:
        """The keys in file order (comments excluded)."""
        return [e.key for e in self.entries if e.key != "#"]


@dataclass
class NavDocument:
    """A whole Navigator file.

    Attributes
    ----------
    globals
        The entries before the first section (``AdocVersion``, ``LastSavedAs`` ...).
    sections
        Every section in file order.
    newline
        ``"\\r\\n"`` for files written on Windows (as SerialEM does), else ``"\\n"``.
    final_newline
        Whether the last line ends with a newline.
    """

    globals: list[NavEntry] = field(default_factory=list)
    sections: list[NavSection] = field(default_factory=list)
    newline: str = field(default="\n", compare=False)
    final_newline: bool = field(default=True, compare=False)

    def get_global(self, key: str) -> str | None:
        """A global value, or ``None``."""
        return next((e.value for e in self.globals if e.key == key), None)

    def set_global(self, key: str, value: str) -> None:
        """Replace or add a global value."""
        for entry in self.globals:
            if entry.key == key:
                entry.value = value
                return
        self.globals.append(NavEntry(key, value))

    @property
    def version(self) -> str | None:
        """The ``AdocVersion`` (``"2.00"`` for current SerialEM)."""
        return self.get_global("AdocVersion")

    def items(self) -> Iterator[NavSection]:
        """The ``[Item = ...]`` sections in order."""
        return (s for s in self.sections if s.kind == "Item")

    @classmethod
    def new(cls, last_saved_as: str | None = None) -> NavDocument:
        """An empty Navigator of the current autodoc version."""
        doc = cls(globals=[NavEntry("AdocVersion", ADOC_VERSION)])
        if last_saved_as is not None:
            doc.globals.append(NavEntry("LastSavedAs", last_saved_as))
        return doc


def _split_entry(text: str, number: int, path: Path | None) -> NavEntry:
    if "=" not in text:
        raise NavigatorFormatError(
            f"expected 'key = value', got {text.strip()[:60]!r}", path=path, line=number
        )
    key, _, value = text.partition("=")
    key = key.strip()
    if not _KEY.match(key):
        raise NavigatorFormatError(f"invalid key {key!r}", path=path, line=number)
    value = value[1:] if value.startswith(" ") else value
    return NavEntry(key, value, number)


def parse_nav_text(text: str, path: Path | str | None = None) -> NavDocument:
    """Parse the autodoc text of a Navigator file.

    Parameters
    ----------
    text
        The whole file.
    path
        The file it came from, for error messages.

    Raises
    ------
    NavigatorFormatError
        For a line that is neither a comment, a section header nor ``key = value``, a
        malformed header, a missing ``AdocVersion``, or a repeated key within one section.
    """
    where = Path(path) if path is not None else None
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.replace("\r\n", "\n").split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    doc = NavDocument(newline=newline, final_newline=final_newline)
    current: NavSection | None = None
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = NavEntry("#", raw, number)
            (current.entries if current is not None else doc.globals).append(comment)
            continue
        if stripped.startswith("["):
            match = _HEADER.match(stripped)
            if match is None or not match.group(2):
                raise NavigatorFormatError(
                    f"malformed section header {stripped[:60]!r} (expected '[Item = label]')",
                    path=where,
                    line=number,
                )
            current = NavSection(match.group(1), match.group(2), line=number)
            doc.sections.append(current)
            seen = set()
            continue
        entry = _split_entry(raw, number, where)
        if entry.key in seen:
            name = f"[{current.kind} = {current.name}]" if current is not None else "the globals"
            raise NavigatorFormatError(
                f"key {entry.key!r} appears twice in {name}", path=where, line=number
            )
        seen.add(entry.key)
        (current.entries if current is not None else doc.globals).append(entry)
    if doc.version is None:
        raise NavigatorFormatError(
            "not a Navigator autodoc: no 'AdocVersion' line before the first section",
            path=where,
            line=1,
        )
    return doc


_INT32_MAX = 2**31 - 1

_NUMBER_KEYS: dict[str, tuple[int, type[int] | type[float]]] = {
    "Type": (1, int),
    "NumPts": (1, int),
    "MapID": (1, int),
    "GroupID": (1, int),
    "DrawnID": (1, int),
    "StageXYZ": (3, float),
    "Regis": (1, int),
    "Acquire": (1, int),
}


def _numbers(
    entry: NavEntry, count: int | None, kind: type[int] | type[float], path: Path | None
) -> list[float]:
    parts = entry.value.split()
    noun = "integer" if kind is int else "number"
    try:
        values = [float(kind(p)) for p in parts]
    except (ValueError, OverflowError):
        shown = entry.value if len(entry.value) <= 40 else entry.value[:37] + "..."
        raise NavigatorFormatError(
            f"{entry.key} must be {noun}s, not {shown!r}", path=path, line=entry.line
        ) from None
    if kind is int and any(abs(v) > _INT32_MAX for v in values):
        raise NavigatorFormatError(
            f"{entry.key} must be a 32-bit integer as SerialEM writes it, not {entry.value[:40]!r}",
            path=path,
            line=entry.line,
        )
    if count is not None and len(values) != count:
        raise NavigatorFormatError(
            f"{entry.key} needs {count} value(s), got {len(values)}", path=path, line=entry.line
        )
    return values


def validate_nav(doc: NavDocument, path: Path | str | None = None) -> None:
    """Check the keys of every item that tools rely on (types, counts, point lists).

    Raises
    ------
    NavigatorFormatError
        Naming the file and the line of the first bad entry.
    """
    where = Path(path) if path is not None else None
    for section in doc.items():
        for key, (count, kind) in _NUMBER_KEYS.items():
            entry = section.entry(key)
            if entry is not None:
                _numbers(entry, count, kind, where)
        n_entry = section.entry("NumPts")
        for key in ("PtsX", "PtsY"):
            entry = section.entry(key)
            if entry is None:
                continue
            values = _numbers(entry, None, float, where)
            if n_entry is not None and len(values) != int(n_entry.value):
                raise NavigatorFormatError(
                    f"{key} has {len(values)} values but NumPts = {n_entry.value}",
                    path=where,
                    line=entry.line,
                )
        if all(section.entry(k) is None for k in ("Type", "CoordsInMap", "StageXYZ")):
            raise NavigatorFormatError(
                f"item {section.name!r} has neither Type nor StageXYZ",
                path=where,
                line=section.line,
            )


def format_nav(doc: NavDocument) -> str:
    """The autodoc text of ``doc``, as SerialEM writes it."""
    out: list[str] = []

    def put(entry: NavEntry) -> None:
        out.append(entry.value if entry.key == "#" else f"{entry.key} = {entry.value}")

    for entry in doc.globals:
        put(entry)
    for section in doc.sections:
        out.append("")
        out.append(f"[{section.kind} = {section.name}]")
        for entry in section.entries:
            put(entry)
    text = doc.newline.join(out)
    return text + doc.newline if doc.final_newline else text


def _looks_like_xml(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("<")


def read_nav(path: Path | str, *, validate: bool = True) -> NavDocument:
    """Read a Navigator file, autodoc or XML, and (by default) check its items' keys.

    Raises
    ------
    NavigatorFormatError
        If the file is missing, a directory, unreadable or malformed (the message names the
        file and line).
    """
    path = Path(path)
    raw = read_input_bytes(
        path, what="Navigator", error=NavigatorFormatError, max_bytes=DEFAULT_MAX_TEXT_BYTES
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # SerialEM writes the Windows code page
    with input_boundary(path, what="Navigator", error=NavigatorFormatError):
        if _looks_like_xml(text):
            from tomopilot.io.navigator_xml import parse_nav_xml

            doc = parse_nav_xml(text, path)
        else:
            doc = parse_nav_text(text, path)
        if validate:
            validate_nav(doc, path)
    return doc


def write_nav(path: Path | str, doc: NavDocument) -> Path:
    """Write ``doc`` as an autodoc Navigator file, atomically (temporary file + rename)."""
    return atomic_write_text(path, format_nav(doc))
