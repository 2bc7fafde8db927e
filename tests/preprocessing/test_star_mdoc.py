"""RELION 5 STAR files and mdoc import, on real files and generated ones."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.io.errors import FormatError
from tomopilot.io.mdoc import parse_mdoc_datetime, read_mdoc, tilt_series_from_mdoc
from tomopilot.io.star import (
    CTF_LABELS,
    MOTIONCORR_LABELS,
    TILT_IMPORT_LABELS,
    read_star_text,
    read_tilt_series_set,
    read_tilt_series_star,
    star_text,
    write_star,
)
from tomopilot.processing.inputs import ImportOptics, load_tilt_series


def test_real_relion5_tilt_series_star(real_data: Path) -> None:
    table = read_tilt_series_star(real_data / "star" / "relion5_tutorial_TS_01_tilt.star", "TS_01")
    assert len(table) == 40
    for label in (*TILT_IMPORT_LABELS, *MOTIONCORR_LABELS, *CTF_LABELS):
        assert label in table.columns
    first = table.iloc[0]
    assert first["rlnMicrographMovieName"] == "frames/TS_01_038_-57.0.mrc"
    assert first["rlnTomoTiltMovieFrameCount"] == 8
    assert first["rlnMicrographPreExposure"] == pytest.approx(114.0)
    assert first["rlnDefocusU"] == pytest.approx(39527.78125)


def test_real_relion4_tilt_series_star_gets_relion5_labels(real_data: Path) -> None:
    table = read_tilt_series_star(real_data / "star" / "relion4_import_my_prefix_TS_01.star")
    assert len(table) == 41
    assert table["rlnMicrographMovieName"].iloc[0] == "test_data/TS_01_039_-60.0.mrc"


def test_real_tomograms_star_names_its_missing_per_tilt_file(
    real_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(FormatError, match="rlnTomoTiltSeriesStarFile"):
        read_tilt_series_set(
            real_data / "star" / "relion5_tutorial_tomograms.star", project_dir=tmp_path
        )


def test_written_star_has_relion_header_and_labels(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"rlnMicrographName": ["a.mrc", "b.mrc"], "rlnAccumMotionTotal": [1.5, 2.0]}
    )
    path = write_star(tmp_path / "x.star", {"TS_01": table, "general": {"rlnImageSizeX": 4096}})
    text = path.read_text()
    assert text.startswith("# version 50001\n\ndata_TS_01\n")
    assert "_rlnAccumMotionTotal #2" in text
    blocks = starfile.read(path, always_dict=True)
    assert list(blocks["TS_01"].columns) == ["rlnMicrographName", "rlnAccumMotionTotal"]
    assert blocks["general"]["rlnImageSizeX"] == 4096
    assert "Created by" not in text  # no time stamp: same content, same bytes


_names = st.text(string.ascii_letters + string.digits + "_/.-", min_size=1, max_size=30).filter(
    lambda s: (
        s[0].isalpha()
        and not s.lower().startswith(("data_", "loop_", "save_", "global_"))
        and s.lower() not in ("nan", "inf", "infinity")  # refused: see the test below
    )
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(_names, st.floats(-70, 70), st.floats(0, 200), st.integers(1, 80)),
        min_size=1,
        max_size=12,
    )
)
def test_star_round_trip(rows: list[tuple[str, float, float, int]]) -> None:
    table = pd.DataFrame(
        {
            "rlnMicrographMovieName": [r[0] for r in rows],
            "rlnTomoNominalStageTiltAngle": [r[1] for r in rows],
            "rlnMicrographPreExposure": [r[2] for r in rows],
            "rlnTomoTiltMovieFrameCount": [r[3] for r in rows],
        }
    )
    back = read_star_text(star_text({"TS_07": table}))["TS_07"]
    assert (
        back["rlnMicrographMovieName"].astype(str).tolist()
        == table["rlnMicrographMovieName"].tolist()
    )
    assert np.allclose(
        back["rlnTomoNominalStageTiltAngle"], table["rlnTomoNominalStageTiltAngle"], atol=1e-5
    )
    assert (
        back["rlnTomoTiltMovieFrameCount"].tolist() == table["rlnTomoTiltMovieFrameCount"].tolist()
    )


@pytest.mark.parametrize("value", ["_rlnX", "data_x", "loop_", "# note", 'a "b"', ""])
def test_values_star_cannot_hold_are_refused(tmp_path: Path, value: str) -> None:
    table = pd.DataFrame({"rlnMicrographName": [value]})
    with pytest.raises(FormatError, match="rlnMicrographName"):
        write_star(tmp_path / "x.star", {"TS_01": table})


@pytest.mark.parametrize("value", ["nan", "NaN", "inf"])
def test_file_names_readers_take_for_numbers_are_refused(tmp_path: Path, value: str) -> None:
    table = pd.DataFrame({"rlnMicrographMovieName": [value]})
    with pytest.raises(FormatError, match="rlnMicrographMovieName"):
        write_star(tmp_path / "x.star", {"TS_01": table})
    assert not (tmp_path / "x.star").exists()
    # Written by someone else: starfile turns "nan" into NaN, which is refused with the row
    # named; "inf" beside real names stays text and reads back as written.
    text = "data_TS_01\n\nloop_\n_rlnMicrographMovieName #1\nTS_01_001.tif\n" + value + "\n"
    (tmp_path / "y.star").write_text(text)
    if value.lower() == "nan":
        with pytest.raises(FormatError, match="row 2 of rlnMicrographMovieName"):
            read_tilt_series_star(tmp_path / "y.star")
    else:
        names = read_tilt_series_star(tmp_path / "y.star")["rlnMicrographMovieName"]
        assert names.tolist() == ["TS_01_001.tif", value]


def test_real_mdoc_import_in_acquisition_order(real_data: Path) -> None:
    imported = tilt_series_from_mdoc(real_data / "mdoc" / "embl-krios-2015_TS_01.mrc.mdoc")
    tilts = imported.tilts
    assert len(tilts) == 41
    assert list(tilts.columns[:6]) == list(TILT_IMPORT_LABELS)
    # Dose-symmetric order: 0°, then +3°, −3°, −6°, +6°, ...
    assert tilts["rlnTomoNominalStageTiltAngle"].round().tolist()[:5] == [0.0, 3.0, -3.0, -6.0, 6.0]
    assert tilts["rlnTomoNominalTiltAxisAngle"].iloc[0] == pytest.approx(85.3)
    assert tilts["rlnTomoNominalDefocus"].iloc[0] == pytest.approx(-4.0)
    assert tilts["rlnTomoTiltMovieFrameCount"].iloc[0] == 8
    assert tilts["rlnMicrographMovieName"].iloc[0].endswith("frames/TS_01_000_0.0.mrc")
    assert imported.pixel_size_a == pytest.approx(1.35)  # 5.4 Å at binning 4
    assert any("no dose" in note for note in imported.notes)


def test_real_tomo5_mdoc_uses_prior_record_dose(real_data: Path) -> None:
    imported = tilt_series_from_mdoc(real_data / "mdoc" / "tfs-tomo5_Position_10.mdoc")
    tilts = imported.tilts
    assert tilts["rlnMicrographPreExposure"].tolist() == pytest.approx([0.0, 4.52, 13.58])
    assert tilts["rlnTomoNominalTiltAxisAngle"].iloc[0] == pytest.approx(-171.35)
    assert tilts["rlnMicrographMovieName"].iloc[0].endswith(".eer")
    assert imported.doses_e_a2  # ExposureDose recorded


def test_mdoc_dose_per_tilt_overrides(real_data: Path) -> None:
    imported = tilt_series_from_mdoc(
        real_data / "mdoc" / "krios-d3645_sem4.1.0beta_pacetomo_L1_ts_001.mrc.mdoc",
        dose_per_tilt_e_a2=3.0,
    )
    assert imported.tilts["rlnMicrographPreExposure"].tolist()[:4] == [0.0, 3.0, 6.0, 9.0]


def test_montage_mdoc_is_refused_as_a_montage(real_data: Path) -> None:
    with pytest.raises(FormatError, match="montage"):
        tilt_series_from_mdoc(real_data / "mdoc" / "pasteur-krios_montage_section.mdoc")


def test_mdocfile_chatter_is_silenced(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    read_mdoc(real_data / "mdoc" / "tfs-tomo5_Position_10.mdoc")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def _mdoc_text(tilts: list[float], doses: list[float]) -> str:
    lines = [
        "PixelSpacing = 2.0",
        "Voltage = 300",
        "",
        "[T = SerialEM: test]",
        "",
        "[T =     Tilt axis angle = 84.1, binning = 1  spot = 8  camera = 0]",
        "",
    ]
    for z, (tilt, dose) in enumerate(zip(tilts, doses, strict=True)):
        minute, second = divmod(z, 60)
        lines += [
            f"[ZValue = {z}]",
            f"TiltAngle = {tilt}",
            f"ExposureDose = {dose}",
            "PixelSpacing = 2.0",
            "Binning = 1",
            f"SubFramePath = X:\\\\frames\\\\movie_{z:03d}.tif",
            "NumSubFrames = 10",
            "TargetDefocus = -3.5",
            f"DateTime = 30-Nov-15  15:{minute:02d}:{second:02d}",
            "",
        ]
    return "\n".join(lines)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-60, 60).map(lambda v: round(v, 2)),
            st.floats(0.1, 5).map(lambda v: round(v, 3)),
        ),
        min_size=1,
        max_size=15,
    )
)
def test_generated_mdoc_pre_exposure_is_dose_of_previous_tilts(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[float, float]]
) -> None:
    folder = tmp_path_factory.mktemp("mdoc")
    path = folder / "TS_09.mrc.mdoc"
    path.write_text(_mdoc_text([r[0] for r in rows], [r[1] for r in rows]))
    imported = tilt_series_from_mdoc(path, frames_dir=folder / "frames")
    doses = np.array([r[1] for r in rows])
    expected = np.concatenate([[0.0], np.cumsum(doses)[:-1]])
    assert imported.name == "TS_09"
    assert np.allclose(imported.tilts["rlnMicrographPreExposure"], expected)
    assert np.allclose(imported.tilts["rlnTomoNominalStageTiltAngle"], [r[0] for r in rows])
    assert imported.tilts["rlnTomoNominalTiltAxisAngle"].iloc[0] == pytest.approx(84.1)
    assert (
        imported.tilts["rlnMicrographMovieName"].iloc[-1].endswith(f"movie_{len(rows) - 1:03d}.tif")
    )


def test_mdoc_datetime_formats() -> None:
    assert parse_mdoc_datetime("30-Nov-15  15:21:38").year == 2015  # type: ignore[union-attr]
    assert parse_mdoc_datetime("24-Mar-2023 12:13:13").month == 3  # type: ignore[union-attr]
    assert parse_mdoc_datetime("yesterday") is None


def test_load_tilt_series_from_mdoc_folder(real_data: Path, tmp_path: Path) -> None:
    tilt_series, project = load_tilt_series(
        real_data / "mdoc" / "tfs-tomo5_Position_10.mdoc",
        project_dir=tmp_path,
        optics=ImportOptics(hand=1),
    )
    (series,) = tilt_series.series
    assert series.name == "tfs-tomo5_Position_10"
    assert series.globals["rlnMicrographOriginalPixelSize"] == pytest.approx(1.98)
    assert series.globals["rlnVoltage"] == pytest.approx(300.0)
    assert series.globals["rlnTomoHand"] == 1.0
    assert project == tmp_path
