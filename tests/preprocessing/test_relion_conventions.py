"""RELION's orientation, sign and gain conventions, as ``relion_run_motioncorr`` shows them.

Facts measured with RELION 3.1.3 (``relion_run_motioncorr --use_own``, Debian's package) on
twin and synthetic movies, which these tests pin down without needing RELION:

- an MRC or EER movie's micrograph has the file's row order; a TIFF movie's micrograph is the
  TIFF's pages upside down (RELION, like IMOD, reads TIFF rows top-down); the ``_PS`` spectrum
  and the even/odd sums follow the micrograph;
- ``rlnMicrographShiftX/Y`` is the shift that aligns a frame, the negative of the content's
  movement in the micrograph's orientation: content moving +1 px/frame in x and +2 rows/frame in
  the file gives X = −1·i and Y = −2·i for MRC, Y = +2·i for TIFF;
- the gain reference multiplies the raw frames.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
from preprocessing_support import PIXEL_A, synthetic_movie

from tomopilot.imaging.fourier import fourier_shift
from tomopilot.io.frames import read_frames, write_frames
from tomopilot.io.star import read_star
from tomopilot.processing.motioncorr.correct_frames import correct_frames
from tomopilot.processing.motioncorr.movie_task import (
    MovieResult,
    MovieTask,
    output_root,
    run_movie_task,
)
from tomopilot.processing.motioncorr.options import MotionCorrOptions

SIZE = 256
N_FRAMES = 8
STEP_PX = (1.0, 2.0)  # content movement per frame (x, y) in the file's row order
WAVE = (20, 12)  # (rows, columns) cycles over the frame: a spectrum peak off both axes
EER_GROUP = 40


def _file_frames() -> np.ndarray:
    """Frames as stored in the file: a bright block near row 0 and a tilted wave, moving."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    wave = np.cos(2 * np.pi * (WAVE[0] * rows + WAVE[1] * cols) / SIZE)
    texture = gaussian_filter(rng.normal(size=(SIZE, SIZE)), 2.0)
    base = 6.0 * (1.0 + 0.4 * texture / texture.std()) + 0.8 * wave
    base[20:60, 30:110] += 4.0
    frames = []
    for i in range(N_FRAMES):
        moved = fourier_shift(base, STEP_PX[0] * i, STEP_PX[1] * i)
        frames.append(rng.poisson(np.clip(moved, 0, None)))
    return np.stack(frames).astype(np.uint16)


def _write_as_stored(path: Path, frames: np.ndarray) -> None:
    """Write ``frames`` so that the file's own rows are ``frames``' rows (no convention)."""
    if path.suffix == ".mrc":
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(frames)
            mrc.voxel_size = PIXEL_A
    elif path.suffix == ".tif":
        tifffile.imwrite(path, frames, photometric="minisblack")
    else:  # EER has no reversal in any reader: our writer stores the rows as given
        write_frames(path, frames, pixel_size_a=PIXEL_A, eer_hardware_frames=EER_GROUP)


def _run(tmp_path: Path, suffix: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run the movie task on one stored movie; the images it wrote and its STAR shifts."""
    movie = tmp_path / f"frames/movie{suffix}"
    movie.parent.mkdir(parents=True)
    _write_as_stored(movie, _file_frames())
    options = MotionCorrOptions(
        float16=False,
        even_odd=True,
        ps_size_px=SIZE,
        ps_every_n_frames=2,
        eer_fractionation=EER_GROUP,
        smooth_trajectory=False,
        remove_hot_pixels=False,
        bfactor_px2=50.0,
    )
    task, result = _corrected(tmp_path, movie, f"frames/movie{suffix}", options)
    files = task.outputs()
    images = {
        label: np.asarray(mrcfile.read(files[label]), dtype=np.float64)
        for label in (
            "rlnMicrographName",
            "rlnMicrographNameEven",
            "rlnMicrographNameOdd",
            "rlnCtfPowerSpectrum",
        )
    }
    table = read_star(files["rlnMicrographMetadata"])["global_shift"]
    shifts = np.stack([table["rlnMicrographShiftX"], table["rlnMicrographShiftY"]], axis=1)
    np.testing.assert_allclose(result.shifts_px, shifts, atol=1e-5)
    return images, shifts


@pytest.mark.parametrize(("suffix", "flipped"), [(".mrc", False), (".tif", True), (".eer", False)])
def test_orientation_and_shift_signs_are_relions(
    tmp_path: Path, suffix: str, flipped: bool
) -> None:
    images, shifts = _run(tmp_path, suffix)
    for label in ("rlnMicrographName", "rlnMicrographNameEven", "rlnMicrographNameOdd"):
        image = images[label]
        top, bottom = image[20:60, 30:110].mean(), image[-60:-20, 30:110].mean()
        # the block sits near row 0 of the file; in a TIFF's micrograph near the last row
        assert (bottom > top + 2.0) if flipped else (top > bottom + 2.0), label
    spectrum = images["rlnCtfPowerSpectrum"]
    centre = SIZE // 2
    sign = -1 if flipped else 1
    peak = spectrum[centre + sign * WAVE[0], centre + WAVE[1]]
    mirror = spectrum[centre - sign * WAVE[0], centre + WAVE[1]]
    assert peak > 5 * mirror  # the wave's spectrum peak is where the micrograph puts it
    frame = np.arange(N_FRAMES)
    expected_y = (1.0 if flipped else -1.0) * STEP_PX[1] * frame
    np.testing.assert_allclose(shifts[:, 0], -STEP_PX[0] * frame, atol=0.1)
    np.testing.assert_allclose(shifts[:, 1], expected_y, atol=0.1)


def test_tiff_frames_are_read_and_written_top_down(tmp_path: Path) -> None:
    frames = synthetic_movie(np.zeros((3, 2)), size=64)
    tifffile.imwrite(tmp_path / "a.tif", frames, photometric="minisblack")
    np.testing.assert_array_equal(read_frames(tmp_path / "a.tif"), frames[:, ::-1])
    write_frames(tmp_path / "b.tif", frames)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), frames[:, ::-1])
    np.testing.assert_array_equal(read_frames(tmp_path / "b.tif"), frames)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_twin_gain_reference_multiplies_the_pattern_away() -> None:
    from tomopilot.instrument import LowDoseArea
    from tomopilot.instrument.twin import TwinConfig, TwinMicroscope

    config = TwinConfig.model_validate(
        {
            "seed": 3,
            "camera": {"gain_nonuniformity": 0.2, "frames_gain_normalized": False},
            "presets": {
                "record": {"camera_area_px": [SIZE, SIZE], "binning": 1, "dose_rate_e_px_s": 40.0}
            },
            "movie": {"global_motion_a": 0.0, "local_motion_a": 0.0},
        }
    )
    scope = TwinMicroscope(config)
    scope.optics.set_focus_um(-3.0)
    movie = scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=6)
    gain = scope.camera.gain_reference()
    good = gain > 0
    sensitivity = np.where(good, 1.0 / np.where(good, gain, 1.0), 1.0)
    options = MotionCorrOptions(float16=False, power_spectra=False, bfactor_px2=50.0)
    raw = correct_frames(movie.frames, pixel_size_a=PIXEL_A, options=options)
    fixed = correct_frames(movie.frames, pixel_size_a=PIXEL_A, options=options, gain=gain)
    raw_pattern = _correlation(raw.image[good], sensitivity[good])
    assert raw_pattern > 0.4  # the raw frames carry the detector's pattern
    assert abs(_correlation(fixed.image[good], sensitivity[good])) < 0.05 * raw_pattern


def _patterned_tiff_movie(path: Path, sensitivity: np.ndarray) -> None:
    """Six frames of a flat scene seen through ``sensitivity`` (in the TIFF's stored rows)."""
    rng = np.random.default_rng(8)
    frames = np.stack([rng.poisson(20.0 * sensitivity) for _ in range(6)]).astype(np.uint16)
    tifffile.imwrite(path, frames, photometric="minisblack")


def test_tiff_gain_is_read_upside_down_like_the_tiff_movie(tmp_path: Path) -> None:
    """RELION 3.1.3 measured: a TIFF movie with a gain pattern, corrected by the TIFF gain saved
    in the movie's stored orientation, is flat; by that gain as an MRC written as stored, the
    pattern doubles; by the MRC upside down (as tif2mrc writes it), flat again."""
    from tomopilot.io.gain import read_gain

    size = 128
    sensitivity = np.ones((size, size), np.float32)
    sensitivity[:32] = 0.5  # the first 32 stored rows see half the electrons
    sensitivity[:, :16] *= 0.8
    _patterned_tiff_movie(tmp_path / "movie.tif", sensitivity)
    stored_gain = (1.0 / sensitivity).astype(np.float32)
    tifffile.imwrite(tmp_path / "gain.tif", stored_gain)
    for name, data in (("as_stored.mrc", stored_gain), ("tif2mrc.mrc", stored_gain[::-1])):
        with mrcfile.new(tmp_path / name) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
    frames = read_frames(tmp_path / "movie.tif")
    options = MotionCorrOptions(remove_hot_pixels=False, power_spectra=False, float16=False)

    def corrected(gain_name: str) -> np.ndarray:
        gain = read_gain(tmp_path / gain_name)
        return correct_frames(frames, pixel_size_a=1.0, options=options, gain=gain).image

    def band_ratios(image: np.ndarray) -> tuple[float, float]:
        middle = image[48:80, 32:96].mean()
        # the dim stored rows are the micrograph's last rows; the dim columns stay first
        return image[-32:, 32:96].mean() / middle, image[48:80, :16].mean() / middle

    from_tiff = corrected("gain.tif")
    for ratio in band_ratios(from_tiff):
        assert ratio == pytest.approx(1.0, abs=0.03)  # the pattern is gone
    np.testing.assert_allclose(corrected("tif2mrc.mrc"), from_tiff, rtol=1e-5, atol=1e-3)
    wrong_way_up = corrected("as_stored.mrc")
    rows, _ = band_ratios(wrong_way_up)
    assert rows == pytest.approx(0.5, abs=0.03)  # the dim rows stay dim ...
    assert wrong_way_up[:32, 32:96].mean() / wrong_way_up[48:80, 32:96].mean() == pytest.approx(
        2.0, abs=0.06
    )  # ... and the bright ones get the gain: RELION's 60 / 120 / 240


def test_tiff_defect_map_is_read_upside_down_like_the_tiff_movie(tmp_path: Path) -> None:
    """RELION 3.1.3 measured: dead stored rows of a TIFF movie are filled by a TIFF defect map
    that marks the same stored rows (and stay dead with the map's rows reversed)."""
    from tomopilot.io.gain import read_defects

    size = 128
    sensitivity = np.ones((size, size), np.float32)
    sensitivity[:16] = 0.0  # dead stored rows
    _patterned_tiff_movie(tmp_path / "movie.tif", sensitivity)
    defect_map = np.zeros((size, size), np.uint8)
    defect_map[:16] = 1
    tifffile.imwrite(tmp_path / "defects.tif", defect_map)
    frames = read_frames(tmp_path / "movie.tif")
    mask = read_defects(tmp_path / "defects.tif", (size, size))
    assert mask[-16:].all() and not mask[:-16].any()
    options = MotionCorrOptions(remove_hot_pixels=False, power_spectra=False, float16=False)
    image = correct_frames(frames, pixel_size_a=1.0, options=options, defects=mask).image
    assert image[-16:].mean() == pytest.approx(image[32:96].mean(), rel=0.05)


def test_local_shifts_have_relions_sign(tmp_path: Path) -> None:
    """RELION 3.1.3 measured (1024² MRC movie, 5 × 5 patches, content sheared along x by
    ±0.5 px/frame at the top/bottom edge and along y by ±0.3 px/frame at the left/right edge):
    its ``data_local_shift`` rows are the negative of each patch's residual movement, as ours
    (last frame, top-left patch: RELION (3.72, 2.16), tomopilot (3.62, 2.11))."""
    from scipy import ndimage

    size, n = 384, 8
    rng = np.random.default_rng(3)
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3.0)
    base = 50.0 * (1.0 + 0.3 * texture / texture.std())
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    shear_x = 0.5 * (rows - size / 2) / (size / 2)  # movement along x per frame, by row
    shear_y = 0.3 * (cols - size / 2) / (size / 2)  # movement along y per frame, by column
    frames = np.stack(
        [
            rng.poisson(
                np.clip(
                    ndimage.map_coordinates(
                        base,
                        [rows - shear_y * i, cols - 1.0 * i - shear_x * i],
                        order=1,
                        mode="wrap",
                    ),
                    0,
                    None,
                )
            )
            for i in range(n)
        ]
    ).astype(np.float32)
    movie = tmp_path / "frames/movie.mrc"
    movie.parent.mkdir(parents=True)
    _write_as_stored(movie, frames)
    options = MotionCorrOptions(
        float16=False, patches=(3, 3), power_spectra=False, remove_hot_pixels=False
    )
    task, _ = _corrected(tmp_path, movie, "frames/movie.mrc", options)
    table = read_star(task.outputs()["rlnMicrographMetadata"])["local_shift"]
    last = table[table["rlnMicrographFrameNumber"].round() == n]
    assert len(last) == 9
    for _, patch in last.iterrows():
        x, y = patch["rlnCoordinateX"], patch["rlnCoordinateY"]
        # residual movement after the global +1 px/frame: the shear at the patch centre
        moved_x = 0.5 * (y - size / 2) / (size / 2) * (n - 1)
        moved_y = 0.3 * (x - size / 2) / (size / 2) * (n - 1)
        assert patch["rlnMicrographShiftX"] == pytest.approx(-moved_x, abs=0.5)
        assert patch["rlnMicrographShiftY"] == pytest.approx(-moved_y, abs=0.5)


def _corrected(
    tmp_path: Path, movie: Path, name: str, options: MotionCorrOptions
) -> tuple[MovieTask, MovieResult]:
    """Motion-correct ``movie`` into a RELION job folder as job002 would: the task, its result."""
    task = MovieTask(
        movie_path=movie,
        movie_name=name,
        root=output_root(tmp_path / "MotionCorr/job002", name),
        options=options,
        pixel_size_a=PIXEL_A,
        voltage_kv=300.0,
        pre_exposure_e_a2=0.0,
        dose_per_tilt_e_a2=3.0,
        gain_path=None,
        tilt_series="TS_01",
        index=0,
    )
    result = run_movie_task(task)
    assert result.ok, result.error
    return task, result
