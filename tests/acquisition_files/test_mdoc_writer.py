"""SerialEM-style mdoc writing: values read back by mdocfile, SerialEM's key order and format."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path, PureWindowsPath

import pytest
from acqfiles_helpers import (
    REAL_EMBL_MDOC,
    REAL_PACETOMO_MDOC,
    keys_of,
    make_section,
    read_with_mdocfile,
    real_section_texts,
)

from tomopilot.io.errors import FormatError, TruncatedFileError
from tomopilot.io.mdoc_format import (
    MdocHeader,
    MdocSection,
    format_g,
    parse_serialem_datetime,
    serialem_datetime,
    serialem_time_stamp_s,
    serialem_title,
    tilt_axis_title,
)
from tomopilot.io.mdoc_writer import (
    CorruptMdocError,
    MdocWriter,
    TornMdocError,
    parse_mdoc,
    repair_mdoc,
)

WHEN = datetime(2023, 8, 11, 17, 44, 49)


def _header(newline_titles: bool = True) -> MdocHeader:
    titles = (
        serialem_title("Acquired on tomopilot twin", WHEN),
        tilt_axis_title(94.0, binning=1, spot_size=6, camera_index=0),
    )
    return MdocHeader(
        pixel_spacing_a=2.663,
        image_file="L1_ts_001.mrc",
        image_size_xy=(5760, 4092),
        data_mode=1,
        voltage_kv=300.0,
        titles=titles if newline_titles else (),
    )


def test_mdocfile_reads_back_the_applied_values(tmp_path: Path) -> None:
    path = tmp_path / "L1_ts_001.mrc.mdoc"
    writer = MdocWriter(path, _header())
    tilts = [0.0013, 3.0, -2.9987, -6.0]
    sections = [
        make_section(
            i,
            tilt,
            sub_frame_path=f"frames/L1_ts_001_tilt_{i:03d}_angle_{tilt:.1f}_Aug11_17.44.49.tif",
            num_sub_frames=14,
            frame_doses_and_number=((3.1 / 14, 14),),
            extra={"PixelShiftFromCenter": (1.25, -3.5), "Note": "text"},
        )
        for i, tilt in enumerate(tilts)
    ]
    for index, section in enumerate(sections):
        assert writer.append(section) == index
    table = read_with_mdocfile(path)
    assert table["ZValue"].tolist() == [0, 1, 2, 3]
    assert table["TiltAngle"].tolist() == pytest.approx(tilts, abs=1e-6)
    assert table["PriorRecordDose"].tolist() == pytest.approx([0.0, 3.1, 6.2, 9.3])
    assert table["ExposureDose"].tolist() == pytest.approx([3.1] * 4)
    for row, section in zip(table.itertuples(), sections, strict=True):
        assert row.StagePosition == pytest.approx(section.stage_position_um, abs=1e-4)
        assert row.Defocus == pytest.approx(section.defocus_um, abs=1e-5)
        assert row.TargetDefocus == pytest.approx(section.target_defocus_um)
        assert row.ImageShift == pytest.approx(section.image_shift_um, rel=1e-5)
        assert PureWindowsPath(row.SubFramePath).as_posix() == section.sub_frame_path
        assert row.NumSubFrames == 14
        assert row.FrameDosesAndNumber[0] == pytest.approx((3.1 / 14, 14), rel=1e-5)
        assert parse_serialem_datetime(row.DateTime) == section.date_time
        assert float(row.EucentricOffset) == section.eucentric_offset_um  # full precision
        assert [float(v) for v in row.SpecimenShift.split()] == list(section.specimen_shift_um)
        assert row.PixelShiftFromCenter == "1.25 -3.5" and row.Note == "text"
        assert bool(row.UsingCDS) and not bool(row.DividedBy2)
    assert table["Version"].iloc[0].startswith("tomopilot ")
    assert table["ImageFile"].iloc[0].name == "L1_ts_001.mrc"
    assert tuple(table["ImageSize"].iloc[0]) == (5760, 4092)
    assert table["PixelSpacing"].iloc[0] == pytest.approx(2.663)
    assert (
        table["titles"].iloc[0][1]
        == "[T = Tilt axis angle = 94.0, binning = 1  spot = 6  camera = 0]"
    )


def test_section_keys_follow_serialem_order_of_the_real_pacetomo_file(real_data: Path) -> None:
    real = real_section_texts(real_data / REAL_PACETOMO_MDOC)[0]
    ours = make_section(
        0,
        -0.00949884,
        min_max_mean=(0.0, 15247.0, 289.422),
        sub_frame_path="frames/x.tif",
        num_sub_frames=14,
        frame_doses_and_number=((0.0, 14),),
        uncropped_size=(-5760, -4092),
        rotation_and_flip=6,
        time_stamp_s=113935496,
    ).to_text(0)
    ours_keys = keys_of(ours)
    # PriorRecordDose (absent from this dose-uncalibrated file) sits where SerialEM puts it,
    # right after TargetDefocus; every other key is in the real file's order.
    assert [k for k in ours_keys if k != "PriorRecordDose"] == keys_of(real)
    assert ours_keys.index("PriorRecordDose") == ours_keys.index("TargetDefocus") + 1


def test_every_real_pacetomo_section_is_reproduced_byte_for_byte(real_data: Path) -> None:
    path = real_data / REAL_PACETOMO_MDOC
    raw = path.read_bytes().decode("utf-8")
    parsed = parse_mdoc(path)
    assert parsed.newline == "\r\n" and len(parsed.sections) == 40  # SerialEM ends w/o blank
    for section in parsed.sections:
        typed = MdocSection.from_items(section.items)
        assert typed.to_text(section.z_value, "\r\n") == section.text
    # The last section lacks only the closing blank line our writer adds.
    last = parsed.torn_tail
    typed_last = MdocSection.from_items(
        dict(line.split(" = ", 1) for line in last.split("\r\n")[1:-1])
    )
    assert raw.endswith(last) and typed_last.to_text(40, "\r\n") == last + "\r\n"
    header = MdocHeader(
        pixel_spacing_a=2.663,
        voltage_kv=300,
        version=parsed.header_items["Version"],
        image_file="L1_ts_001.mrc",
        image_size_xy=(5760, 4092),
        data_mode=1,
        titles=tuple(parsed.titles),
    )
    assert header.to_text("\r\n") == parsed.header_text
    first = parse_serialem_datetime(parsed.sections[0].items["DateTime"])
    assert first == datetime(2023, 8, 11, 17, 44, 56)
    assert serialem_datetime(first) == "11-Aug-2023  17:44:56"


def test_title_layout_matches_serialem(real_data: Path) -> None:
    ours = serialem_title("Acquired on tomopilot twin", WHEN)
    for name in (REAL_PACETOMO_MDOC, REAL_EMBL_MDOC):
        real_title = parse_mdoc(real_data / name).titles[0].rstrip()
        real_date = real_title[-19:]  # dd-Mon-yy  HH:MM:SS
        assert real_title.index(real_date) == ours.index("11-Aug-23") == 56
    assert ours == f"SerialEM: {'Acquired on tomopilot twin':<45} 11-Aug-23  17:44:49"
    assert tilt_axis_title(-86.72, binning=0.5, spot_size=8, camera_index=2) == (
        "Tilt axis angle = -86.7, binning = 0.5  spot = 8  camera = 2"
    )


def test_time_stamp_counts_real_seconds_from_2020_local(real_data: Path) -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time-zone database")
    items = parse_mdoc(real_data / REAL_PACETOMO_MDOC).sections[0].items
    when = parse_serialem_datetime(items["DateTime"]).replace(tzinfo=berlin)
    assert serialem_time_stamp_s(when) == int(items["TimeStamp"])


def test_g_format_is_c_printf() -> None:
    for value in (0.000999877, 20.79361, 155.2874, -176.0, 1e-5, 123456789.0, -0.0, 0.5):
        assert format_g(value) == "%g" % value  # noqa: UP031 (C printf semantics)
    assert format_g(float("nan")) == "NaN"


def test_crlf_files_read_and_continue(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc.mdoc"
    writer = MdocWriter(path, _header(), newline="\r\n")
    writer.append(make_section(0, 0.0))
    again = MdocWriter.open(path, _header())
    assert again.newline == "\r\n" and again.append(make_section(1, 3.0)) == 1
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert read_with_mdocfile(path)["TiltAngle"].tolist() == [0.0, 3.0]


def test_open_checks_header_and_refuses_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc.mdoc"
    writer = MdocWriter(path, _header())
    writer.append(make_section(0, 0.0))
    other = MdocHeader(pixel_spacing_a=2.663, image_file="other.mrc", image_size_xy=(5760, 4092),
                       data_mode=1, voltage_kv=300.0, titles=_header().titles)  # fmt: skip
    with pytest.raises(CorruptMdocError, match=r"other\.mrc") as info:
        MdocWriter.open(path, other)
    assert info.value.field == "ImageFile" and info.value.path == path
    with path.open("ab") as handle:
        handle.write(b"[ZValue = 1]\nTiltAngle = 3")
    with pytest.raises(TornMdocError, match="after 1 complete"):
        MdocWriter.open(path)
    assert repair_mdoc(path, 1).n_sections == 1
    with pytest.raises(TruncatedFileError, match="only 1 are complete"):
        repair_mdoc(path, 2)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("[ZValue = 1]", "[ZValue = 2]"), "numbered ZValue = 2"),
        (lambda t: t.replace("TiltAngle = 3\n", "TiltAngle 3\n"), "not a 'key = value'"),
        (lambda t: t.replace("DataMode = 1\n", "DataMode\n"), "not a 'key = value'"),
        (lambda t: t.replace("\n\n[ZValue = 1]", "\n[ZValue = 1]"), "not a 'key = value'"),
    ],
)
def test_corrupt_mdoc_gives_a_typed_error_with_file_and_line(
    tmp_path: Path, edit: object, message: str
) -> None:
    path = tmp_path / "ts.mrc.mdoc"
    writer = MdocWriter(path, _header())
    writer.append(MdocSection(tilt_angle_deg=0.0))
    writer.append(MdocSection(tilt_angle_deg=3.0))
    writer.append(MdocSection(tilt_angle_deg=-3.0))
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises(CorruptMdocError, match=message) as info:
        MdocWriter.open(path)
    assert isinstance(info.value, FormatError) and info.value.line is not None
    assert f"{path}:{info.value.line}" in str(info.value)


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="extra mdoc key"):
        MdocSection(tilt_angle_deg=0.0, extra={"TiltAngle": 1.0})
    with pytest.raises(ValueError, match="extra mdoc key"):
        MdocSection(tilt_angle_deg=0.0, extra={"bad key": 1.0})
    with pytest.raises(ValueError, match="single line"):
        MdocSection(tilt_angle_deg=0.0, navigator_label="a\nb")
    with pytest.raises(ValueError, match="cannot contain '='"):
        MdocHeader(pixel_spacing_a=1, image_file="a.mrc", image_size_xy=(1, 1), data_mode=1,
                   version="x = y")  # fmt: skip
    with pytest.raises(ValueError, match="TiltAngle"):
        MdocSection.from_items({"Defocus": "-3"})
    with pytest.raises(ValueError, match="StageZ"):
        MdocSection.from_items({"TiltAngle": "0", "StageZ": "high"})
