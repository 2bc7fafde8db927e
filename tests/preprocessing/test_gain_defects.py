"""Gain references in every orientation, defect files and maps, hot pixels."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tomopilot.io.errors import FormatError
from tomopilot.io.gain import (
    orient_gain,
    read_defect_text,
    read_defects,
    read_gain,
    unorient_gain,
)
from tomopilot.processing.motioncorr.bad_pixel_mask import GainShapeError
from tomopilot.processing.motioncorr.correct_frames import correct_frames
from tomopilot.processing.motioncorr.options import MotionCorrOptions

ORIENTATIONS = [(rotation, flip) for rotation in range(4) for flip in (0, 1)]


def test_rotation_code_one_is_clockwise_with_row_zero_on_top() -> None:
    gain = np.array([[1, 2], [3, 4]])
    # Clockwise: the left column, read bottom-up, becomes the top row.
    assert orient_gain(gain, rotation=1).tolist() == [[3, 1], [4, 2]]
    assert orient_gain(gain, flip=1).tolist() == [[3, 4], [1, 2]]
    assert orient_gain(gain, flip=2).tolist() == [[2, 1], [4, 3]]
    # Rotation first, then the flip.
    assert orient_gain(gain, rotation=1, flip=1).tolist() == [[4, 2], [3, 1]]


@settings(max_examples=50, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 7), st.integers(1, 7)),
        elements=st.floats(0, 9, width=32),
    ),
    st.integers(0, 3),
    st.integers(0, 2),
)
def test_orientation_codes_invert(gain: np.ndarray, rotation: int, flip: int) -> None:
    stored = unorient_gain(gain, rotation=rotation, flip=flip)
    assert np.array_equal(orient_gain(stored, rotation=rotation, flip=flip), gain)


@pytest.mark.parametrize(("rotation", "flip"), ORIENTATIONS)
def test_gain_written_in_each_orientation_is_applied(
    tmp_path: Path, rotation: int, flip: int
) -> None:
    rng = np.random.default_rng(rotation * 10 + flip)
    h, w = 96, 128  # not square: a wrong rotation cannot even fit
    true_gain = rng.uniform(0.5, 1.5, (h, w)).astype(np.float32)
    stored = unorient_gain(true_gain, rotation=rotation, flip=flip)
    path = tmp_path / f"gain_{rotation}_{flip}.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored)
    gain = read_gain(path, rotation=rotation, flip=flip)
    assert gain.shape == (h, w)
    assert np.allclose(gain, true_gain)
    # Frames recorded through the inverse gain are flat once corrected.
    scene = np.full((3, h, w), 50.0, np.float32)
    raw = scene / true_gain
    options = MotionCorrOptions(remove_hot_pixels=False, power_spectra=False, float16=False)
    out = correct_frames(raw, pixel_size_a=1.0, options=options, gain=gain)
    assert np.allclose(out.image, 150.0, rtol=1e-3)


def test_eer_mrc_gain_divides_and_tiff_gain_multiplies(tmp_path: Path) -> None:
    gain = np.array([[2.0, 1.0], [0.5, 0.0]], np.float32)
    with mrcfile.new(tmp_path / "g.mrc") as mrc:
        mrc.set_data(gain)
    tifffile.imwrite(tmp_path / "g.gain", gain)
    divided = read_gain(tmp_path / "g.mrc", for_eer=True)
    mean_good = gain[gain > 0].mean()
    assert np.allclose(divided, [[mean_good / 2, mean_good], [mean_good / 0.5, 0.0]])
    assert np.array_equal(read_gain(tmp_path / "g.gain", for_eer=True), gain)


def test_wrong_gain_size_is_a_clear_error() -> None:
    frames = np.ones((4, 64, 64), np.float32)
    with pytest.raises(GainShapeError, match=r"64×32 px but the frames are 64×64"):
        correct_frames(
            frames,
            pixel_size_a=1.0,
            options=MotionCorrOptions(),
            gain=np.ones((32, 64), np.float32),
        )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4000), st.integers(0, 4000), st.integers(1, 50), st.integers(1, 50)
        ),
        min_size=0,
        max_size=8,
    ),
    st.sampled_from([" ", "\t", "  "]),
)
def test_motioncor2_defect_text_parses(
    tmp_path_factory: pytest.TempPathFactory, rects: list[tuple[int, int, int, int]], sep: str
) -> None:
    path = tmp_path_factory.mktemp("defects") / "defects.txt"
    path.write_text("\n".join(sep.join(str(v) for v in r) for r in rects) + "\n")
    assert read_defect_text(path) == rects


def test_defect_text_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("10 10 2 2\n5 5 x 3\n")
    with pytest.raises(FormatError, match=r"bad.txt:2"):
        read_defect_text(path)
    serialem = tmp_path / "serialem.txt"
    serialem.write_text("CameraSize 4096 4096\nBadColumns 100\n")
    with pytest.raises(FormatError, match="SerialEM defect file"):
        read_defect_text(serialem)


def test_defect_rectangles_and_maps_are_masked(tmp_path: Path) -> None:
    h, w = 64, 64
    text = tmp_path / "defects.txt"
    text.write_text("10 20 3 5\n40 0 1 64\n")  # a block and a whole bad column
    mask = read_defects(text, (h, w))
    assert mask[20:25, 10:13].all() and mask[:, 40].all()
    assert mask.sum() == 15 + 64
    defect_map = np.zeros((h, w), np.uint8)
    defect_map[5, 7] = 1
    tifffile.imwrite(tmp_path / "map.tif", defect_map)
    # a TIFF map is read upside down, as RELION reads it (and TIFF movie frames)
    assert np.argwhere(read_defects(tmp_path / "map.tif", (h, w))).tolist() == [[h - 1 - 5, 7]]
    with pytest.raises(FormatError, match="defect map is"):
        read_defects(tmp_path / "map.tif", (h, w + 2))
    # In the correction, masked pixels take their neighbours' values: a dead column disappears.
    frames = np.full((4, h, w), 10.0, np.float32)
    frames[:, :, 40] = 0.0
    frames[:, 20:25, 10:13] = 500.0
    options = MotionCorrOptions(power_spectra=False, float16=False, remove_hot_pixels=False)
    out = correct_frames(frames, pixel_size_a=1.0, options=options, defects=mask)
    assert np.allclose(out.image, 40.0, atol=1e-3)


def test_hot_pixels_are_found_and_replaced() -> None:
    rng = np.random.default_rng(0)
    frames = rng.poisson(5.0, (6, 128, 128)).astype(np.float32)
    frames[:, 17, 33] = 400.0
    frames[:, 90, 5] = 300.0
    out = correct_frames(
        frames, pixel_size_a=1.0, options=MotionCorrOptions(float16=False, power_spectra=False)
    )
    assert sorted(map(tuple, out.hot_pixels.tolist())) == [(5, 90), (33, 17)]
    assert out.image[17, 33] < 60.0 and out.image[90, 5] < 60.0
