"""Navigator files: real SerialEM files round-trip byte for byte; ours re-read the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tomopilot.io.navigator import (
    NavDocument,
    NavEntry,
    NavigatorFormatError,
    NavSection,
    format_nav,
    parse_nav_text,
    read_nav,
    write_nav,
)
from tomopilot.io.navigator_xml import format_nav_xml, parse_nav_xml, write_nav_xml
from tomopilot.targeting.nav_items import MAP, POINT, POLYGON, group_points, nav_items

REAL = ("pyem_sort.nav", "pyem_tutorial1_nav1.nav", "pyserialem_nav.nav")


@pytest.mark.parametrize("name", REAL)
def test_real_files_round_trip_byte_for_byte(real_data: Path, name: str, tmp_path: Path) -> None:
    path = real_data / "nav" / name
    doc = read_nav(path)
    assert doc.version == "2.00"
    assert format_nav(doc).encode() == path.read_bytes()
    out = write_nav(tmp_path / name, doc)
    assert out.read_bytes() == path.read_bytes()
    assert read_nav(out) == doc


@pytest.mark.parametrize("name", REAL)
def test_real_files_through_xml(real_data: Path, name: str, tmp_path: Path) -> None:
    doc = read_nav(real_data / "nav" / name)
    xml = write_nav_xml(tmp_path / "x.nav", doc)
    again = read_nav(xml)  # recognised as XML by its first character
    assert again == doc
    assert format_nav(again).encode() == (real_data / "nav" / name).read_bytes()


def test_real_items_are_typed(real_data: Path) -> None:
    doc = read_nav(real_data / "nav" / "pyem_sort.nav")
    items = nav_items(doc)
    assert [i.item_type for i in items] == [MAP, POLYGON, MAP, POINT, POINT, POINT, POINT]
    montage, polygon = items[0], items[1]
    assert montage.is_montage and montage.map_file == "MMM_01.mrc"
    assert montage.stage_xyz_um == (75.8717, 11.681, -39.8515)
    assert polygon.drawn_id == montage.map_id and len(polygon.points_um) == 4
    acquire = [i.label for i in items if i.acquire]
    assert acquire == ["176", "000", "175", "175_nopx"]
    assert items[3].section.get("XYinPc") == "845.285 1361.29"
    group = group_points(read_nav(real_data / "nav" / "pyem_tutorial1_nav1.nav"), "cell1_pt1")
    assert len(group) == 20 and group[0].stage_xyz_um[:2] == (194.899, -299.917)


MALFORMED = [
    ("AdocVersion = 2.00\n\n[Item = 1\nType = 0\n", 3, "section header"),
    ("AdocVersion = 2.00\n\n[Item = 1]\nType 0\n", 4, "key = value"),
    ("[Item = 1]\nType = 0\n", 1, "AdocVersion"),
    ("AdocVersion = 2.00\n\n[Item = 1]\nType = 0\nType = 1\n", 5, "twice"),
    ("AdocVersion = 2.00\n\n[Item = 1]\nType = 0\nStageXYZ = 1 2\n", 5, "3 value"),
    ("AdocVersion = 2.00\n\n[Item = 1]\nType = zero\n", 4, "integer"),
    (
        "AdocVersion = 2.00\n\n[Item = 1]\nType = 1\nNumPts = 3\nPtsX = 1 2 3\nPtsY = 1 2\n",
        7,
        "NumPts",
    ),
]


@pytest.mark.parametrize(("text", "line", "words"), MALFORMED)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = tmp_path / "bad.nav"
    path.write_text(text)
    with pytest.raises(NavigatorFormatError) as info:
        read_nav(path)
    assert info.value.path == path and info.value.line == line
    assert f"{path}:{line}" in str(info.value) and words in str(info.value)


def test_malformed_xml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.nav"
    path.write_text(
        '<?xml version="1.0"?>\n<navigator>\n<PreData><AdocVersion>2.00</AdocVersion>'
        "</PreData>\n<Item><Type>0</Type></Item>\n</navigator>\n"
    )
    with pytest.raises(NavigatorFormatError) as info:
        read_nav(path)
    assert info.value.line == 4 and "name attribute" in str(info.value)
    path.write_text("<navigator>\n<PreData>\n<AdocVersion>2.00</AdocVersion>\n</navigator>\n")
    with pytest.raises(NavigatorFormatError) as info:
        read_nav(path)
    assert info.value.line == 4 and "XML syntax" in str(info.value)


_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)
_values = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30
).map(lambda s: s.strip())
_names = st.from_regex(r"[A-Za-z0-9_\-]{1,10}", fullmatch=True)


@st.composite
def documents(draw: st.DrawFn) -> NavDocument:
    def entries() -> list[NavEntry]:
        keys = draw(st.lists(_keys, max_size=6, unique=True))
        return [NavEntry(k, draw(_values)) for k in keys if k != "AdocVersion"]

    doc = NavDocument(
        globals=[NavEntry("AdocVersion", "2.00"), *entries()],
        newline=draw(st.sampled_from(["\n", "\r\n"])),
    )
    for _ in range(draw(st.integers(0, 4))):
        doc.sections.append(
            NavSection(draw(st.sampled_from(["Item", "MontParam"])), draw(_names), entries())
        )
    return doc


@given(documents())
def test_documents_round_trip(doc: NavDocument) -> None:
    text = format_nav(doc)
    assert parse_nav_text(text) == doc
    assert format_nav(parse_nav_text(text)) == text
    assert parse_nav_xml(format_nav_xml(doc)) == doc
