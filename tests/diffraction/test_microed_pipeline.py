"""Whole-series conversions: TIA → MRC → SMV values, headers, and all-or-nothing failures."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import fabio
import numpy as np
import pytest
from microed_helpers import (
    DXTBX_REQUIRED,
    SMALL_SPEC,
    dxtbx_style_header,
    metadata_for,
    options_for,
)
from tia_writer import tia_bytes, write_tia

from tomopilot.core.events import Event
from tomopilot.core.units import electron_wavelength_a
from tomopilot.instrument.twin.diffraction import DiffractionSeries, write_tia_series
from tomopilot.io.errors import (
    LossyConversionError,
    MissingFieldError,
    SizeMismatchError,
    TruncatedFileError,
    UnknownTypeCodeError,
)
from tomopilot.io.smv import read_smv
from tomopilot.processing.microed import (
    ConversionError,
    OutputExistsError,
    SeriesMetadata,
    SeriesProgress,
    SmvOptions,
    convert_tia_series,
    mrc_to_smv,
    tia_to_mrc,
)

METADATA = SeriesMetadata(
    voltage_kv=200.0,
    camera_length_mm=730.0,
    pixel_size_mm=0.028,
    start_angle_deg=-20.0,
    osc_range_deg=0.3,
    exposure_s=0.5,
    binning=2,
)


def seed_example(folder: Path) -> tuple[list[Path], list[np.ndarray]]:
    """Three int32 frames with minima -10000, -145 and -200 (the Leginon wiki's example)."""
    rng = np.random.default_rng(5)
    frames = [rng.integers(-100, 3000, size=(12, 20)).astype(np.int32) for _ in range(3)]
    frames[0][0, :4] = [-10000, -2001, -2000, -1999]  # two pixels below -2000
    frames[1][5, 7] = -145
    frames[2][11, 19] = -200
    frames[2][3, 3] = 70000  # overflows uint16 once shifted
    paths = [write_tia(folder / f"seed_{i:03d}.bin", f) for i, f in enumerate(frames, 1)]
    return paths, frames


def test_seed_example_offset_pedestal_and_clipping(tmp_path: Path) -> None:
    paths, frames = seed_example(tmp_path / "tia")
    out = tmp_path / "out"

    report = convert_tia_series(paths, out, metadata=METADATA)

    assert report.levels is not None
    assert (report.levels.offset, report.levels.pedestal) == (2000, 1855.0)
    assert [f.clipped_low for f in report.frames] == [2, 0, 0]
    assert [f.clipped_high for f in report.frames] == [0, 0, 1]
    for index, frame in enumerate(frames):
        path = out / f"seed_{index + 1:03d}.img"
        expected = np.clip(frame.astype(np.int64) + 2000, 0, 65535)
        ours, theirs = read_smv(path), fabio.open(str(path))
        assert np.array_equal(ours.data, expected)
        assert np.array_equal(theirs.data, expected)
        assert ours.header == dict(theirs.header)
        assert ours.number("LEGINON_OFFSET") == 2000.0
        assert ours.number("IMAGE_PEDESTAL") == 1855.0
    assert read_smv(out / "seed_001.img").data[0, :4].tolist() == [0, 0, 0, 1]


def test_headers_carry_geometry_angles_and_relativistic_wavelength(tmp_path: Path) -> None:
    paths, _ = seed_example(tmp_path / "tia")
    out = tmp_path / "out"
    convert_tia_series(paths, out, metadata=METADATA, options=SmvOptions(gain=26.0))

    for index in range(3):
        path = out / f"seed_{index + 1:03d}.img"
        size, dxtbx_header = dxtbx_style_header(path)  # asserts the first 15 bytes too
        assert size == 512
        assert all(key in dxtbx_header for key in DXTBX_REQUIRED)
        image = read_smv(path)
        assert image.number("OSC_START") == pytest.approx(-20.0 + index * 0.3, abs=1e-9)
        assert image.number("PHI") == image.number("OSC_START")
        assert image.number("OSC_RANGE") == 0.3
        assert image.number("DISTANCE") == 730.0
        assert image.number("PIXEL_SIZE") == 0.028
        assert image.number("TIME") == 0.5
        assert image.number("GAIN") == 26.0
        assert (image.header["SIZE1"], image.header["SIZE2"]) == ("20", "12")
        assert image.header["BIN"] == "2x2"
        assert image.header["BEAMLINE"] == "CETAD_TUI"
        # 200 kV: λ = h / sqrt(2 m e V (1 + eV / 2mc²)) = 0.0250793 Å, not a default value
        assert image.number("WAVELENGTH") == pytest.approx(0.02507934, abs=1e-8)
        assert image.number("WAVELENGTH") == pytest.approx(electron_wavelength_a(200.0), 1e-11)
        # default beam centre: the image centre, X along rows (slow), Y along columns (fast)
        assert image.number("BEAM_CENTER_X") == pytest.approx(6 * 0.028)
        assert image.number("BEAM_CENTER_Y") == pytest.approx(10 * 0.028)


def test_synthetic_series_pixels_and_beam_centre_axis_order(
    tmp_path: Path, small_series: DiffractionSeries
) -> None:
    spec = small_series.spec
    paths = write_tia_series(small_series, tmp_path / "tia")
    out = tmp_path / "out"

    report = convert_tia_series(paths, out, metadata=metadata_for(spec), options=options_for(spec))

    assert report.levels is not None
    offset = report.levels.offset
    assert offset == 2000  # frame 0 holds a dark-reference spike near -10000
    assert report.levels.lowest_minimum < -9000
    assert report.frames[0].clipped_low >= 1
    assert report.clipped_high > 0  # the direct beam overflows uint16
    for index, frame in enumerate(small_series.frames):
        image = fabio.open(str(out / f"diffraction_{index + 1:03d}.img"))
        assert np.array_equal(image.data, np.clip(frame.astype(np.int64) + offset, 0, 65535))

    # The direct beam in the SMV pixels sits at (BEAM_CENTER_Y, BEAM_CENTER_X) in (fast, slow).
    image = read_smv(out / "diffraction_003.img")
    data = image.data.astype(np.float64) - offset
    row, column = np.unravel_index(np.argmax(data), data.shape)
    window = data[row - 5 : row + 6, column - 5 : column + 6]
    weights = np.clip(window - np.median(data), 0, None)
    rows, columns = np.mgrid[row - 5 : row + 6, column - 5 : column + 6] + 0.5
    fast_mm = (weights * columns).sum() / weights.sum() * spec.pixel_size_mm
    slow_mm = (weights * rows).sum() / weights.sum() * spec.pixel_size_mm
    assert fast_mm == pytest.approx(image.number("BEAM_CENTER_Y"), abs=0.1 * spec.pixel_size_mm)
    assert slow_mm == pytest.approx(image.number("BEAM_CENTER_X"), abs=0.1 * spec.pixel_size_mm)
    assert abs(image.number("BEAM_CENTER_X") - image.number("BEAM_CENTER_Y")) > 5


def test_summary_json_and_progress_events(tmp_path: Path) -> None:
    paths, _ = seed_example(tmp_path / "tia")
    events: list[Event] = []
    report = convert_tia_series(paths, tmp_path / "out", metadata=METADATA, on_event=events.append)

    assert report.summary == tmp_path / "out" / "convert_summary.json"
    summary = json.loads(report.summary.read_text())
    assert summary["leginon_offset"] == 2000
    assert summary["image_pedestal"] == 1855.0
    assert summary["offset_capped"] is True
    assert summary["clipped_low_total"] == 2
    assert summary["clipped_high_total"] == 1
    assert [f["minimum"] for f in summary["frames"]] == [-10000.0, -145.0, -200.0]
    assert summary["frames"][2]["smv"] == str(tmp_path / "out" / "seed_003.img")
    steps = [(e.step, e.done) for e in events if isinstance(e, SeriesProgress)]
    assert steps == [(s, i) for s in ("check", "tia2mrc", "scan", "mrc2smv") for i in (1, 2, 3)]
    assert sorted(p.name for p in report.written) == sorted(
        [f"seed_00{i}.{ext}" for ext in ("mrc", "img") for i in (1, 2, 3)]
        + ["convert_summary.json"]
    )


def test_mrc2smv_uses_the_metadata_recorded_by_tia2mrc(tmp_path: Path) -> None:
    paths, frames = seed_example(tmp_path / "tia")
    mrc = tia_to_mrc(paths, tmp_path / "mrc", metadata=METADATA)
    mrc_files = [f.mrc for f in mrc.frames if f.mrc is not None]

    report = mrc_to_smv(mrc_files, tmp_path / "smv")
    image = read_smv(tmp_path / "smv" / "seed_002.img")
    assert image.number("OSC_START") == pytest.approx(-19.7, abs=1e-9)
    assert image.number("DISTANCE") == 730.0
    assert report.levels is not None and report.levels.pedestal == 1855.0
    assert np.array_equal(image.data, frames[1] + 2000)

    override = SeriesMetadata(start_angle_deg=10.0, osc_range_deg=-0.5)
    mrc_to_smv(mrc_files, tmp_path / "smv2", metadata=override)
    image = read_smv(tmp_path / "smv2" / "seed_003.img")
    assert image.number("OSC_START") == 9.0
    assert image.number("OSC_RANGE") == -0.5
    assert image.number("DISTANCE") == 730.0  # still the recorded value

    mrc_to_smv(mrc_files, tmp_path / "smv3", metadata=SeriesMetadata(start_angle_deg=1.0))
    image = read_smv(tmp_path / "smv3" / "seed_003.img")
    assert image.number("OSC_START") == pytest.approx(1.6, abs=1e-9)  # recorded 0.3° per frame


def test_missing_metadata_names_the_field_and_writes_nothing(tmp_path: Path) -> None:
    paths, _ = seed_example(tmp_path / "tia")
    mrc = tia_to_mrc(paths, tmp_path / "mrc", metadata=SeriesMetadata(start_angle_deg=0.0))
    with pytest.raises(MissingFieldError) as info:
        mrc_to_smv([f.mrc for f in mrc.frames if f.mrc], tmp_path / "smv")
    assert info.value.field == "voltage_kv"
    assert str(paths[0]) not in str(info.value)  # the MRC is named, not the TIA file
    assert "seed_001.mrc" in str(info.value)
    assert not (tmp_path / "smv").exists()


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda raw: raw[:-1], TruncatedFileError),
        (lambda raw: raw + b"\0" * 4, SizeMismatchError),
        (lambda raw: b"\x09\x00" + raw[2:], UnknownTypeCodeError),
    ],
)
def test_bad_frame_mid_series_leaves_nothing_behind(
    tmp_path: Path, damage: object, error: type[Exception]
) -> None:
    paths, _ = seed_example(tmp_path / "tia")
    paths[1].write_bytes(damage(paths[1].read_bytes()))  # type: ignore[operator]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("unrelated")

    with pytest.raises(error) as info:
        convert_tia_series(paths, out, metadata=METADATA)

    assert str(paths[1]) in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_unrepresentable_value_mid_series_leaves_nothing_behind(tmp_path: Path) -> None:
    paths, frames = seed_example(tmp_path / "tia")
    frames[2][0, 0] = 2**24 + 1
    paths[2].write_bytes(tia_bytes(frames[2]))
    out = tmp_path / "out"

    with pytest.raises(LossyConversionError, match=r"seed_003\.bin: .*16777217"):
        convert_tia_series(paths, out, metadata=METADATA)
    assert not out.exists()


def test_existing_outputs_are_kept_unless_overwrite(tmp_path: Path) -> None:
    paths, _ = seed_example(tmp_path / "tia")
    out = tmp_path / "out"
    convert_tia_series(paths, out, metadata=METADATA)
    before = (out / "seed_001.img").read_bytes()
    moved = METADATA.model_copy(update={"start_angle_deg": 5.0})

    with pytest.raises(OutputExistsError, match="already exist"):
        convert_tia_series(paths, out, metadata=moved)
    assert (out / "seed_001.img").read_bytes() == before

    convert_tia_series(paths, out, metadata=moved, overwrite=True)
    assert read_smv(out / "seed_001.img").number("OSC_START") == 5.0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_dry_run_reports_but_writes_nothing(tmp_path: Path) -> None:
    paths, _ = seed_example(tmp_path / "tia")
    report = convert_tia_series(paths, tmp_path / "out", metadata=METADATA, dry_run=True)
    assert report.dry_run
    assert report.levels is not None and report.levels.pedestal == 1855.0
    assert report.written == ()
    assert not (tmp_path / "out").exists()


def test_outputs_get_ordinary_file_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        paths, _ = seed_example(tmp_path / "tia")
        report = convert_tia_series(paths, tmp_path / "out", metadata=METADATA)
    finally:
        os.umask(umask)
    assert {stat.S_IMODE(path.stat().st_mode) for path in report.written} == {0o644}


def test_same_stem_twice_is_refused(tmp_path: Path) -> None:
    data = np.zeros((2, 2), np.int32)
    first = write_tia(tmp_path / "a" / "x.bin", data)
    second = write_tia(tmp_path / "b" / "x.bin", data)
    with pytest.raises(ConversionError, match="distinct names"):
        tia_to_mrc([first, second], tmp_path / "out")


def test_small_spec_is_the_fixture_spec(small_series: DiffractionSeries) -> None:
    assert small_series.spec == SMALL_SPEC
