"""The SerialEM backend's command sequences, recorded by a fake ``serialem`` module.

Each test drives one protocol operation and compares what was sent with SerialEM's documented
semantics (script commands help): which commands, in which order, with which arguments, and
where the twin underneath then really is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_serialem import FakeSerialEM

from tomopilot.instrument import ImageShiftLimitError, LowDoseArea, OperatorStop, StageLimitError
from tomopilot.instrument.serialem import (
    AutofocusFailed,
    SerialEMCommandError,
    SerialEMConnectionError,
    SerialEMMicroscope,
)

READS = {
    "ReportClock",
    "ReportStageXYZ",
    "ReportTiltAngle",
    "ReportSpecimenShift",
    "ReportDefocus",
    "ReportProperty",
    "AreDewarsFilling",
    "DewarsRemainingTime",
    "ReportCameraProperty",
}

Build = Callable[..., SerialEMMicroscope]


def sent_since(fake: FakeSerialEM, mark: int, *, reads: bool = False) -> list[tuple[str, Any]]:
    """Commands sent after ``mark`` (reads left out unless asked)."""
    return [(n, a) for n, a in fake.calls[mark:] if reads or n not in READS]


def test_move_to_item_approaches_from_below_on_axes_moving_down(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    scope.stage.move_to(x_um=20.0, y_um=30.0)
    mark = len(fake.calls)
    scope.stage.move_to(x_um=12.0, y_um=35.0, backlash_compensate=True)
    # x goes down: first to x - 5 µm (y up needs no overshoot), then to the goal; z is not sent
    assert sent_since(fake, mark) == [("MoveStageTo", (7.0, 35.0)), ("MoveStageTo", (12.0, 35.0))]
    pos = fake.twin.stage.position()
    assert (pos.x_um, pos.y_um) == pytest.approx((12.0, 35.0), abs=1e-3)
    mark = len(fake.calls)
    scope.stage.move_to(x_um=15.0, y_um=40.0, z_um=2.0, backlash_compensate=True)
    assert sent_since(fake, mark) == [("MoveStageTo", (15.0, 40.0, 2.0))]  # all up: one move
    with pytest.raises(StageLimitError):
        scope.stage.move_to(x_um=5000.0)
    assert fake.calls[-1][0] != "MoveStageTo"  # refused before anything was sent


def test_tilt_and_track_uses_tilt_backlash_and_specimen_shift_through_the_matrix(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    scope.stage.tilt_to(10.0)
    mark = len(fake.calls)
    scope.stage.tilt_to(-6.0, backlash_compensate=True)  # going down: overshoot by 3°, back up
    scope.optics.set_image_shift_um(1.5, -2.0)
    scope.optics.set_focus_um(-3.5)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    sent = sent_since(fake, mark)
    names = [n for n, _ in sent]
    assert sent[:2] == [("TiltTo", (-9.0,)), ("TiltTo", (-6.0,))]
    matrix = np.array(fake.SpecimenToISMatrix(0)).reshape(2, 2)
    is_call = next(a for n, a in sent if n == "SetImageShift")
    assert is_call[:2] == pytest.approx(tuple(matrix @ np.array([1.5, -2.0])))
    assert is_call[2] == 1.0  # settling multiplier: SerialEM waits its IS delay before the Record
    assert ("SetDefocus", (-3.5,)) in sent
    assert names.index("SetDefocus") < names.index("R") < names.index("bufferImage")
    assert fake.twin.stage.position().tilt_deg == pytest.approx(-6.0)
    assert fake.twin.optics.image_shift_um() == pytest.approx((1.5, -2.0))
    assert image.tilt_deg == pytest.approx(-6.0)
    assert image.image_shift_um == pytest.approx((1.5, -2.0))
    assert image.defocus_um == pytest.approx(-3.5)
    truth = fake.twin.ground_truth.exposure(image.exposure_id)
    assert truth.focus_um == pytest.approx(-3.5)  # the twin really imaged at that focus


def test_image_shift_limit_is_refused_before_anything_is_sent(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    limit = scope.optics.image_shift_limit_um
    mark = len(fake.calls)
    with pytest.raises(ImageShiftLimitError):
        scope.optics.set_image_shift_um(limit + 0.5, 0.0)
    assert "SetImageShift" not in [n for n, _ in fake.calls[mark:]]


def test_focus_is_read_and_set_outside_view_whose_readout_carries_the_offset(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    view = scope.optics.preset(LowDoseArea.VIEW)
    assert view.defocus_offset_um != 0  # the twin's View has a defocus offset
    scope.camera.acquire(LowDoseArea.VIEW)  # now in View
    mark = len(fake.calls)
    scope.optics.set_focus_um(-2.0)
    sent = sent_since(fake, mark)
    assert sent == [("GoToLowDoseArea", ("R",)), ("SetDefocus", (-2.0,))]
    assert fake.twin.optics.focus_um() == pytest.approx(-2.0)
    image = scope.camera.acquire(LowDoseArea.VIEW)
    assert image.defocus_um == pytest.approx(-2.0 + view.defocus_offset_um)


def test_autofocus_sets_the_target_then_runs_g_and_reads_the_result(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    mark = len(fake.calls)
    measured = scope.measurements.autofocus(-4.0)
    sent = sent_since(fake, mark)
    assert [n for n, _ in sent] == [
        "ReportTargetDefocus",  # remembered once, restored at close()
        "SetTargetDefocus",
        "G",
        "ReportAutoFocus",
    ]
    assert sent[1] == ("SetTargetDefocus", (-4.0,)) and sent[2] == ("G", (1,))
    assert measured == pytest.approx(fake.autofocus_result[0])  # type: ignore[index]
    assert scope.optics.focus_um() == pytest.approx(fake.twin.optics.focus_um())
    mark = len(fake.calls)
    scope.measurements.measure_defocus_um()
    assert [a for n, a in sent_since(fake, mark) if n == "G"] == [(-1,)]  # measure only
    fake.autofocus_result = (0.0, 1.0)  # SerialEM: 1 = inconsistent measurements
    fake.G = lambda *args: None  # type: ignore[method-assign]
    with pytest.raises(AutofocusFailed, match="inconsistent"):
        scope.measurements.measure_defocus_um()


def test_record_reads_buffer_a_and_describes_it_from_serialem(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    record = scope.optics.preset(LowDoseArea.RECORD)
    twin_record = fake.twin.optics.preset(LowDoseArea.RECORD)
    assert record.magnification == twin_record.magnification
    assert record.unbinned_pixel_size_a == pytest.approx(twin_record.unbinned_pixel_size_a)
    assert record.binning == twin_record.binning
    mark = len(fake.calls)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    assert [n for n, _ in sent_since(fake, mark)] == ["R", "bufferImage"]
    assert fake.calls[mark + [n for n, _ in fake.calls[mark:]].index("bufferImage")][1] == ("A",)
    np.testing.assert_array_equal(image.data, fake.buffers["A"])
    assert image.pixel_size_a == pytest.approx(twin_record.pixel_size_a)
    truth = fake.twin.ground_truth.exposure(image.exposure_id)
    # the counts-based dose lies below the beam's (the specimen absorbs) but not far below
    assert 0.3 * truth.dose_e_a2 < image.dose_e_a2 <= 1.05 * truth.dose_e_a2
    matrix = scope.camera.specimen_to_camera_matrix(LowDoseArea.RECORD)
    np.testing.assert_allclose(
        matrix, fake.twin.camera.specimen_to_camera_matrix(LowDoseArea.RECORD), rtol=1e-9
    )


def test_busy_is_retried_with_growing_waits_then_given_up(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope(busy_retries=3, busy_backoff_s=0.1)
    fake.busy("R", 2)
    scope.camera.acquire(LowDoseArea.RECORD)
    assert scope.session.n_busy_retries == 2
    assert scope.sleeps == pytest.approx([0.1, 0.2])  # type: ignore[attr-defined]
    assert [n for n, _ in fake.calls].count("R") == 3
    fake.busy("R", 10)
    with pytest.raises(SerialEMConnectionError, match="busy"):
        scope.camera.acquire(LowDoseArea.RECORD)


def test_serialem_errors_become_typed_errors_naming_the_command(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    with pytest.raises(SerialEMCommandError, match="GoToLowDoseArea"):
        scope.session.call("GoToLowDoseArea", "Q")
    with pytest.raises(SerialEMCommandError, match="no such command"):
        scope.session.call("CtfFind", "A", -1.0, -6.0)


def test_a_user_stop_becomes_operator_stop_and_nothing_more_is_sent(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    fake.stop_at("R", 1)
    with pytest.raises(OperatorStop, match="--resume"):
        scope.camera.acquire(LowDoseArea.RECORD)
    n = len(fake.calls)
    with pytest.raises(OperatorStop):
        scope.stage.tilt_to(5.0)
    scope.clock.now_s()  # the clock no longer asks SerialEM
    assert scope.close() == ["nothing restored: SerialEM was stopped by the operator"]
    assert len(fake.calls) == n


def test_close_restores_what_tomopilot_changed(fake: FakeSerialEM, make_scope: Build) -> None:
    fake.low_dose = False
    fake.valve_open = False
    fake.twin.stage.tilt_to(4.0)
    fake.twin.optics.set_image_shift_units(0.3, -0.2)
    fake.twin.optics.set_focus_um(-1.0)
    fake.target_defocus = -2.5
    exposure = fake.twin.optics.preset(LowDoseArea.RECORD).exposure_s
    offset = fake.twin.stage.tilt_axis_offset_um
    scope = make_scope()
    assert fake.low_dose and fake.valve_open  # prepared
    scope.stage.tilt_to(-30.0)
    scope.optics.set_image_shift_um(2.0, 1.0)
    scope.optics.set_focus_um(-5.0)
    scope.measurements.autofocus(-4.5)
    scope.stage.set_tilt_axis_offset_um(offset + 0.4)
    record = scope.optics.preset(LowDoseArea.RECORD)
    scope.optics.set_preset(LowDoseArea.RECORD, record.model_copy(update={"exposure_s": 2.5}))
    assert fake.twin.optics.preset(LowDoseArea.RECORD).exposure_s == 2.5
    done = scope.close()
    assert not any(line.startswith("could not") for line in done)
    assert fake.twin.optics.preset(LowDoseArea.RECORD).exposure_s == exposure
    assert fake.twin.stage.position().tilt_deg == pytest.approx(4.0)
    assert fake.twin.optics.image_shift_units() == pytest.approx((0.3, -0.2))
    assert fake.twin.optics.focus_um() == pytest.approx(-1.0)
    assert fake.target_defocus == -2.5
    assert fake.twin.stage.tilt_axis_offset_um == pytest.approx(offset)
    assert not fake.low_dose and not fake.valve_open
    assert scope.close() == []  # twice is harmless


def test_housekeeping_maps_to_dewar_feg_and_slit_commands(
    fake: FakeSerialEM, make_scope: Build
) -> None:
    scope = make_scope()
    status = scope.housekeeping.dewar_status()
    twin_status = fake.twin.housekeeping.dewar_status()
    assert status.filling == twin_status.filling
    assert status.seconds_until_next_fill == pytest.approx(
        twin_status.seconds_until_next_fill,
        abs=0.5,  # one poll apart
    )
    mark = len(fake.calls)
    before = fake.twin.clock.now_s()
    scope.housekeeping.refill_dewar()
    sent = sent_since(fake, mark)
    assert sent[0] == ("LongOperation", ("Re", "0"))
    assert fake.twin.clock.now_s() - before >= fake.twin.config.housekeeping.dewar_refill_duration_s
    mark = len(fake.calls)
    scope.housekeeping.flash_feg()
    scope.housekeeping.refine_zlp()
    assert sent_since(fake, mark) == [
        ("NextFEGFlashHighTemp", (0,)),
        ("LongOperation", ("FF", "0")),
        ("RefineZLP", ()),
    ]


def test_a_movie_turns_frame_saving_on_and_reads_the_frames_serialem_saved(
    fake: FakeSerialEM, make_scope: Build, tmp_path: Path
) -> None:
    scope = make_scope()
    with pytest.raises(SerialEMCommandError, match="no frames were saved"):
        scope.camera.acquire_movie(LowDoseArea.RECORD)  # SerialEM saved none
    fake.frames_dir = tmp_path
    mark = len(fake.calls)
    movie = scope.camera.acquire_movie(LowDoseArea.RECORD)
    names = [n for n, _ in sent_since(fake, mark)]
    assert names == ["R", "bufferImage", "ReportLastFrameFile"]  # saving was turned on once
    assert ("SetDoseFracParams", ("R", 1, 1)) in fake.calls
    preset = fake.twin.optics.preset(LowDoseArea.RECORD)
    assert movie.n_frames == preset.n_frames
    assert movie.frames.shape[1:] == movie.image.data.shape
    np.testing.assert_allclose(movie.frames.sum(axis=0).mean(), movie.image.data.mean(), rtol=0.05)


def test_a_plain_record_after_a_movie_saves_no_frames(
    fake: FakeSerialEM, make_scope: Build, tmp_path: Path
) -> None:
    # SerialEM saves frames for every shot of a parameter set whose saving is on: a Record asked
    # for as an image only (a retake, a set-up Record) must not leave a movie on disk
    scope = make_scope()
    fake.frames_dir = tmp_path
    scope.camera.acquire_movie(LowDoseArea.RECORD)
    mark = len(fake.calls)
    scope.camera.acquire(LowDoseArea.RECORD)
    scope.camera.acquire(LowDoseArea.RECORD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames_001.mrc"]
    names = [n for n, _ in sent_since(fake, mark)]
    assert names.count("SetDoseFracParams") == 1  # turned off once, before the first image
    assert ("SetDoseFracParams", ("R", 1, 0)) in fake.calls[mark:]
    # the next movie turns saving on again and links its own file
    movie = scope.camera.acquire_movie(LowDoseArea.RECORD)
    assert movie.source_path == tmp_path / "frames_002.mrc"
    assert len(list(tmp_path.iterdir())) == 2


def test_images_carry_the_facility_voltage_and_cs(fake: FakeSerialEM) -> None:
    from tomopilot.instrument.serialem import SerialEMOptions, SerialEMSession

    options = SerialEMOptions(voltage_kv=200.0, cs_mm=2.2)
    scope = SerialEMMicroscope(SerialEMSession(fake), options=options)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    assert image.state is not None
    assert (image.state.voltage_kv, image.state.cs_mm) == (200.0, 2.2)
