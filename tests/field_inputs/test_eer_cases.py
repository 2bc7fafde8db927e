"""EER files whose pages disagree with each other or with the file: refused before decoding."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tomopilot.io.eer import eer_info, read_eer, write_eer
from tomopilot.io.errors import FormatError, TruncatedFileError


def _movie(tmp_path: Path) -> Path:
    events = np.zeros((4, 32, 32), np.uint8)
    events[0, 3, 5] = events[1, 30, 2] = events[2, 9, 9] = events[3, 1, 1] = 1
    return write_eer(tmp_path / "movie.eer", events, pixel_size_a=1.0)


def _set_tag(path: Path, page: int, tag: int, value: int) -> None:
    """Overwrite the value of ``tag`` in the IFD of ``page`` of our little-endian BigTIFF."""
    raw = bytearray(path.read_bytes())
    offset = struct.unpack_from("<Q", raw, 8)[0]
    for _ in range(page):
        n = struct.unpack_from("<Q", raw, offset)[0]
        offset = struct.unpack_from("<Q", raw, offset + 8 + 20 * n)[0]
    n = struct.unpack_from("<Q", raw, offset)[0]
    for index in range(n):
        entry = offset + 8 + 20 * index
        entry_tag, kind = struct.unpack_from("<HH", raw, entry)
        if entry_tag == tag:
            fmt = {3: "<H", 4: "<I", 16: "<Q"}[kind]
            struct.pack_into(fmt, raw, entry + 12, value)
            path.write_bytes(bytes(raw))
            return
    raise AssertionError(tag)


def test_a_page_of_another_size_is_refused(tmp_path: Path) -> None:
    path = _movie(tmp_path)
    _set_tag(path, 2, 256, 16)  # ImageWidth of hardware frame 2
    with pytest.raises(FormatError, match="hardware frame 2 is 16×32 pixels but frame 0 is 32×32"):
        read_eer(path, fractionation=2)
    with pytest.raises(FormatError, match="hardware frame 2"):
        eer_info(path)


def test_huge_dimensions_in_a_tiny_file_are_refused_before_allocating(tmp_path: Path) -> None:
    path = _movie(tmp_path)
    for page in range(4):
        _set_tag(path, page, 256, 2_000_000)
        _set_tag(path, page, 257, 2_000_000)
    with pytest.raises(FormatError, match="an EER sensor is 1 to 8192 pixels"):
        read_eer(path, fractionation=1)


def test_a_strip_beyond_the_end_of_the_file_is_truncation(tmp_path: Path) -> None:
    path = _movie(tmp_path)
    _set_tag(path, 3, 279, 10**9)  # StripByteCounts of the last frame
    with pytest.raises(TruncatedFileError, match="hardware frame 3 has 1000000000 bytes"):
        read_eer(path, fractionation=1)


def test_a_page_without_eer_compression_is_refused(tmp_path: Path) -> None:
    path = _movie(tmp_path)
    _set_tag(path, 1, 259, 1)
    with pytest.raises(FormatError, match="compression 1, not an EER scheme"):
        read_eer(path, fractionation=1)


def test_decoder_errors_are_never_empty(tmp_path: Path) -> None:
    path = _movie(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-200:] = b"\xff" * 200
    path.write_bytes(bytes(raw))
    try:
        read_eer(path, fractionation=1)
    except FormatError as exc:
        assert not str(exc).rstrip().endswith(":")


def test_good_file_still_reads(tmp_path: Path) -> None:
    frames = read_eer(_movie(tmp_path), fractionation=2)
    assert frames.shape == (2, 32, 32) and int(frames.sum()) == 4


def test_directory_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "movie.eer"
    folder.mkdir()
    with pytest.raises(FormatError, match="is a directory"):
        read_eer(folder, fractionation=1)
