"""The appendable MRC stack: values read back by mrcfile, conversion rules, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from acqfiles_helpers import read_stack, validate

from tomopilot.io.errors import FormatError, LossyConversionError, TruncatedFileError
from tomopilot.io.mdoc_format import serialem_title
from tomopilot.io.mrc_stack import (
    CorruptStackError,
    ImageShapeError,
    MrcStackWriter,
    TornStackError,
    repair_stack,
)
from tomopilot.io.stack_pixels import to_stack_dtype


def test_float32_stack_reads_back_exactly_and_is_valid_after_every_append(tmp_path: Path) -> None:
    path = tmp_path / "L1_ts_001.mrc"
    labels = ["SerialEM: tomopilot twin  11-Aug-23  17:44:49", "Tilt axis angle = 94.0"]
    stack = MrcStackWriter(
        path, shape_yx=(12, 20), dtype=np.float32, pixel_size_a=2.663, labels=labels
    )
    assert validate(path)
    rng = np.random.default_rng(3)
    images = [rng.normal(300.0, 40.0, (12, 20)).astype(np.float32) for _ in range(5)]
    for index, image in enumerate(images):
        assert stack.append(image) == index
        assert validate(path)
        assert np.array_equal(read_stack(path), np.stack(images[: index + 1]))
    with mrcfile.open(path) as mrc:
        header = mrc.header
        assert int(header.mode) == 2 and int(header.ispg) == 0 and int(header.nz) == 5
        assert mrc.voxel_size.x == pytest.approx(2.663, rel=1e-6)
        assert mrc.voxel_size.y == pytest.approx(2.663, rel=1e-6)
        assert [bytes(label).decode().rstrip() for label in header.label[:2]] == labels
        everything = np.stack(images).astype(np.float64)
        assert float(header.dmin) == everything.min() and float(header.dmax) == everything.max()
        assert float(header.dmean) == pytest.approx(everything.mean(), rel=1e-6)
        assert float(header.rms) == pytest.approx(everything.std(), rel=1e-5)


def test_reopened_stack_continues_with_the_same_statistics(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc"
    rng = np.random.default_rng(4)
    images = [rng.poisson(500.0 + 100 * i, (8, 6)) for i in range(6)]
    first = MrcStackWriter(path, shape_yx=(8, 6), dtype=np.uint16, pixel_size_a=1.0)
    for image in images[:3]:
        first.append(image)
    again = MrcStackWriter.open(path)
    assert again.n_sections == 3 and again.mode == 6 and again.pixel_size_a == pytest.approx(1)
    for image in images[3:]:
        again.append(image)
    assert validate(path)
    assert np.array_equal(read_stack(path), np.stack(images).astype(np.uint16))


def test_int16_rounds_half_to_even_and_reports_clipping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ts.mrc"
    stack = MrcStackWriter(path, shape_yx=(1, 5), dtype=np.int16, pixel_size_a=1.0)
    with caplog.at_level(logging.WARNING, logger="tomopilot.io.mrc_stack"):
        stack.append(np.array([[0.5, 1.5, -2.6, 40000.0, -1e9]]))
    assert read_stack(path)[0].tolist() == [[0, 2, -3, 32767, -32768]]
    assert stack.clipped_pixels == 2
    assert "2 pixels clipped" in caplog.text and str(path) in caplog.text
    assert validate(path)


def test_conversion_rules() -> None:
    data, clipped = to_stack_dtype(np.array([[-3, 70000]]), np.uint16)
    assert data.tolist() == [[0, 65535]] and clipped == 2 and data.dtype == np.dtype("<u2")
    data, clipped = to_stack_dtype(np.array([[1.0000001]]), np.float32)
    assert data.dtype == np.float32 and clipped == 0
    with pytest.raises(LossyConversionError, match="NaN"):
        to_stack_dtype(np.array([[np.nan]]), np.int16, path="x.mrc")
    with pytest.raises(LossyConversionError):
        to_stack_dtype(np.array([[1 + 2j]]), np.float32)
    with pytest.raises(FormatError, match="int16, float32 or uint16"):
        MrcStackWriter("never.mrc", shape_yx=(2, 2), dtype=np.float64, pixel_size_a=1.0)


def test_wrong_shape_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc"
    stack = MrcStackWriter(path, shape_yx=(4, 4), dtype=np.float32, pixel_size_a=1.0)
    stack.append(np.ones((4, 4)))
    before = path.read_bytes()
    with pytest.raises(ImageShapeError, match=r"ts\.mrc") as info:
        stack.append(np.ones((4, 5)))
    assert info.value.path == path
    with pytest.raises(LossyConversionError):
        stack.append(np.full((4, 4), np.inf))
    assert path.read_bytes() == before and stack.n_sections == 1


def test_refuses_to_overwrite_and_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc"
    MrcStackWriter(path, shape_yx=(2, 2), dtype=np.int16, pixel_size_a=1.0)
    with pytest.raises(FileExistsError):
        MrcStackWriter(path, shape_yx=(2, 2), dtype=np.int16, pixel_size_a=1.0)
    with pytest.raises(FormatError, match="80 ASCII"):
        MrcStackWriter(
            tmp_path / "b.mrc", shape_yx=(2, 2), dtype=np.int16, pixel_size_a=1, labels=["x" * 81]
        )
    from datetime import datetime

    assert len(serialem_title("s" * 200, datetime(2026, 1, 2, 3, 4, 5))) <= 80


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda raw: b"garbage" * 10, CorruptStackError, "no complete MRC header"),
        (lambda raw: raw[:208] + b"XXXX" + raw[212:], CorruptStackError, "MAP"),
        (lambda raw: raw[:12] + (4).to_bytes(4, "little") + raw[16:], CorruptStackError, "mode"),
        (lambda raw: raw[:92] + (1024).to_bytes(4, "little") + raw[96:], CorruptStackError, "ext"),
        (lambda raw: raw[:-10], TruncatedFileError, "ends 10 bytes early"),
        (lambda raw: raw + b"\0" * 7, TornStackError, "7 bytes follow"),
    ],
)
def test_corrupt_existing_stack_gives_a_typed_error_naming_the_file(
    tmp_path: Path, damage: object, error: type[Exception], message: str
) -> None:
    path = tmp_path / "ts.mrc"
    stack = MrcStackWriter(path, shape_yx=(4, 4), dtype=np.int16, pixel_size_a=1.0)
    stack.append(np.ones((4, 4)))
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(error, match=message) as info:
        MrcStackWriter.open(path)
    assert isinstance(info.value, FormatError) and info.value.path == path
    assert str(path) in str(info.value)


def test_repair_refuses_to_invent_committed_sections(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc"
    stack = MrcStackWriter(path, shape_yx=(4, 4), dtype=np.int16, pixel_size_a=1.0)
    for value in range(3):
        stack.append(np.full((4, 4), value))
    with pytest.raises(TruncatedFileError, match="only 3 are complete"):
        repair_stack(path, 4)
    repaired = repair_stack(path, 1)
    assert repaired.n_sections == 1 and validate(path)
    assert read_stack(path).tolist() == [np.zeros((4, 4), int).tolist()]
    with pytest.raises(CorruptStackError, match="not found"):
        repair_stack(tmp_path / "missing.mrc", 0)
