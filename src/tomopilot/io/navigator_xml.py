"""The XML variant of SerialEM's Navigator file.

SerialEM can save a Navigator as XML instead of an autodoc::

    <?xml version="1.0" encoding="utf-8"?>
    <navigator>
      <PreData><AdocVersion>2.00</AdocVersion><LastSavedAs>C:\\x.nav</LastSavedAs></PreData>
      <Item name="12-A"><Color>2</Color><StageXYZ>75.8717 11.681 -39.8515</StageXYZ>...</Item>
    </navigator>

:func:`parse_nav_xml` reads it into the same :class:`~tomopilot.io.navigator.NavDocument` as the
autodoc reader (``PreData`` children become globals, every other element a section whose kind is
the tag and whose name is the ``name`` attribute), with line numbers from the XML parser.
:func:`format_nav_xml` writes that form back, for tools that want XML.
"""

from __future__ import annotations

from pathlib import Path
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from tomopilot.core.files import atomic_write_text
from tomopilot.io.navigator import NavDocument, NavEntry, NavigatorFormatError, NavSection


class _Builder:
    """Expat callbacks that assemble a NavDocument (depth 1 = sections, 2 = keys)."""

    def __init__(self, parser: expat.XMLParserType, path: Path | None) -> None:
        self.parser = parser
        self.path = path
        self.doc = NavDocument()
        self.depth = 0
        self.root_seen = False
        self.section: NavSection | None = None
        self.in_predata = False
        self.key: str | None = None
        self.key_line = 0
        self.text: list[str] = []

    def fail(self, message: str) -> NavigatorFormatError:
        return NavigatorFormatError(message, path=self.path, line=self.parser.CurrentLineNumber)

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if tag != "navigator":
                raise self.fail(f"root element is <{tag}>, expected <navigator>")
            self.root_seen = True
        elif self.depth == 2:
            if tag == "PreData":
                self.in_predata = True
                return
            name = attrs.get("name")
            if name is None:
                raise self.fail(f'<{tag}> has no name attribute (expected <{tag} name="...">)')
            self.section = NavSection(tag, name, line=self.parser.CurrentLineNumber)
            self.doc.sections.append(self.section)
        elif self.depth == 3:
            self.key = tag
            self.key_line = self.parser.CurrentLineNumber
            self.text = []
        else:
            raise self.fail(f"unexpected nested element <{tag}> inside <{self.key}>")

    def end(self, tag: str) -> None:
        if self.depth == 3 and self.key is not None:
            entry = NavEntry(self.key, "".join(self.text).strip(), self.key_line)
            target = self.doc.globals if self.in_predata else self.section
            if isinstance(target, NavSection):
                if target.entry(entry.key) is not None:
                    raise self.fail(f"key {entry.key!r} appears twice in <{target.kind}>")
                target.entries.append(entry)
            elif target is not None:
                target.append(entry)
            self.key = None
        elif self.depth == 2:
            self.in_predata = False
            self.section = None
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.depth == 3:
            self.text.append(text)
        elif text.strip():
            raise self.fail(f"unexpected text {text.strip()[:40]!r} outside a key element")


def parse_nav_xml(text: str, path: Path | str | None = None) -> NavDocument:
    """Parse the XML form of a Navigator file.

    Raises
    ------
    NavigatorFormatError
        For XML syntax errors and for documents that are not a navigator (file and line named).
    """
    where = Path(path) if path is not None else None
    parser = expat.ParserCreate()
    builder = _Builder(parser, where)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text.lstrip("\ufeff"), True)
    except expat.ExpatError as exc:
        raise NavigatorFormatError(
            f"XML syntax error: {expat.errors.messages[exc.code]}", path=where, line=exc.lineno
        ) from None
    doc = builder.doc
    doc.newline = "\r\n" if "\r\n" in text else "\n"
    if doc.version is None:
        raise NavigatorFormatError(
            "not a Navigator: no <AdocVersion> in <PreData>", path=where, line=1
        )
    return doc


def format_nav_xml(doc: NavDocument) -> str:
    """The XML text of ``doc`` (comments are dropped: the XML form has none)."""
    nl = doc.newline
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<navigator>", "  <PreData>"]
    out += [f"    <{e.key}>{escape(e.value)}</{e.key}>" for e in doc.globals if e.key != "#"]
    out.append("  </PreData>")
    for section in doc.sections:
        out.append(f"  <{section.kind} name={quoteattr(section.name)}>")
        out += [
            f"    <{e.key}>{escape(e.value)}</{e.key}>" for e in section.entries if e.key != "#"
        ]
        out.append(f"  </{section.kind}>")
    out.append("</navigator>")
    return nl.join(out) + nl


def write_nav_xml(path: Path | str, doc: NavDocument) -> Path:
    """Write ``doc`` as an XML Navigator file, atomically."""
    return atomic_write_text(path, format_nav_xml(doc))
