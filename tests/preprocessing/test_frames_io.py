"""Frame stacks: MRC, TIFF and EER read and written, checked with independent decoders."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.io.eer import eer_info, read_eer, split_counts_into_events, write_eer
from tomopilot.io.errors import FormatError
from tomopilot.io.frames import MissingFrameFileError, frame_stack_info, read_frames, write_frames


@pytest.mark.parametrize("suffix", [".mrc", ".mrcs", ".tif", ".tiff"])
def test_mrc_and_tiff_round_trip_exact(tmp_path: Path, suffix: str) -> None:
    frames = np.random.default_rng(0).poisson(3.0, (5, 40, 64)).astype(np.uint16)
    path = write_frames(tmp_path / f"movie{suffix}", frames, pixel_size_a=1.5)
    back = read_frames(path)
    assert back.dtype == np.uint16
    assert np.array_equal(back, frames)
    info = frame_stack_info(path)
    assert (info.n_frames, info.shape) == (5, (40, 64))


def test_tiff_written_is_read_by_tifffile_page_per_frame(tmp_path: Path) -> None:
    frames = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    path = write_frames(tmp_path / "movie.tif", frames)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 3
        # TIFF rows are top-down: the page holds the frame upside down (as RELION reads it)
        assert np.array_equal(tif.pages[2].asarray(), frames[2, ::-1])


def test_eer_decodes_with_tifffile_and_eerfile(tmp_path: Path) -> None:
    import eerfile
    from eerfile.data_models import EERHeader

    counts = np.random.default_rng(1).poisson(0.7, (4, 48, 32)).astype(np.uint8)
    events, per_frame = split_counts_into_events(counts, seed=3)
    path = write_eer(tmp_path / "movie.eer", events, pixel_size_a=0.8)
    raw = eerfile.read(path)
    assert raw.shape == events.shape
    assert np.array_equal(raw.astype(np.uint8), events)
    header = EERHeader.from_file(path)
    assert header.n_frames == events.shape[0]
    assert header.pixel_spacing_width_angstroms == pytest.approx(0.8)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_eer
        assert tif.pages.first.compression == 65001
    assert np.array_equal(read_eer(path, fractionation=per_frame), counts)


def test_eer_fractionation_drops_leftover_frames(tmp_path: Path) -> None:
    events = np.zeros((10, 16, 16), np.uint8)
    events[:, 3, 4] = 1
    path = write_eer(tmp_path / "m.eer", events, pixel_size_a=1.0)
    fractions = read_eer(path, fractionation=4)
    assert fractions.shape == (2, 16, 16)  # 10 // 4; 2 leftover hardware frames dropped
    assert fractions[:, 3, 4].tolist() == [4, 4]
    assert eer_info(path).n_hardware_frames == 10


@pytest.mark.parametrize("factor,upsampling", [(2, 2), (4, 4), (4, 2), (2, 1)])
def test_eer_super_resolution_rendering(tmp_path: Path, factor: int, upsampling: int) -> None:
    rng = np.random.default_rng(factor * 10 + upsampling)
    h, w = 24, 20
    fine = np.zeros((3, h * factor, w * factor), np.uint8)
    for frame in fine:
        physical = rng.choice(h * w, 150, replace=False)
        py, px = physical // w, physical % w
        frame[
            py * factor + rng.integers(0, factor, 150), px * factor + rng.integers(0, factor, 150)
        ] = 1
    path = write_eer(tmp_path / "sr.eer", fine, pixel_size_a=1.0, subpixel_factor=factor)
    frames = read_frames(path, eer_fractionation=1, eer_upsampling=upsampling)
    block = factor // min(upsampling, factor)
    expected = fine.reshape(3, h * factor // block, block, w * factor // block, block).sum(
        axis=(2, 4)
    )
    assert np.array_equal(frames, expected)


def test_eer_refuses_two_electrons_in_one_pixel(tmp_path: Path) -> None:
    events = np.zeros((1, 8, 8), np.uint8)
    events[0, 2, 2] = 2
    with pytest.raises(FormatError, match="0 or 1 electron"):
        write_eer(tmp_path / "bad.eer", events, pixel_size_a=1.0)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(4, 40),
    st.integers(4, 40),
    st.floats(0.0, 2.5),
    st.integers(0, 2**16),
)
def test_eer_round_trip_any_counts(n: int, h: int, w: int, mean: float, seed: int) -> None:
    import tempfile

    counts = np.random.default_rng(seed).poisson(mean, (n, h, w)).astype(np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        path = write_frames(Path(folder) / "m.eer", counts, seed=seed)
        k = max(1, int(counts.max()))
        assert np.array_equal(read_frames(path, eer_fractionation=k), counts)


def test_missing_movie_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFrameFileError, match=r"missing\.tif"):
        read_frames(tmp_path / "missing.tif")


def test_corrupt_tiff_names_the_file(tmp_path: Path) -> None:
    good = write_frames(tmp_path / "good.tif", np.ones((2, 32, 32), np.uint8))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(good.read_bytes()[:60] + b"\x00" * 40)
    with pytest.raises(FormatError, match=r"bad\.tif"):
        read_frames(bad)


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="suffix"):
        read_frames(tmp_path / "movie.dm4")


def test_float16_mrc_is_mode_12(tmp_path: Path) -> None:
    path = write_frames(tmp_path / "h.mrc", np.full((1, 8, 8), 1.5, np.float16))
    with mrcfile.open(path) as mrc:
        assert int(mrc.header.mode) == 12
        assert mrc.data.dtype == np.float16


def test_real_direct_electron_movie(real_data: Path) -> None:
    frames = read_frames(real_data / "mrc" / "de_20241021_00405_movie.mrc")
    assert frames.shape == (32, 4, 8)
    assert frames.dtype == np.uint16
    assert frame_stack_info(real_data / "mrc" / "de_20241021_00405_movie.mrc").n_frames == 32
