"""TIA → MRC → TIA is exact for every TIA type; a value MRC cannot hold is refused."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tia_writer import tia_bytes, write_tia

from tomopilot.io.errors import FormatError, LossyConversionError
from tomopilot.processing.microed import (
    FrameMetadata,
    SeriesMetadata,
    read_diffraction_mrc,
    tia_to_mrc,
    write_diffraction_mrc,
)

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.float32(1e-45))  # the smallest float32 subnormal, exact in float64

# Values at the edges of each type that MRC can hold exactly.
EXACT_FRAMES = {
    "int8": ([-128, -1, 0, 127], 0),
    "int16": ([-32768, -1, 0, 32767], 1),
    "uint8": ([0, 1, 128, 255], 6),
    "uint16": ([0, 1, 32768, 65535], 6),
    "int32": ([-(2**31), -(2**24), 2**24, 2**31 - 128], 2),
    "uint32": ([0, 2**24, 2**31 + 256, 2**32 - 256], 2),
    "float32": ([-0.0, F32_TINY, -F32_MAX, 0.1], 2),
    "float64": ([0.5, -1.25, F32_MAX, F32_TINY], 2),
}


@pytest.mark.parametrize("dtype", list(EXACT_FRAMES))
def test_tia_mrc_tia_round_trip_is_byte_identical(tmp_path: Path, dtype: str) -> None:
    values, mode = EXACT_FRAMES[dtype]
    frame = np.array([values, values[::-1], [0] * 4], dtype=dtype)
    source = write_tia(tmp_path / f"{dtype}_001.bin", frame)

    report = tia_to_mrc([source], tmp_path / "mrc")
    restored = read_diffraction_mrc(tmp_path / "mrc" / f"{dtype}_001.mrc")

    assert report.frames[0].mrc_mode == mode == restored.mode
    assert restored.source_dtype == np.dtype(dtype)
    assert restored.data.dtype == np.dtype(dtype)
    assert tia_bytes(restored.data) == source.read_bytes()


def _exact_frames(dtype: str) -> st.SearchStrategy[np.ndarray]:
    """Random frames whose values MRC can store exactly (NaN and infinities included)."""
    shape = st.tuples(st.integers(1, 9), st.integers(1, 9))
    if dtype in ("int32", "uint32"):
        low = 0 if dtype == "uint32" else -(2**24)
        return arrays(dtype, shape, elements=st.integers(low, 2**24))
    if dtype == "float64":
        return arrays(np.float32, shape, elements=st.floats(width=32)).map(
            lambda a: a.astype(np.float64)
        )
    if dtype == "float32":
        return arrays(dtype, shape, elements=st.floats(width=32))
    return arrays(dtype, shape)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(EXACT_FRAMES)).flatmap(_exact_frames))
def test_any_exact_frame_round_trips(frame: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frame.mrc"
        write_diffraction_mrc(path, frame)
        restored = read_diffraction_mrc(path).data
    assert restored.dtype == frame.dtype
    np.testing.assert_array_equal(restored, frame)  # NaN where NaN
    assert np.array_equal(np.signbit(restored), np.signbit(frame))  # -0.0 stays -0.0


@pytest.mark.parametrize(
    ("values", "dtype", "shown"),
    [
        ([0, 2**24 + 1], "int32", "16777217"),
        ([2**31 - 1, 5], "int32", "2147483647"),
        ([2**32 - 1], "uint32", "4294967295"),
        ([0.5, 0.1], "float64", "0.1"),
        ([1e300], "float64", "1e+300"),
    ],
)
def test_values_float32_cannot_hold_are_refused(
    tmp_path: Path, values: list[float], dtype: str, shown: str
) -> None:
    source = write_tia(tmp_path / "bad_001.bin", np.array([values], dtype=dtype))
    out = tmp_path / "out"

    with pytest.raises(LossyConversionError) as info:
        tia_to_mrc([source], out)

    message = str(info.value)
    assert message.startswith(f"{source}: ")
    assert shown in message
    assert f"MRC has no {dtype} mode" in message
    assert not out.exists()  # nothing left behind, not even the folder


def test_metadata_are_recorded_in_labels_and_read_back(tmp_path: Path) -> None:
    frame = FrameMetadata(
        tilt_angle_deg=-29.123456789,
        rotation_speed_deg_s=0.3,
        osc_range_deg=0.15,
        exposure_s=0.5,
        voltage_kv=200.0,
        camera_length_mm=730.0,
        pixel_size_mm=0.028,
        binning=2,
        acquired=datetime(2024, 6, 4, 10, 11, 12, tzinfo=UTC),
    )
    path = tmp_path / "f.mrc"
    write_diffraction_mrc(path, np.ones((3, 4), np.int32), metadata=frame)

    restored = read_diffraction_mrc(path)
    assert restored.metadata == frame
    with mrcfile.open(path) as mrc:
        labels = [bytes(label).decode() for label in mrc.header.label[: mrc.header.nlabl]]
        assert mrc.data.dtype == np.float32
    assert all(len(label) <= 80 for label in labels)
    assert "source_dtype=int32" in " ".join(labels)


def test_series_metadata_give_each_frame_its_angle(tmp_path: Path) -> None:
    paths = [write_tia(tmp_path / f"s_{i:03d}.bin", np.full((2, 2), i, np.int32)) for i in (1, 2)]
    series = SeriesMetadata(start_angle_deg=-60.0, osc_range_deg=0.3, exposure_s=0.5)
    tia_to_mrc(paths, tmp_path / "mrc", metadata=series)

    second = read_diffraction_mrc(tmp_path / "mrc" / "s_002.mrc").metadata
    assert second.tilt_angle_deg == pytest.approx(-59.7, abs=1e-12)
    assert second.rotation_speed_deg_s == pytest.approx(0.6)
    assert second.acquired is not None  # the TIA file's time


def test_mrc_from_other_software_reads_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "other.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.array([[-5, 7]], np.int16))
    restored = read_diffraction_mrc(path)
    assert restored.source_dtype is None
    assert restored.data.tolist() == [[-5, 7]]
    assert restored.metadata == FrameMetadata()


def test_stacks_and_non_mrc_files_are_refused(tmp_path: Path) -> None:
    stack = tmp_path / "stack.mrc"
    with mrcfile.new(stack) as mrc:
        mrc.set_data(np.zeros((3, 2, 2), np.float32))
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"not an mrc file at all" * 50)

    with pytest.raises(FormatError, match=r"stack\.mrc.*single 2-D frame"):
        read_diffraction_mrc(stack)
    with pytest.raises(FormatError, match=r"junk\.mrc: not a readable MRC"):
        read_diffraction_mrc(junk)
