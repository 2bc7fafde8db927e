"""A movie read frame by frame into its spectra corrects exactly as one read whole."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from preprocessing_support import synthetic_movie

from tomopilot.io.errors import FormatError
from tomopilot.io.frames import read_frames, write_frames
from tomopilot.processing.motioncorr.correct_frames import correct_frames
from tomopilot.processing.motioncorr.movie_frames import MrcFrames, TiffFrames, open_movie
from tomopilot.processing.motioncorr.movie_task import write_image_mrc
from tomopilot.processing.motioncorr.options import MotionCorrOptions

OUTPUTS = ("image", "even", "odd", "image_no_dw", "power_spectrum", "shifts_px", "hot_pixels")


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    shifts = np.cumsum(np.random.default_rng(5).normal(0.0, 0.9, (6, 2)), axis=0)
    frames = synthetic_movie(shifts, size=160, seed=7)[:, :, :150]  # not square
    frames[:, 30, 40] = 500  # a hot pixel
    gain = np.random.default_rng(8).normal(1.0, 0.05, frames.shape[1:]).astype(np.float32)
    gain[5, 6] = 0.0  # a dead pixel
    path = tmp_path_factory.mktemp("movie") / "movie.mrc"
    write_frames(path, frames, pixel_size_a=2.0)
    return path, frames, gain


@pytest.mark.parametrize(
    "options",
    [
        MotionCorrOptions(even_odd=True, ps_size_px=64, ps_every_n_frames=2),
        MotionCorrOptions(dose_weighting=True, save_no_dw=True, ps_size_px=64),
        MotionCorrOptions(bin_factor=2.0, even_odd=True, ps_size_px=64),  # read whole: binned
        MotionCorrOptions(remove_hot_pixels=False, power_spectra=False, float16=False),
    ],
    ids=["even_odd", "dose_weighted", "binned", "plain"],
)
def test_frame_by_frame_reading_gives_the_same_outputs(
    movie: tuple[Path, np.ndarray, np.ndarray], options: MotionCorrOptions
) -> None:
    path, frames, gain = movie
    reader = open_movie(path)
    assert isinstance(reader, MrcFrames) and reader.shape == frames.shape
    for threads in (1, 2):
        whole = correct_frames(
            frames, pixel_size_a=2.0, options=options, gain=gain, threads=threads,
            dose_per_frame_e_a2=0.5,
        )  # fmt: skip
        lazy = correct_frames(
            reader, pixel_size_a=2.0, options=options, gain=gain, threads=threads,
            dose_per_frame_e_a2=0.5,
        )  # fmt: skip
        for name in OUTPUTS:
            mine, theirs = getattr(lazy, name), getattr(whole, name)
            if theirs is None:
                assert mine is None, name
            else:
                np.testing.assert_array_equal(mine, theirs, err_msg=name)
    if options.remove_hot_pixels:
        assert [40, 30] in whole.hot_pixels.tolist()


def test_a_truncated_movie_is_refused_before_anything_is_read(
    movie: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "cut.mrc"
    path.write_bytes(movie[0].read_bytes()[:-1000])
    with pytest.raises(FormatError) as error:
        open_movie(path)
    assert "cut.mrc" in str(error.value)


def test_a_sum_is_written_from_a_view_with_gaps_between_its_rows(tmp_path: Path) -> None:
    spectrum = np.zeros((33, 26), np.complex64)  # the memory of a 50-px-wide image
    image = spectrum.view(np.float32)[:, :50]
    image[...] = np.random.default_rng(1).normal(5.0, 2.0, image.shape)
    assert not image.flags.c_contiguous
    for half in (False, True):
        path = tmp_path / f"sum_{half}.mrc"
        write_image_mrc(path, image, 1.5, half)
        with mrcfile.open(path) as mrc:
            expected = image.astype(np.float16) if half else image
            np.testing.assert_array_equal(mrc.data, expected)
            assert mrc.header.dmax == pytest.approx(float(expected.max()))


def test_a_tiff_movie_read_page_by_page_gives_the_same_outputs(
    movie: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    _, frames, gain = movie
    path = tmp_path / "movie.tif"
    write_frames(path, frames, pixel_size_a=2.0)
    whole_frames = read_frames(path)  # rows top-down (MRC order), as RELION reads TIFF
    reader = open_movie(path)
    assert isinstance(reader, TiffFrames) and reader.shape == frames.shape
    options = MotionCorrOptions(even_odd=True, ps_size_px=64)
    whole = correct_frames(whole_frames, pixel_size_a=2.0, options=options, gain=gain, threads=2)
    lazy = correct_frames(reader, pixel_size_a=2.0, options=options, gain=gain, threads=2)
    for name in OUTPUTS:
        np.testing.assert_array_equal(getattr(lazy, name), getattr(whole, name), err_msg=name)


@pytest.mark.parametrize(
    "layout",
    [
        {"compression": "zlib", "rowsperstrip": 7},  # a short last strip
        {"compression": "lzw", "predictor": True, "rowsperstrip": 16},
        {"compression": None},  # one strip, uncompressed
        {"compression": "zlib", "tile": (32, 48)},  # tiles overhanging the page's edges
        {"compression": None, "byteorder": ">"},  # big-endian counts
    ],
    ids=["strips", "lzw_predictor", "plain", "tiles", "big_endian"],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_pages_decoded_by_segments_equal_the_pages_read_whole(
    tmp_path: Path, layout: dict[str, object], dtype: type
) -> None:
    import tifffile

    rng = np.random.default_rng(3)
    pages = rng.integers(0, 250, (3, 61, 83)).astype(dtype)  # sizes no segment divides
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, pages, photometric="minisblack", **layout)  # type: ignore[arg-type]
    reader = open_movie(path)
    assert isinstance(reader, TiffFrames) and reader.shape == pages.shape
    out = np.full(pages.shape[1:], np.nan, np.float32)
    for index in range(len(pages)):
        reader.read_into(index, out)
        np.testing.assert_array_equal(out, read_frames(path)[index])
        np.testing.assert_array_equal(out, pages[index, ::-1])  # rows top-down: MRC order


@pytest.mark.parametrize("with_gain", [True, False])
def test_a_frame_prepared_row_block_by_row_block_transforms_as_one_prepared_whole(
    with_gain: bool,
) -> None:
    from tomopilot.imaging.bad_pixels import BadPixelFill
    from tomopilot.imaging.frame_spectra import real_part, rfft2_in_place
    from tomopilot.imaging.periodic_component import FrameEdges
    from tomopilot.processing.motioncorr.frame_transform import prepare_and_transform

    rng = np.random.default_rng(9)
    shape = (75, 64)  # row blocks of 32: the last one short
    counts = rng.poisson(20.0, shape).astype(np.uint16)
    gain = rng.normal(1.0, 0.1, shape).astype(np.float32) if with_gain else None
    bad = rng.random(shape) < 0.02
    bad[0, 3] = bad[-1, -1] = bad[31, 0] = bad[32, 63] = True  # on borders and block edges
    filler = BadPixelFill(bad)
    whole = counts.astype(np.float32) * (gain if gain is not None else np.float32(1.0))
    filler.apply(whole, seed=4)
    expected_edges = FrameEdges.empty(1, shape)
    expected_edges.set_frame(0, whole)
    expected = np.empty((shape[0], shape[1] // 2 + 1), np.complex64)
    real_part(expected, shape[1])[...] = whole
    rfft2_in_place(expected, shape[1])
    spectrum = np.empty_like(expected)
    edges = FrameEdges.empty(1, shape)
    prepare_and_transform(counts, spectrum, gain, filler, 4, edges, 0)
    np.testing.assert_array_equal(spectrum, expected)
    np.testing.assert_array_equal(edges.jump_rows, expected_edges.jump_rows)
    np.testing.assert_array_equal(edges.jump_columns, expected_edges.jump_columns)


class _IndexLog(np.ndarray):
    """An array that records how it is indexed."""

    keys: list[object]

    def __getitem__(self, key: object) -> object:
        self.keys.append(key)
        return np.asarray(self)[key]  # type: ignore[index]


def test_bad_pixels_with_enough_good_neighbours_are_filled_without_sampling_the_frame() -> None:
    from tomopilot.imaging.bad_pixels import BadPixelFill

    rng = np.random.default_rng(3)
    counts = rng.poisson(30.0, (64, 48)).astype(np.uint16)
    gain = rng.normal(1.0, 0.1, counts.shape).astype(np.float32)
    isolated = np.zeros(counts.shape, bool)
    isolated[[5, 20, 40], [7, 30, 2]] = True
    cluster = isolated.copy()
    cluster[50:56, 20:26] = True  # its centre has fewer than 7 good neighbours: Gaussian draws
    for bad, sampled in ((isolated, False), (cluster, True)):
        filler = BadPixelFill(bad)
        logged = counts.view(_IndexLog)
        logged.keys = []
        values = filler.values(logged, seed=2, gain=gain)
        expected = counts.astype(np.float32) * gain
        filler.apply(expected, seed=2)
        np.testing.assert_array_equal(values, expected[filler.ys, filler.xs])
        slices = [key for key in logged.keys if isinstance(key, tuple) and slice in map(type, key)]
        assert bool(slices) == sampled  # the frame's statistics only when a draw needs them
