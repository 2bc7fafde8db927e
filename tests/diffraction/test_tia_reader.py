"""TIA raw reader: every type code, exact values, and clear errors on bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from tia_writer import TYPE_CODES, tia_bytes, write_tia

from tomopilot.io.errors import (
    FormatError,
    SizeMismatchError,
    TruncatedFileError,
    UnknownTypeCodeError,
)
from tomopilot.io.tia import TIA_DTYPES, parse_tia, read_tia, read_tia_header

DTYPES = [np.dtype(name) for name in TYPE_CODES]
frames = arrays(
    dtype=st.sampled_from(DTYPES),
    shape=array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
)


def test_type_codes_are_the_eight_of_the_format() -> None:
    assert {code: dtype.name for code, dtype in TIA_DTYPES.items()} == {
        1: "uint8",
        2: "uint16",
        3: "uint32",
        4: "int8",
        5: "int16",
        6: "int32",
        7: "float32",
        8: "float64",
    }


def test_header_is_code_then_columns_then_rows_little_endian(tmp_path: Path) -> None:
    raw = struct.pack("<hii", 6, 3, 2) + struct.pack("<6i", -1, 0, 1, 2, 3, 2**31 - 1)
    path = tmp_path / "frame.bin"
    path.write_bytes(raw)

    data = read_tia(path)

    assert data.dtype == np.int32
    assert data.tolist() == [[-1, 0, 1], [2, 3, 2**31 - 1]]
    header = read_tia_header(path)
    assert (header.type_code, header.nx, header.ny, header.file_bytes) == (6, 3, 2, 34)


def test_float64_code_8_is_read(tmp_path: Path) -> None:
    values = np.array([[0.1, -2.5e300], [np.pi, 5e-324]])
    data = read_tia(write_tia(tmp_path / "f64.bin", values))
    assert data.dtype == np.float64
    assert data.tobytes() == values.tobytes()


@settings(deadline=None)
@given(frames)
def test_every_type_code_round_trips_bit_for_bit(data: np.ndarray) -> None:
    parsed = parse_tia(tia_bytes(data))
    assert parsed.dtype == data.dtype
    assert parsed.shape == data.shape
    assert parsed.tobytes() == data.tobytes()  # NaN payloads and -0.0 included


@settings(max_examples=50, deadline=None)
@given(frames, st.data())
def test_any_truncation_is_refused_naming_the_file(data: np.ndarray, draw: st.DataObject) -> None:
    raw = tia_bytes(data)
    cut = draw.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(TruncatedFileError) as info:
        parse_tia(raw[:cut], path="run/frame_007.bin")
    assert "run/frame_007.bin" in str(info.value)


@settings(max_examples=30, deadline=None)
@given(frames, st.binary(min_size=1, max_size=64))
def test_extra_bytes_are_a_size_mismatch(data: np.ndarray, extra: bytes) -> None:
    with pytest.raises(SizeMismatchError, match=r"frame\.bin: .*extra"):
        parse_tia(tia_bytes(data) + extra, path="frame.bin")


def test_truncated_file_on_disk_names_the_file_and_the_shortfall(tmp_path: Path) -> None:
    path = tmp_path / "series_003.bin"
    path.write_bytes(tia_bytes(np.zeros((4, 5), np.int32))[:-7])

    with pytest.raises(TruncatedFileError) as info:
        read_tia(path)
    assert str(path) in str(info.value)
    assert "7 bytes missing" in str(info.value)
    with pytest.raises(TruncatedFileError):
        read_tia_header(path)  # the cheap check sees it too


@pytest.mark.parametrize("length", [0, 1, 9])
def test_file_shorter_than_the_header(tmp_path: Path, length: int) -> None:
    path = tmp_path / "stub.bin"
    path.write_bytes(b"\x06" * length)
    with pytest.raises(TruncatedFileError, match="10-byte TIA raw header"):
        read_tia(path)


@pytest.mark.parametrize("code", [0, 9, -1, 42])
def test_unknown_type_code_names_file_and_field(tmp_path: Path, code: int) -> None:
    path = write_tia(tmp_path / "odd.bin", np.zeros((2, 2), np.int32), type_code=code)
    with pytest.raises(UnknownTypeCodeError) as info:
        read_tia(path)
    assert info.value.path == path
    assert info.value.field == "data type code"
    assert f"unknown TIA data-type code {code}" in str(info.value)


def test_header_size_disagreeing_with_the_data_is_refused(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    wider = write_tia(tmp_path / "wide.bin", data, nx=5)
    narrower = write_tia(tmp_path / "narrow.bin", data, nx=3)
    int32_claim = write_tia(tmp_path / "claim.bin", data, type_code=6)

    with pytest.raises(TruncatedFileError, match="5×3 int16"):
        read_tia(wider)
    with pytest.raises(SizeMismatchError, match="3×3 int16"):
        read_tia(narrower)
    with pytest.raises(TruncatedFileError, match="4×3 int32"):
        read_tia(int32_claim)


@pytest.mark.parametrize(("nx", "ny", "field"), [(0, 3, "nx"), (4, -2, "ny")])
def test_non_positive_dimensions_are_refused(tmp_path: Path, nx: int, ny: int, field: str) -> None:
    path = tmp_path / "dims.bin"
    path.write_bytes(struct.pack("<hii", 6, nx, ny))
    with pytest.raises(FormatError) as info:
        read_tia(path)
    assert info.value.field == field


def test_absurd_dimensions_fail_on_size_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge.bin"
    path.write_bytes(struct.pack("<hii", 8, 2**30, 2**30) + bytes(64))
    with pytest.raises(TruncatedFileError, match="1073741824×1073741824 float64"):
        read_tia(path)
