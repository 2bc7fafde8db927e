"""mdoc import on files from the field: frame-stack mdocs, and the fuzz-found bad values.

Every bad value must give a FormatError naming the file, the line and the key, never a
traceback from NumPy, pandas or the operating system.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tomopilot.io.errors import FormatError
from tomopilot.io.mdoc import tilt_series_from_mdoc
from tomopilot.io.mdoc_sections import read_mdoc_sections
from tomopilot.processing.inputs import load_tilt_series


def _tilt_series(tilts: tuple[float, ...] = (0.0, 3.0, -3.0)) -> str:
    lines = [
        "PixelSpacing = 5.4",
        "Voltage = 300",
        "",
        "[T = SerialEM: test   Tilt axis angle = 85.3]",
        "",
    ]
    for z, tilt in enumerate(tilts):
        lines += [
            f"[ZValue = {z}]",
            f"TiltAngle = {tilt}",
            "PixelSpacing = 5.4",
            "Binning = 4",
            "ExposureDose = 3",
            f"PriorRecordDose = {3 * z}",
            "TargetDefocus = -4",
            f"SubFramePath = D:\\data\\frames\\TS_01_{z:03d}_{tilt}.tif",
            "NumSubFrames = 8",
            f"DateTime = 30-Nov-15  15:2{z}:38",
            "",
        ]
    return "\r\n".join(lines)


def _write(tmp_path: Path, text: str | bytes, name: str = "TS_01.mrc.mdoc") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _replace_first(text: str, key: str, value: str) -> str:
    """``text`` with the first ``key = ...`` line of the first section given ``value``."""
    lines = text.split("\r\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("[ZValue"))
    for index, line in enumerate(lines):
        if index > first and line.startswith(f"{key} ="):
            lines[index] = f"{key} = {value}".rstrip() if value else f"{key} ="
            return "\r\n".join(lines)
    raise AssertionError(key)


def _line_of(text: str, key: str) -> int:
    """The line of ``key`` in the first section."""
    lines = text.split("\r\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("[ZValue"))
    return next(i + 1 for i, line in enumerate(lines) if i > first and line.startswith(f"{key} ="))


def test_a_good_synthetic_mdoc_imports(tmp_path: Path) -> None:
    imported = tilt_series_from_mdoc(_write(tmp_path, _tilt_series()))
    assert imported.pixel_size_a == pytest.approx(1.35)
    assert imported.voltage_kv == 300.0
    assert list(imported.tilts["rlnTomoNominalStageTiltAngle"]) == [0.0, 3.0, -3.0]
    assert list(imported.tilts["rlnMicrographPreExposure"]) == [0.0, 3.0, 6.0]
    assert list(imported.tilts["rlnTomoTiltMovieFrameCount"]) == [8, 8, 8]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PriorRecordDose", ""),
        ("PriorRecordDose", "lots"),
        ("NumSubFrames", ""),
        ("NumSubFrames", "eight"),
        ("NumSubFrames", "12345678901234567890"),
        ("NumSubFrames", "-3"),
        ("TiltAngle", ""),
        ("TiltAngle", "1e999"),
        ("TiltAngle", "nan"),
        ("TargetDefocus", "-4,5"),
        ("TargetDefocus", ""),
        ("SubFramePath", "D:\\frames\\a\0b.tif"),
        ("SubFramePath", "D:\\frames\\" + "a" * 300 + ".tif"),
        ("PixelSpacing", "-1"),
    ],
)
def test_bad_values_name_file_line_and_key(tmp_path: Path, key: str, value: str) -> None:
    text = _replace_first(_tilt_series(), key, value)
    line = _line_of(text, key)
    path = _write(tmp_path, text)
    with pytest.raises(FormatError) as caught:
        tilt_series_from_mdoc(path)
    error = caught.value
    assert error.path == path
    assert error.line == line
    assert error.field == key
    assert str(path) in str(error)


def test_latin1_mu_in_a_title_is_read(tmp_path: Path) -> None:
    text = _tilt_series().replace("SerialEM: test", "SerialEM: 2 \xb5m defocus").encode("latin-1")
    imported = tilt_series_from_mdoc(_write(tmp_path, text))
    assert len(imported.tilts) == 3


def test_a_line_that_is_not_key_value_is_named(tmp_path: Path) -> None:
    text = _tilt_series().replace("NumSubFrames = 8", "NumSubFrames 8", 1)
    path = _write(tmp_path, text)
    with pytest.raises(FormatError, match="key = value") as caught:
        tilt_series_from_mdoc(path)
    assert caught.value.line == _line_of(
        text.replace("NumSubFrames 8", "NumSubFrames = 8"), "NumSubFrames"
    )


def test_a_directory_is_named_as_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "TS_01.mdoc"
    folder.mkdir()
    with pytest.raises(FormatError, match="is a directory"):
        tilt_series_from_mdoc(folder)


_FRAME_STACK = "\r\n".join(
    [
        "T = SerialEM: Krios Camera -> 0:Ceta 1:K3         08-Oct-21  07:38:24    ",
        "Voltage = 300",
        "",
        "[FrameSet = 0]",
        "TiltAngle = 32.984",
        "ExposureDose = 7.65892",
        "PixelSpacing = 1.2827",
        "Binning = 0.5",
        "SubFramePath = X:\\session\\frames\\s_00993_33.0_Oct08_07.39.05.tif",
        "NumSubFrames = 12",
        "FrameDosesAndNumber = 0.63824 12",
        "DateTime = 08-Oct-21  07:39:08",
        "",
    ]
)


def test_frame_stack_mdoc_keeps_its_framesets_keys(tmp_path: Path) -> None:
    doc = read_mdoc_sections(_write(tmp_path, _FRAME_STACK, "s_00993.tif.mdoc"))
    assert doc.kind == "frame stack"
    frame = doc.frame_sets[0]
    assert frame["PixelSpacing"].text == "1.2827"  # mdocfile drops FrameSet keys
    assert frame["NumSubFrames"].line == 10


def test_frame_stack_mdoc_is_refused_saying_what_it_is(tmp_path: Path) -> None:
    path = _write(tmp_path, _FRAME_STACK, "s_00993.tif.mdoc")
    with pytest.raises(FormatError, match="frame-stack mdoc") as caught:
        tilt_series_from_mdoc(path)
    assert "s_00993_33.0" in str(caught.value) and caught.value.line == 4


def test_frame_tilt_series_is_refused_saying_what_it_is(tmp_path: Path) -> None:
    steps = "".join(f"[ZValue = {z}]\r\nTiltAngle = {z * 2}\r\n\r\n" for z in range(5))
    path = _write(tmp_path, _FRAME_STACK + "\r\n" + steps, "frame_ts.tif.mdoc")
    with pytest.raises(FormatError, match=r"frame tilt series.*5 \[ZValue\] steps"):
        tilt_series_from_mdoc(path)


def test_real_frame_stack_mdoc_is_refused(real_data: Path) -> None:
    path = real_data / "mdoc" / "umass-krios_frame_set_single.mdoc"
    assert read_mdoc_sections(path).frame_sets[0]["PixelSpacing"].text == "1.2827"
    with pytest.raises(FormatError, match="frame-stack mdoc"):
        tilt_series_from_mdoc(path)


def test_folder_import_skips_frame_stack_mdocs_beside_a_tilt_series(tmp_path: Path) -> None:
    _write(tmp_path, _tilt_series())
    _write(tmp_path, _FRAME_STACK, "s_00993.tif.mdoc")
    tilt_series, _ = load_tilt_series(str(tmp_path), project_dir=tmp_path)
    assert tilt_series.names() == ["TS_01"]


def test_folder_of_only_frame_stack_mdocs_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, _FRAME_STACK, "s_00993.tif.mdoc")
    with pytest.raises(FormatError, match="frame-stack mdoc"):
        load_tilt_series(str(tmp_path), project_dir=tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "embl-krios-2015_TS_01.mrc.mdoc",
        "krios-d3645_sem4.1.0beta_pacetomo_L1_ts_001.mrc.mdoc",
        "tfs-tomo5_Position_10.mdoc",
    ],
)
def test_real_tilt_series_mdocs_are_tilt_series(real_data: Path, name: str) -> None:
    doc = read_mdoc_sections(real_data / "mdoc" / name)
    assert doc.kind == "tilt series"
    imported = tilt_series_from_mdoc(real_data / "mdoc" / name)
    assert len(imported.tilts) == len(doc.sections)
    assert imported.pixel_size_a is not None and imported.pixel_size_a > 0
