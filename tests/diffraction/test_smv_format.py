"""SMV writer and reader: byte layout, dxtbx's recognition rules, and FabIO as a second reader."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import fabio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from microed_helpers import DXTBX_REQUIRED, dxtbx_style_header

from tomopilot.io.errors import (
    FormatError,
    MissingFieldError,
    SizeMismatchError,
    TruncatedFileError,
    UnknownTypeCodeError,
)
from tomopilot.io.smv import SMV_MAGIC, format_smv_header, read_smv, write_smv

REAL_SMV = "smv/TIMEPIX_SU_512-stdgoni_0001.img"

GEOMETRY: dict[str, str | int | float] = {
    "PIXEL_SIZE": 0.028,
    "BIN": "2x2",
    "DATE": "Tue Jun 04 10:11:12 2024",
    "TIME": 0.5,
    "DISTANCE": 730.0,
    "OSC_START": -30.15,
    "OSC_RANGE": 0.15,
    "PHI": -30.15,
    "WAVELENGTH": 0.025079340450548007,
    "BEAM_CENTER_X": 28.1,
    "BEAM_CENTER_Y": 29.3,
    "IMAGE_PEDESTAL": 1855.0,
    "LEGINON_OFFSET": 2000.0,
}


def test_layout_of_a_written_file(tmp_path: Path) -> None:
    data = np.arange(12 * 20, dtype=np.uint16).reshape(12, 20)
    path = write_smv(tmp_path / "frame.img", data, GEOMETRY)

    raw = path.read_bytes()
    assert raw[:15] == SMV_MAGIC == b"{\nHEADER_BYTES="
    assert raw[15:22] == b"  512;\n"  # width-5 value, as ADSC writes it
    assert len(raw) == 512 + 2 * data.size
    assert b"\n}\n" in raw[:512]
    assert np.array_equal(np.frombuffer(raw[512:], "<u2").reshape(12, 20), data)

    size, header = dxtbx_style_header(path)
    assert size == 512
    assert all(key in header for key in DXTBX_REQUIRED)
    assert (header["SIZE1"], header["SIZE2"]) == ("20", "12")  # SIZE1 = columns (fast axis)
    assert (header["DIM"], header["TYPE"], header["BYTE_ORDER"]) == (
        "2",
        "unsigned_short",
        "little_endian",
    )
    assert header["WAVELENGTH"] == "0.0250793404505"  # 12 significant digits
    assert header["IMAGE_PEDESTAL"] == "1855.0"


def test_fabio_reads_the_same_pixels_and_header(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 65536, size=(33, 17), dtype=np.uint16)
    path = write_smv(tmp_path / "frame.img", data, GEOMETRY)

    image = fabio.open(str(path))
    ours = read_smv(path)

    assert type(image).__name__ == "DtrekImage"
    assert image.data.dtype == np.uint16
    assert np.array_equal(image.data, data)
    assert np.array_equal(ours.data, data)
    assert dict(image.header) == ours.header
    assert {k: float(ours.header[k]) for k in ("OSC_START", "OSC_RANGE", "DISTANCE")} == {
        "OSC_START": -30.15,
        "OSC_RANGE": 0.15,
        "DISTANCE": 730.0,
    }


def test_long_header_grows_to_the_next_multiple_of_512(tmp_path: Path) -> None:
    extra = {f"NOTE_{i:03d}": f"value number {i}" for i in range(40)}
    data = np.full((4, 6), 7, np.uint16)
    path = write_smv(tmp_path / "long.img", data, GEOMETRY | extra)

    size, header = dxtbx_style_header(path)
    assert size == 1536
    assert header["NOTE_039"] == "value number 39"
    assert path.stat().st_size == 1536 + 2 * data.size
    assert np.array_equal(fabio.open(str(path)).data, data)
    assert np.array_equal(read_smv(path).data, data)


def test_big_endian_files_read_the_same(tmp_path: Path) -> None:
    data = np.array([[1, 256, 65535], [2, 3, 4]], np.uint16)
    path = write_smv(tmp_path / "be.img", data, GEOMETRY, byte_order="big_endian")
    assert path.read_bytes()[512:514] == b"\x00\x01"
    assert np.array_equal(read_smv(path).data, data)
    assert np.array_equal(fabio.open(str(path)).data, data)


header_keys = st.from_regex(r"[A-Z][A-Z0-9_]{0,11}", fullmatch=True).filter(
    lambda k: k not in {"HEADER_BYTES", "DIM", "BYTE_ORDER", "TYPE", "SIZE1", "SIZE2"}
)
header_values = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(alphabet="ABCxyz019 .:+-_/", min_size=1, max_size=20).map(str.strip).filter(bool),
)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint16, array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16)),
    st.dictionaries(header_keys, header_values, max_size=12),
)
def test_any_header_and_image_round_trip_through_ours_and_fabio(
    data: np.ndarray, extra: dict[str, str | int | float]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write_smv(Path(folder) / "x.img", data, extra)
        ours = read_smv(path)
        theirs = fabio.open(str(path))
        theirs_header, theirs_data = dict(theirs.header), np.array(theirs.data)
    assert np.array_equal(ours.data, data)
    assert np.array_equal(theirs_data, data)
    assert theirs_header == ours.header
    for key, value in extra.items():
        text = ours.header[key]
        if isinstance(value, float):
            assert math.isclose(float(text), value, rel_tol=1e-11)
        else:
            assert text == str(value)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ({"NOTE": "a;b"}, "NOTE"),
        ({"NOTE": "a=b"}, "NOTE"),
        ({"NOTE": "two\nlines"}, "NOTE"),
        ({"NOTE": " padded"}, "NOTE"),
        ({"BAD KEY": 1}, "BAD KEY"),
        ({"SIZE1": 4}, "SIZE1"),
        ({"DISTANCE": float("nan")}, None),
    ],
)
def test_unsafe_header_entries_are_refused(
    tmp_path: Path, header: dict[str, str | int | float], field: str | None
) -> None:
    target = tmp_path / "x.img"
    with pytest.raises(FormatError) as info:
        write_smv(target, np.zeros((2, 2), np.uint16), header)
    assert info.value.field == field
    assert str(target) in str(info.value)
    assert not target.exists()


def test_only_2d_uint16_is_written(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="uint16"):
        write_smv(tmp_path / "x.img", np.zeros((2, 2), np.int32), {})


def test_header_text_is_padded_with_spaces_to_512() -> None:
    header = format_smv_header({"DISTANCE": 750.0}, shape=(2, 3))
    assert len(header) == 512
    text = header.decode("ascii")
    assert text.index("}\n") < 512
    assert text.rstrip(" ").endswith("}\n")


def test_real_timepix_file_reads_the_same_with_ours_and_fabio(real_data: Path) -> None:
    path = real_data / REAL_SMV
    ours = read_smv(path)
    theirs = fabio.open(str(path))

    assert path.read_bytes()[:15] == b"{\nHEADER_BYTES="
    assert ours.header_bytes == 512
    assert ours.data.shape == (512, 512)
    assert np.array_equal(ours.data, theirs.data)
    assert ours.header == dict(theirs.header)
    assert int(ours.data.sum(dtype=np.int64)) == 3357809
    assert int(ours.data.max()) == 11810
    assert ours.data[0, :10].tolist() == [1, 2, 4, 2, 2, 2, 0, 0, 0, 1]
    assert ours.header["BEAMLINE"] == "TimePix_SU"
    assert ours.number("OSC_START") == 65.4
    assert ours.number("OSC_RANGE") == 0.23
    assert ours.number("WAVELENGTH") == 0.0251
    assert all(key in ours.header for key in DXTBX_REQUIRED)


def _smv_with(tmp_path: Path, replace: tuple[bytes, bytes]) -> Path:
    path = write_smv(tmp_path / "src.img", np.ones((4, 4), np.uint16), GEOMETRY)
    raw = path.read_bytes()
    old, new = replace
    patched = raw.replace(old, new.ljust(len(old)), 1) if old else raw
    out = tmp_path / "bad.img"
    out.write_bytes(patched)
    return out


def test_reader_errors_name_the_file_and_field(tmp_path: Path) -> None:
    good = write_smv(tmp_path / "good.img", np.ones((4, 4), np.uint16), GEOMETRY)
    truncated = tmp_path / "truncated.img"
    truncated.write_bytes(good.read_bytes()[:-3])
    longer = tmp_path / "longer.img"
    longer.write_bytes(good.read_bytes() + b"\0\0")
    not_smv = tmp_path / "not.img"
    not_smv.write_bytes(b"P5\n4 4\n65535\n" + bytes(32))

    with pytest.raises(TruncatedFileError, match=r"truncated\.img"):
        read_smv(truncated)
    with pytest.raises(SizeMismatchError, match=r"longer\.img"):
        read_smv(longer)
    with pytest.raises(FormatError, match="not an SMV image"):
        read_smv(not_smv)
    with pytest.raises(MissingFieldError) as missing:
        read_smv(_smv_with(tmp_path, (b"SIZE1=4;", b"")))
    assert missing.value.field == "SIZE1"
    with pytest.raises(UnknownTypeCodeError) as typed:
        read_smv(_smv_with(tmp_path, (b"TYPE=unsigned_short;", b"TYPE=float;")))
    assert typed.value.field == "TYPE"
    with pytest.raises(FormatError, match="no closing"):
        read_smv(_smv_with(tmp_path, (b"\n}\n", b"\n \n")))
