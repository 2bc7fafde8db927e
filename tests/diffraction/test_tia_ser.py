"""TIA .ser series (TIA's default format) as input to the diffraction conversion."""

from __future__ import annotations

import struct
from pathlib import Path

import fabio
import numpy as np
import pytest

from tomopilot.io.errors import FormatError, TruncatedFileError, UnknownTypeCodeError
from tomopilot.io.smv import read_smv
from tomopilot.io.tia import read_tia
from tomopilot.io.tia_ser import read_emi_metadata, read_ser_frame, read_ser_header, write_ser
from tomopilot.processing.microed import SeriesMetadata, convert_tia_series, tia_to_mrc

METADATA = SeriesMetadata(
    voltage_kv=200.0,
    camera_length_mm=730.0,
    pixel_size_mm=0.028,
    start_angle_deg=-20.0,
    osc_range_deg=0.3,
    exposure_s=0.5,
    binning=2,
)


def _frames() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(-50, 4000, size=(3, 10, 14)).astype(np.int32)


@pytest.mark.parametrize("version", [0x0210, 0x0220])
def test_ser_header_and_frames(tmp_path: Path, version: int) -> None:
    frames = _frames()
    path = write_ser(tmp_path / "run_1.ser", frames, pixel_size_m=2.8e-5, version=version)
    raw = path.read_bytes()
    assert raw[:2] == b"II" and struct.unpack_from("<H", raw, 4)[0] == version
    assert struct.unpack_from("<i", raw, 6)[0] == 0x4122
    header = read_ser_header(path)
    assert (header.n_frames, header.shape, header.type_code) == (3, (10, 14), 6)
    assert header.pixel_size_m == pytest.approx(2.8e-5)
    for index, frame in enumerate(frames):
        assert np.array_equal(read_ser_frame(path, index), frame)


def test_convert_reads_a_ser_series_frame_by_frame(tmp_path: Path) -> None:
    frames = _frames()
    path = write_ser(tmp_path / "tia" / "run_1.ser", frames, pixel_size_m=2.8e-5)
    out = tmp_path / "out"
    report = convert_tia_series([path], out, metadata=METADATA)
    assert len(report.frames) == 3
    offset = report.levels.offset if report.levels is not None else 0
    for index, frame in enumerate(frames):
        image = out / f"run_1_{index + 1:04d}.img"
        expected = np.clip(frame.astype(np.int64) + offset, 0, 65535)
        assert np.array_equal(read_smv(image).data, expected)
        assert np.array_equal(fabio.open(str(image)).data, expected)
    assert [f.osc_start_deg for f in report.frames] == pytest.approx([-20.0, -19.7, -19.4])


def test_a_ser_given_as_a_bin_names_what_it_is(tmp_path: Path) -> None:
    path = write_ser(tmp_path / "run_1.bin", _frames(), pixel_size_m=1e-5)
    with pytest.raises(UnknownTypeCodeError, match=r"TIA \.ser series"):
        read_tia(path)
    assert len(tia_to_mrc([path], tmp_path / "out", metadata=METADATA).frames) == 3


def test_spectrum_series_is_refused_for_what_it_is(tmp_path: Path) -> None:
    path = write_ser(tmp_path / "s.ser", _frames(), pixel_size_m=1e-5)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<i", raw, 6, 0x4120)
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="1-D spectra"):
        read_ser_header(path)


def test_offsets_beyond_the_file_are_refused_before_reading(tmp_path: Path) -> None:
    path = write_ser(tmp_path / "s.ser", _frames(), pixel_size_m=1e-5)
    raw = path.read_bytes()
    (tmp_path / "cut.ser").write_bytes(raw[: len(raw) - 200])
    with pytest.raises(TruncatedFileError, match="frame 2"):
        read_ser_header(tmp_path / "cut.ser")
    huge = bytearray(raw)
    struct.pack_into("<ii", huge, 14, 10**6, 10**6)
    (tmp_path / "huge.ser").write_bytes(bytes(huge))
    with pytest.raises(TruncatedFileError, match="offset arrays"):
        read_ser_header(tmp_path / "huge.ser")


def test_frames_of_different_sizes_are_refused(tmp_path: Path) -> None:
    path = write_ser(tmp_path / "s.ser", _frames(), pixel_size_m=1e-5)
    raw = bytearray(path.read_bytes())
    second = read_ser_header(path).data_offsets[1]
    struct.pack_into("<ii", raw, second + 42, 7, 10)  # nx of frame 1: 14 -> 7
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="frame 1 is 7×10"):
        read_ser_header(path)


def test_emi_metadata_items(tmp_path: Path) -> None:
    path = tmp_path / "run.emi"
    path.write_bytes(
        b"\x00\x01binary<ObjectInfo><Microscope Conditions><Magnification>730</Magnification>"
        b"<Accelerating Voltage>200000</Accelerating Voltage></Microscope Conditions>"
        b"</ObjectInfo>\xb5\x00"
    )
    items = read_emi_metadata(path)
    assert items["Magnification"] == "730"
    assert items["Accelerating Voltage"] == "200000"


def test_cli_convert_takes_a_ser_series(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tomopilot.cli.main import app

    frames = _frames()
    path = write_ser(tmp_path / "tia" / "run_1.ser", frames, pixel_size_m=2.8e-5)
    out = tmp_path / "out"
    args = ["diffraction", "convert", str(path), "--out", str(out), "--voltage-kv", "200"]
    args += ["--camera-length-mm", "730", "--pixel-size-mm", "0.028"]
    args += ["--osc-range-deg", "0.3", "--start-angle-deg", "-45"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for index in range(3):
        image = read_smv(out / f"run_1_{index + 1:04d}.img")
        assert image.number("OSC_START") == pytest.approx(-45 + index * 0.3, abs=1e-9)
        assert (out / f"run_1_{index + 1:04d}.mrc").is_file()
