"""MRC files from other writers: negative cells, EMDB stamps and suffixes, true refusals."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tomopilot.io.errors import FormatError, TruncatedFileError
from tomopilot.io.frames import frame_stack_info, read_frames
from tomopilot.io.gain import read_image
from tomopilot.io.mrc_header import mrc_header_info
from tomopilot.io.mrc_stack import CorruptStackError, read_stack_header


def _mrc(
    path: Path, data: np.ndarray, *, cell: tuple[float, float, float], stamp: bytes, ispg: int = 0
) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.header.cella = cell
        mrc.header.ispg = ispg
    raw = bytearray(path.read_bytes())
    raw[212:216] = stamp
    path.write_bytes(bytes(raw))
    return path


def test_negative_cell_gives_a_positive_pixel_size(tmp_path: Path) -> None:
    frames = np.arange(3 * 4 * 8, dtype=np.uint16).reshape(3, 4, 8)
    path = _mrc(tmp_path / "movie.mrc", frames, cell=(-80.0, -40.0, 0.0), stamp=b"DD\0\0", ispg=1)
    info = frame_stack_info(path)
    assert info.pixel_size_a == pytest.approx(10.0)
    assert info.n_frames == 3 and info.shape == (4, 8)
    assert np.array_equal(read_frames(path), frames)


def test_real_direct_electron_movie(real_data: Path) -> None:
    path = real_data / "mrc" / "de_20241021_00405_movie.mrc"
    info = frame_stack_info(path)
    assert info.pixel_size_a == pytest.approx(10.0)  # the header's cell is -80 x -40
    assert (info.n_frames, info.shape) == (32, (4, 8))
    assert read_frames(path).shape == (32, 4, 8)


def test_emdb_map_with_stamp_44_41(tmp_path: Path) -> None:
    volume = np.random.default_rng(0).random((4, 6, 6), dtype=np.float32)
    path = _mrc(tmp_path / "emd_1234.map", volume, cell=(6.0, 6.0, 4.0), stamp=b"DA\0\0", ispg=1)
    info = mrc_header_info(path)
    assert info.byte_order == "<" and info.pixel_size_a == pytest.approx(1.0)
    assert np.array_equal(read_frames(path), volume)
    # The resume reader refuses it for what it is (a volume), not for its byte order.
    with pytest.raises(CorruptStackError, match="space group 1") as caught:
        read_stack_header(path)
    assert "little-endian" not in str(caught.value)


def test_stack_with_stamp_44_41_can_be_continued(tmp_path: Path) -> None:
    path = _mrc(
        tmp_path / "ts.st", np.zeros((2, 4, 4), np.int16), cell=(4.0, 4.0, 2.0), stamp=b"DA\0\0"
    )
    assert int(read_stack_header(path)["nz"]) == 2


@pytest.mark.parametrize("suffix", [".mrc", ".map", ".mrcs", ".st", ".gain"])
def test_gain_reference_is_read_by_content(tmp_path: Path, suffix: str) -> None:
    gain = np.full((1, 6, 8), 2.0, np.float32)
    path = _mrc(tmp_path / f"gain{suffix}", gain, cell=(8.0, 6.0, 1.0), stamp=b"DA\0\0")
    assert np.array_equal(read_image(path), gain[0])


def test_gain_that_is_neither_mrc_nor_tiff_says_so(tmp_path: Path) -> None:
    path = tmp_path / "gain.map"
    path.write_bytes(b"\0" * 2000)
    with pytest.raises(FormatError, match="not an MRC file"):
        read_image(path)
    other = tmp_path / "gain.bin"
    other.write_bytes(b"junk" * 10)
    with pytest.raises(FormatError, match="neither MRC"):
        read_image(other)


def test_truncated_mrc_is_refused_before_allocating(tmp_path: Path) -> None:
    path = _mrc(
        tmp_path / "big.mrc", np.zeros((2, 4, 4), np.float32), cell=(4.0, 4.0, 2.0), stamp=b"DD\0\0"
    )
    raw = bytearray(path.read_bytes())
    raw[0:12] = np.array([40000, 40000, 40000], "<i4").tobytes()  # 256 TB announced
    path.write_bytes(bytes(raw))
    with pytest.raises(TruncatedFileError, match="truncated"):
        read_frames(path)
    with pytest.raises(TruncatedFileError):
        frame_stack_info(path)


def test_directory_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "movie.mrc"
    folder.mkdir()
    with pytest.raises(FormatError, match="is a directory"):
        mrc_header_info(folder)
    with pytest.raises(CorruptStackError, match="is a directory"):
        read_stack_header(folder)
