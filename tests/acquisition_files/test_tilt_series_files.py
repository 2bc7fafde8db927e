"""Per-target tilt-series files: stack + mdoc + frames together, sortByTilt, side files."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any

import mrcfile
import numpy as np
import pytest
from acqfiles_helpers import (
    T0,
    dose_symmetric_tilts,
    make_section,
    read_stack,
    read_with_mdocfile,
    validate,
)

import tomopilot.io.sort_by_tilt as sort_module
from tomopilot.acquisition.output.side_files import (
    attach_run_log,
    detach_run_log,
    write_settings_dump,
    write_target_preview,
)
from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles, section_from_image
from tomopilot.instrument.types import Image, LowDoseArea, StagePosition
from tomopilot.io.errors import FormatError
from tomopilot.io.frame_names import frame_file_name
from tomopilot.io.frames import read_frames
from tomopilot.io.mdoc_format import parse_serialem_datetime
from tomopilot.io.mdoc_writer import parse_mdoc
from tomopilot.io.mrc_stack import ImageShapeError
from tomopilot.io.sort_by_tilt import recover_interrupted_sort, unsorted_mdoc_path

SHAPE = (12, 16)


def _new(run_dir: Path, **overrides: Any) -> TiltSeriesFiles:
    options: dict[str, Any] = {
        "pixel_size_a": 2.663,
        "shape_yx": SHAPE,
        "dtype": np.int16,
        "voltage_kv": 300.0,
        "tilt_axis_deg": 94.0,
        "spot_size": 6,
        "created": T0,
    }
    options.update(overrides)
    return TiltSeriesFiles(run_dir, "L1_ts_001", **options)


def _acquire(files: TiltSeriesFiles, n: int, seed: int = 0, frames: bool = True) -> list[Any]:
    rng = np.random.default_rng(seed)
    written = []
    for index, tilt in enumerate(dose_symmetric_tilts(n)):
        image = rng.poisson(300.0, SHAPE).astype(np.float32)
        movie = rng.poisson(20.0, (5, *SHAPE)).astype(np.uint16) if frames else None
        files.append(image, make_section(index, tilt), movie)
        written.append((tilt, image, movie))
    return written


def test_stack_mdoc_and_frames_read_back_with_the_applied_values(tmp_path: Path) -> None:
    files = _new(tmp_path)
    written = _acquire(files, 7)
    assert validate(files.stack_path)
    stack = read_stack(files.stack_path)
    assert np.array_equal(stack, np.stack([image for _, image, _ in written]).astype(np.int16))
    with mrcfile.open(files.stack_path) as mrc:
        assert mrc.voxel_size.x == pytest.approx(2.663, rel=1e-6)
        label = bytes(mrc.header.label[0]).decode()
        assert (
            label.startswith("SerialEM: tomopilot digital twin") and "11-Aug-23  17:44:49" in label
        )
    table = read_with_mdocfile(files.mdoc_path)
    assert table["TiltAngle"].tolist() == pytest.approx([t for t, _, _ in written], abs=1e-5)
    assert table["PriorRecordDose"].tolist() == pytest.approx([3.1 * i for i in range(7)])
    assert table["ImageFile"].iloc[0].name == "L1_ts_001.mrc"
    assert tuple(table["ImageSize"].iloc[0]) == (SHAPE[1], SHAPE[0])
    assert int(table["DataMode"].iloc[0]) == 1
    for index, row in enumerate(table.itertuples()):
        minimum, maximum, mean = row.MinMaxMean
        assert (minimum, maximum) == (stack[index].min(), stack[index].max())
        assert mean == pytest.approx(stack[index].mean(), rel=1e-5)
        when = parse_serialem_datetime(row.DateTime)
        assert when == make_section(index, 0.0).date_time
        relative = PureWindowsPath(row.SubFramePath).as_posix()
        assert relative == "frames/" + frame_file_name(
            "L1_ts_001", index, written[index][0], when, ".tif"
        )
        movie = read_frames(files.mdoc_path.parent / relative)
        assert np.array_equal(movie, written[index][2])
        assert row.NumSubFrames == 5
        assert row.FrameDosesAndNumber == [pytest.approx((3.1 / 5, 5))]
    assert sorted(p.name for p in files.frames_dir.iterdir()) == sorted(
        PureWindowsPath(p).name for p in table["SubFramePath"]
    )


def test_sort_by_tilt_moves_stack_sections_with_their_mdoc_sections(tmp_path: Path) -> None:
    files = _new(tmp_path)
    written = _acquire(files, 9, frames=False)
    before = files.mdoc_path.read_bytes()
    result = files.finish(sort_by_tilt=True)
    assert result is not None and result.changed
    tilts = [t for t, _, _ in written]
    assert list(result.order) == sorted(range(9), key=lambda i: tilts[i])
    unsorted = unsorted_mdoc_path(files.stack_path)
    assert unsorted == tmp_path / "unsorted" / "L1_ts_001.mrc.mdoc"
    assert unsorted.read_bytes() == before
    table = read_with_mdocfile(files.mdoc_path)
    assert table["ZValue"].tolist() == list(range(9))
    assert table["TiltAngle"].tolist() == pytest.approx(sorted(tilts), abs=1e-5)
    assert table["PriorRecordDose"].tolist() == pytest.approx([3.1 * i for i in result.order])
    stack = read_stack(files.stack_path)
    for new, old in enumerate(result.order):
        assert np.array_equal(stack[new], written[old][1].astype(np.int16))
        assert tuple(table["MinMaxMean"].iloc[new])[:2] == (stack[new].min(), stack[new].max())
    assert validate(files.stack_path)
    # Sorting again (a resumed finish) changes nothing and keeps the unsorted copy.
    sorted_bytes = files.mdoc_path.read_bytes()
    again = files.finish(sort_by_tilt=True)
    assert again is not None and not again.changed
    assert unsorted.read_bytes() == before and files.mdoc_path.read_bytes() == sorted_bytes
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "L1_ts_001.mrc",
        "L1_ts_001.mrc.mdoc",
        "L1_ts_001.rawtlt",
        "unsorted",
        "unsorted/L1_ts_001.mrc.mdoc",
    ]
    # IMOD's and AreTomo's angle file: one per line, in the (sorted) stack's order.
    rawtlt = [float(line) for line in files.rawtlt_path.read_text().splitlines()]
    assert rawtlt == pytest.approx(sorted(tilts), abs=0.005)
    # A RELION 5 import of <run>/*.mdoc finds each series once.
    assert [p.name for p in tmp_path.glob("*.mdoc")] == ["L1_ts_001.mrc.mdoc"]


def test_a_crash_during_the_sort_leaves_one_consistent_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _new(tmp_path)
    written = _acquire(files, 5, frames=False)
    stack_before, mdoc_before = files.stack_path.read_bytes(), files.mdoc_path.read_bytes()

    # Crash after the sorted stack is written but before the commit point: roll back.
    real_atomic = sort_module.atomic_write_bytes
    calls = {"n": 0}

    def crash_at_commit(path: Path, data: bytes) -> Path:
        calls["n"] += 1
        if path.name.endswith(".sorted"):
            raise KeyboardInterrupt("power cut")
        return real_atomic(path, data)

    monkeypatch.setattr(sort_module, "atomic_write_bytes", crash_at_commit)
    with pytest.raises(KeyboardInterrupt):
        files.finish(sort_by_tilt=True)
    monkeypatch.undo()
    reopened = TiltSeriesFiles.open_existing(tmp_path, "L1_ts_001", n_committed=5)
    assert files.stack_path.read_bytes() == stack_before
    assert files.mdoc_path.read_bytes() == mdoc_before
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())

    # Crash right after the commit point, and again between the two renames: roll forward.
    monkeypatch.setattr(sort_module, "_roll_forward", _crash_on_second_call())
    with pytest.raises(KeyboardInterrupt):
        reopened.finish(sort_by_tilt=True)
    monkeypatch.undo()
    pending_stack = tmp_path / ".L1_ts_001.mrc.sorted"
    pending_stack.rename(files.stack_path)  # the first of the two renames happened
    assert recover_interrupted_sort(files.stack_path)
    final = TiltSeriesFiles.open_existing(tmp_path, "L1_ts_001", n_committed=5)
    assert final.n_sections == 5
    angles = [float(s.items["TiltAngle"]) for s in parse_mdoc(files.mdoc_path).sections]
    assert angles == sorted(angles)
    order = sorted(range(5), key=lambda i: written[i][0])
    assert np.array_equal(read_stack(files.stack_path), np.stack([written[i][1] for i in order]))
    assert unsorted_mdoc_path(files.stack_path).read_bytes() == mdoc_before


def _crash_on_second_call() -> Any:
    """The renames after the commit point: the first call (a check for an earlier interrupted
    sort) runs, the second (this sort's own renames) dies before renaming."""
    real = sort_module._roll_forward
    state = {"calls": 0}

    def roll_forward(stack_path: Path, mdoc_path: Path) -> bool:
        state["calls"] += 1
        if state["calls"] == 2:
            raise KeyboardInterrupt("power cut after commit")
        return real(stack_path, mdoc_path)

    return roll_forward


def test_bad_images_name_the_file_and_write_nothing(tmp_path: Path) -> None:
    files = _new(tmp_path)
    _acquire(files, 2)
    snapshot = {p: p.read_bytes() for p in (files.stack_path, files.mdoc_path)}
    with pytest.raises(ImageShapeError, match=r"L1_ts_001\.mrc") as info:
        files.append(np.zeros((SHAPE[0], SHAPE[1] + 1)), make_section(2, 6.0))
    assert info.value.path == files.stack_path
    with pytest.raises(FormatError, match="NaN"):
        files.append(np.full(SHAPE, np.nan), make_section(2, 6.0), np.zeros((2, *SHAPE)))
    with pytest.raises(ValueError, match="date_time"):
        files.append(np.zeros(SHAPE), make_section(2, 6.0, date_time=None), np.zeros((2, *SHAPE)))
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert len(list(files.frames_dir.iterdir())) == 2


def test_creating_again_replaces_only_empty_files(tmp_path: Path) -> None:
    files = _new(tmp_path)
    files.mdoc_path.unlink()  # a crash between creating the stack and the mdoc
    again = _new(tmp_path, dtype=np.float32)
    assert again.n_sections == 0 and again.stack.mode == 2
    _acquire(again, 1, frames=False)
    with pytest.raises(FileExistsError, match="open_existing"):
        _new(tmp_path)
    with pytest.raises(FormatError, match="not found"):
        TiltSeriesFiles.open_existing(tmp_path, "L9_ts_009")


def test_section_from_image_records_the_exposure() -> None:
    when = datetime(2026, 3, 4, 5, 6, 7)
    image = Image(
        data=np.zeros((2, 2), np.float32),
        area=LowDoseArea.RECORD,
        pixel_size_a=2.1,
        binning=2,
        magnification=42000,
        exposure_s=1.5,
        dose_e_a2=3.0,
        defocus_um=-4.2,
        stage=StagePosition(x_um=1.0, y_um=2.0, z_um=-3.0, tilt_deg=-21.0),
        image_shift_um=(0.1, -0.2),
        time_s=12.0,
        datetime=when,
        exposure_id=7,
        counts_per_electron=16.0,
    )
    section = section_from_image(image, prior_record_dose_e_a2=21.0, target_defocus_um=-4.0)
    text = section.to_text(3)
    assert text.startswith("[ZValue = 3]\nTiltAngle = -21\nStagePosition = 1 2\nStageZ = -3\n")
    for line in ("Magnification = 42000", "ExposureDose = 3", "PixelSpacing = 2.1",
                 "Defocus = -4.2", "ImageShift = 0.1 -0.2", "ExposureTime = 1.5", "Binning = 2",
                 "LowDoseConSet = 4", "CountsPerElectron = 16", "TargetDefocus = -4",
                 "PriorRecordDose = 21", "DateTime = 04-Mar-2026  05:06:07"):  # fmt: skip
        assert f"\n{line}\n" in text


def test_side_files(tmp_path: Path) -> None:
    preview = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = write_target_preview(tmp_path, "L03", 2, preview, pixel_size_a=5.4, labels=["tgt"])
    assert path.name == "L03_tgt_002.mrc" and validate(path)
    with mrcfile.open(path) as mrc:
        assert np.array_equal(mrc.data, preview) and mrc.voxel_size.x == pytest.approx(5.4)
    settings = {"startTilt": 0.0, "step": 3.0, "tilt": {"max_deg": 60.0}, "doCtfFind": True,
                "area": "Record", "limits": (-60, 60)}  # fmt: skip
    dump = write_settings_dump(tmp_path, "L03_tgts", settings)
    assert dump.name == "L03_tgts_settings.txt"
    assert dump.read_text().splitlines() == [
        "startTilt = 0.0",
        "step = 3.0",
        "tilt.max_deg = 60.0",
        "doCtfFind = True",
        "area = Record",
        "limits = -60, 60",
    ]
    with pytest.raises(ValueError, match="one line"):
        write_settings_dump(tmp_path, "L03_tgts", {"bad": "a\nb"})
    assert dump.read_text().startswith("startTilt")  # the failed rewrite left it intact
    handler = attach_run_log(tmp_path, "L03")
    try:
        logging.getLogger("tomopilot.acquisition.engine").info("tilt %d done", 4)
        logging.getLogger("elsewhere").info("not ours")
    finally:
        detach_run_log(handler)
    log = (tmp_path / "L03.log").read_text()
    assert "INFO" in log and "tomopilot.acquisition.engine: tilt 4 done" in log
    assert "not ours" not in log
    assert handler not in logging.getLogger("tomopilot").handlers
    assert logging.getLogger("tomopilot").level == logging.NOTSET


def test_float_count_frames_are_saved_as_unsigned_integers(tmp_path: Path) -> None:
    files = _new(tmp_path)
    counts = np.random.default_rng(5).poisson(2.0, (4, *SHAPE)).astype(np.float32)
    files.append(np.zeros(SHAPE), make_section(0, 0.0), counts)
    files.append(np.zeros(SHAPE), make_section(1, 3.0), counts + 0.5)
    movies = [read_frames(path) for path in sorted(files.frames_dir.iterdir())]
    assert movies[0].dtype == np.uint8 and np.array_equal(movies[0], counts)
    assert movies[1].dtype == np.float32 and np.array_equal(movies[1], counts + 0.5)


def test_sort_refuses_a_stack_and_mdoc_that_disagree(tmp_path: Path) -> None:
    files = _new(tmp_path)
    _acquire(files, 3, frames=False)
    files.stack.append(np.zeros(SHAPE))  # a stack section the mdoc never got
    with pytest.raises(FormatError, match="the mdoc has 3 sections but the stack") as info:
        files.finish(sort_by_tilt=True)
    assert info.value.path == files.mdoc_path
    assert not unsorted_mdoc_path(files.stack_path).exists()
