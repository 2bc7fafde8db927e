"""STAR files as RELION 4 and 5 write them, and the cases that broke the reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tomopilot.io.errors import FormatError, MissingFieldError
from tomopilot.io.star import read_star, read_tilt_series_set, read_tilt_series_star

_TILTS = """
data_{block}

loop_
_rlnMicrographMovieName #1
_rlnTomoTiltMovieFrameCount #2
_rlnTomoNominalStageTiltAngle #3
_rlnMicrographPreExposure #4
frames/TS_01_000_0.0.tif 8 0.0 0.0
frames/TS_01_001_3.0.tif 8 3.0 3.0
"""

_RELION4_GLOBAL_WITH_OPTICS = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnMicrographOriginalPixelSize #6
optics1 1 300.0 2.7 0.1 0.675
optics2 2 200.0 2.0 0.07 1.35

# version 30001

data_global

loop_
_rlnTomoName #1
_rlnTomoTiltSeriesStarFile #2
_rlnOpticsGroup #3
_rlnTomoHand #4
TS_01 tilt_series/TS_01.star 2 -1
TS_02 tilt_series/TS_02.star 1 -1
"""


def _project(tmp_path: Path, global_text: str) -> Path:
    (tmp_path / "tilt_series").mkdir()
    for name in ("TS_01", "TS_02"):
        (tmp_path / "tilt_series" / f"{name}.star").write_text(_TILTS.format(block=name))
    path = tmp_path / "tilt_series.star"
    path.write_text(global_text)
    return path


def test_relion4_optics_groups_give_each_tilt_series_its_optics(tmp_path: Path) -> None:
    path = _project(tmp_path, _RELION4_GLOBAL_WITH_OPTICS)
    tilt_series, _ = read_tilt_series_set(path, project_dir=tmp_path)
    ts1, ts2 = tilt_series.series
    assert ts1.pixel_size_a == pytest.approx(1.35)
    assert ts1.globals["rlnVoltage"] == pytest.approx(200.0)
    assert ts1.globals["rlnSphericalAberration"] == pytest.approx(2.0)
    assert ts2.pixel_size_a == pytest.approx(0.675)
    assert ts2.globals["rlnAmplitudeContrast"] == pytest.approx(0.1)
    assert ts2.globals["rlnOpticsGroupName"] == "optics1"


def test_optics_group_by_name_and_single_group(tmp_path: Path) -> None:
    text = _RELION4_GLOBAL_WITH_OPTICS.replace("_rlnOpticsGroup #3", "_rlnOpticsGroupName #3")
    text = text.replace("TS_01.star 2", "TS_01.star optics2").replace(
        "TS_02.star 1", "TS_02.star optics1"
    )
    tilt_series, _ = read_tilt_series_set(_project(tmp_path, text), project_dir=tmp_path)
    assert [ts.pixel_size_a for ts in tilt_series.series] == pytest.approx([1.35, 0.675])


def test_an_unknown_optics_group_is_named(tmp_path: Path) -> None:
    text = _RELION4_GLOBAL_WITH_OPTICS.replace("TS_01.star 2", "TS_01.star 7")
    with pytest.raises(MissingFieldError, match="optics group '7'"):
        read_tilt_series_set(_project(tmp_path, text), project_dir=tmp_path)


def test_missing_optics_is_a_typed_error_not_a_key_error(tmp_path: Path) -> None:
    text = _RELION4_GLOBAL_WITH_OPTICS.split("# version 30001\n\ndata_global")[1]
    with pytest.raises(MissingFieldError, match="rlnVoltage"):
        read_tilt_series_set(_project(tmp_path, "data_global" + text), project_dir=tmp_path)


def test_both_movie_labels_in_one_table(tmp_path: Path) -> None:
    text = _TILTS.format(block="TS_01").replace(
        "_rlnMicrographPreExposure #4", "_rlnMicrographPreExposure #4\n_rlnTomoTiltMovieFile #5"
    )
    text = text.replace("3.0 3.0\n", "3.0 3.0 old/b.tif\n").replace(
        "0.0 0.0\n", "0.0 0.0 old/a.tif\n"
    )
    path = tmp_path / "TS_01.star"
    path.write_text(text)
    table = read_tilt_series_star(path, "TS_01")
    assert list(table["rlnMicrographMovieName"]) == [
        "frames/TS_01_000_0.0.tif",
        "frames/TS_01_001_3.0.tif",
    ]
    assert list(table.columns).count("rlnMicrographMovieName") == 1


def test_relion4_motioncorr_star_with_optics_first(tmp_path: Path) -> None:
    text = """
data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
opticsGroup1 1 0.675

data_micrographs

loop_
_rlnMicrographName #1
_rlnMicrographMetadata #2
_rlnOpticsGroup #3
MotionCorr/job002/frames/a.mrc MotionCorr/job002/frames/a.star 1
MotionCorr/job002/frames/b.mrc MotionCorr/job002/frames/b.star 1
"""
    path = tmp_path / "corrected_micrographs.star"
    path.write_text(text)
    table = read_tilt_series_star(path)
    assert list(table["rlnMicrographName"]) == [
        "MotionCorr/job002/frames/a.mrc",
        "MotionCorr/job002/frames/b.mrc",
    ]


def test_latin1_byte_is_read(tmp_path: Path) -> None:
    text = "# pixel 0.675 \xb5m-ish\n" + _TILTS.format(block="TS_01")
    path = tmp_path / "TS_01.star"
    path.write_bytes(text.encode("latin-1"))
    assert len(read_tilt_series_star(path, "TS_01")) == 2


def test_a_fixed_file_is_read_afresh_after_a_failed_parse(tmp_path: Path) -> None:
    # starfile reads lines through linecache and clears it only after a successful parse.
    path = tmp_path / "TS_01.star"
    good = _TILTS.format(block="TS_01")
    path.write_text('data_general\n\n_rlnTomoName "unclosed quote\n' + good)
    with pytest.raises(FormatError, match="cannot read this STAR file"):
        read_tilt_series_star(path, "TS_01")
    path.write_text(good)
    assert len(read_tilt_series_star(path, "TS_01")) == 2


def test_a_ragged_row_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "TS_01.star"
    path.write_text(_TILTS.format(block="TS_01").replace("8 0.0 0.0", "8 0.0 0.0 extra", 1))
    with pytest.raises(FormatError, match="5 fields in a loop of 4") as caught:
        read_tilt_series_star(path, "TS_01")
    assert caught.value.line == 9


def test_a_row_of_100000_fields_is_refused_at_its_line(tmp_path: Path) -> None:
    text = _TILTS.format(block="TS_01") + " ".join(["1"] * 100_000) + "\n"
    path = tmp_path / "huge.star"
    path.write_text(text)
    with pytest.raises(FormatError, match="100000 fields in a loop of 4") as caught:
        read_star(path)
    assert caught.value.line == len(text.splitlines())


def test_a_directory_is_named_as_a_directory(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="is a directory"):
        read_star(tmp_path)


@pytest.mark.parametrize(
    ("name", "block", "n_tilts"),
    [
        ("relion4_import_my_prefix_TS_01.star", None, 41),
        ("relion5_tutorial_TS_01_tilt.star", "TS_01", 40),
    ],
)
def test_real_relion4_and_5_tilt_tables(
    real_data: Path, name: str, block: str | None, n_tilts: int
) -> None:
    table = read_tilt_series_star(real_data / "star" / name, block)
    assert len(table) == n_tilts
    assert all(isinstance(v, str) for v in table["rlnMicrographMovieName"])


def test_real_relion5_and_relion4_tilt_series_import_through_a_global_table(
    real_data: Path, tmp_path: Path
) -> None:
    """RELION 5 (optics in data_global) and RELION 4 (optics in data_optics) sets, each pointing
    at the real per-tilt-series file in place."""
    r5 = real_data / "star" / "relion5_tutorial_TS_01_tilt.star"
    r4 = real_data / "star" / "relion4_import_my_prefix_TS_01.star"
    real_global = read_star(real_data / "star" / "relion5_tutorial_tomograms.star")["global"]
    row = real_global.iloc[0]
    (tmp_path / "r5.star").write_text(
        "data_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoTiltSeriesStarFile #2\n_rlnVoltage #3\n"
        "_rlnSphericalAberration #4\n_rlnAmplitudeContrast #5\n"
        "_rlnMicrographOriginalPixelSize #6\n_rlnTomoHand #7\n_rlnOpticsGroupName #8\n"
        f"TS_01 {r5} {row['rlnVoltage']} {row['rlnSphericalAberration']} "
        f"{row['rlnAmplitudeContrast']} {row['rlnMicrographOriginalPixelSize']} "
        f"{row['rlnTomoHand']} {row['rlnOpticsGroupName']}\n"
    )
    five, _ = read_tilt_series_set(tmp_path / "r5.star", project_dir=tmp_path)
    ts = five.series[0]
    assert (ts.pixel_size_a, ts.globals["rlnVoltage"]) == (pytest.approx(0.675), 300.0)
    assert len(ts.tilts) == 40
    (tmp_path / "r4.star").write_text(
        _RELION4_GLOBAL_WITH_OPTICS.split("# version 30001\n\ndata_global")[0]
        + "data_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoTiltSeriesStarFile #2\n"
        f"_rlnOpticsGroup #3\n_rlnTomoHand #4\nmy_prefix_TS_01 {r4} 1 -1\n"
    )
    four, _ = read_tilt_series_set(tmp_path / "r4.star", project_dir=tmp_path)
    ts = four.series[0]
    assert ts.pixel_size_a == pytest.approx(0.675) and ts.globals["rlnVoltage"] == 300.0
    assert len(ts.tilts) == 41
    assert ts.tilts["rlnMicrographMovieName"].iloc[0] == "test_data/TS_01_039_-60.0.mrc"


def test_a_label_given_twice_is_named(tmp_path: Path) -> None:
    path = tmp_path / "TS_01.star"
    text = _TILTS.format(block="TS_01").replace(
        "_rlnMicrographPreExposure #4", "_rlnTomoNominalStageTiltAngle #4"
    )
    path.write_text(text)
    with pytest.raises(FormatError, match="rlnTomoNominalStageTiltAngle appears twice"):
        read_tilt_series_star(path, "TS_01")


def test_a_tilt_series_listed_twice_is_refused_before_reading_its_files(tmp_path: Path) -> None:
    text = _RELION4_GLOBAL_WITH_OPTICS.replace(
        "TS_02 tilt_series/TS_02.star", "TS_01 tilt_series/TS_02.star"
    )
    with pytest.raises(FormatError, match="'TS_01' is listed twice"):
        read_tilt_series_set(_project(tmp_path, text), project_dir=tmp_path)


def test_a_huge_row_before_any_label_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.star"
    path.write_text("data_global\n\nloop_\n" + " ".join(["1"] * 100_000) + "\n_rlnTomoName #1\n")
    with pytest.raises(FormatError, match="before any _label") as caught:
        read_star(path)
    assert caught.value.line == 4
