"""Command families against SerialEM's documented behaviour, checked on the twin's truth."""

from __future__ import annotations

import math
from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest
from scipy import ndimage
from serialem_helpers import SMALL

from tomopilot.instrument.events import StageMoved
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin_serialem import SEMerror, SEMexited, SerialEMModule, make_module
from tomopilot.io.navigator import read_nav


def test_buffers_roll_from_a_down_to_c_and_keep_the_others(sem: SerialEMModule) -> None:
    sem.V()
    sem.Copy("A", "D")  # D is past the rolling buffers: never overwritten by new images
    ids = []
    for _ in range(4):
        sem.R()
        ids.append(sem.session.buffers.get("A").exposure_id)  # type: ignore[union-attr]
    got = {b: sem.session.buffers.get(b).exposure_id for b in "ABCD"}  # type: ignore[union-attr]
    assert got["A"] == ids[3] and got["B"] == ids[2] and got["C"] == ids[1]
    assert got["D"] == 0  # the View copied before the Records
    assert ids[0] not in got.values()  # pushed past C: discarded
    assert sem.ImageProperties("B")[5] == 3  # parameter set of a rolled image: Record


def test_incremental_image_shift_refused_beyond_the_limit(sem: SerialEMModule) -> None:
    limit = sem.ReportProperty("ImageShiftLimit")
    assert limit == 15.0
    assert sem.ImageShiftByMicrons(10.0, 0.0) == 0.0
    assert sem.ImageShiftByMicrons(6.0, 0.0) == 1.0  # 16 µm: refused, nothing moves
    assert sem.ReportSpecimenShift() == pytest.approx((10.0, 0.0))
    assert sem.ImageShiftByUnits(0.0, -20.0) == 1.0
    sem.SetProperty("ImageShiftLimit", 5.0)  # PACEtomo's way of arming a smaller limit
    assert sem.ImageShiftByMicrons(-4.0, 0.0) == 1.0  # 6 µm > 5
    assert sem.ImageShiftByMicrons(-6.0, 2.0) == 0.0
    assert sem.ReportSpecimenShift() == pytest.approx((4.0, 2.0))


def test_image_shift_units_pixels_and_microns_agree(sem: SerialEMModule) -> None:
    sem.GoToLowDoseArea("R")
    to_cam = np.array(sem.SpecimenToCameraMatrix(0)).reshape(2, 2)
    cam_to_spec = np.array(sem.CameraToSpecimenMatrix(0)).reshape(2, 2)
    assert to_cam @ cam_to_spec == pytest.approx(np.eye(2))
    pixel_um = 1 / math.sqrt(abs(np.linalg.det(to_cam)))
    assert pixel_um == pytest.approx(2.0e-4)  # Record: 2 Å unbinned
    assert sem.ImageShiftByPixels(100.0, 0.0) == 0.0  # 100 unbinned px of image motion
    spec = np.array(sem.ReportSpecimenShift())
    assert np.hypot(*spec) == pytest.approx(100 * pixel_um, rel=1e-6)
    report = sem.ReportImageShift()
    assert report[2:4] == pytest.approx((100.0, 0.0), abs=1e-6)  # camera shift readout
    sem.ImageShiftByMicrons(*(-spec))
    assert sem.ReportImageShift()[:2] == pytest.approx((0.0, 0.0), abs=1e-9)


def _moves(scope: TwinMicroscope) -> list[tuple[float, float]]:
    moves: list[tuple[float, float]] = []
    scope.events.subscribe(StageMoved, lambda e: moves.append((e.x_um, e.y_um)))
    return moves


def test_reset_image_shift_moves_the_stage_with_backlash(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    sem.MoveStageTo(10.0, 10.0)
    moves = _moves(scope)
    sem.SetImageShift(-2.0, -1.0)
    sem.ResetImageShift(2)  # impose backlash, then relax by StageRelaxation
    assert sem.ReportImageShift()[:2] == (0.0, 0.0)
    # approach from below (5 µm beyond), arrive, then relax back by 0.025 µm
    assert moves[0] == pytest.approx((3.0, 4.0))
    assert moves[1] == pytest.approx((8.0, 9.0))
    assert moves[2] == pytest.approx((7.975, 8.975))
    assert len(moves) == 3
    moves.clear()
    sem.SetImageShift(1.0, 1.0)
    sem.ResetImageShift()  # no backlash asked: one move
    assert moves == [pytest.approx((8.975, 9.975))]


def test_reset_image_shift_at_tilt_foreshortens_y_and_refocuses(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    sem.TiltTo(30.0)
    sem.SetDefocus(-2.0)
    moves = _moves(scope)
    sem.ImageShiftByMicrons(-0.5, -1.0)
    sem.ResetImageShift(1)  # backlash only below 10°: a single move
    assert len(moves) == 1
    assert moves[0] == pytest.approx((-0.5, -1.0 / math.cos(math.radians(30))))
    assert sem.ReportDefocus() == pytest.approx(-2.0 - 1.0 * math.tan(math.radians(30)))


def test_reset_image_shift_keeps_the_same_specimen_point(tmp_path: Path) -> None:
    """With a perfect stage and IS calibration the same specimen point stays centred."""
    from serialem_helpers import SMALL

    from tomopilot.instrument.twin import TwinConfig

    perfect = {
        "xy_periodic_error_um": 0.0,
        "xy_backlash_um": 0.0,
        "jump_probability": 0.0,
        "step_error_sigma_um": 0.0,
        "drift_nm_s": 0.0,
        "drift_floor_nm_s": 0.0,
    }
    config = TwinConfig.model_validate(
        {**SMALL, "stage": perfect, "optics": {"is_scale_error": 0.0, "is_rotation_error_deg": 0.0}}
    )
    scope = TwinMicroscope(config)
    sem = make_module(scope, directory=tmp_path)
    sem.Eucentricity(3)
    sem.TiltTo(20.0)
    sem.ImageShiftByMicrons(1.0, 1.5)
    sem.R()
    before = scope.ground_truth.exposures[-1]
    sem.ResetImageShift()
    sem.R()
    after = scope.ground_truth.exposures[-1]
    from tomopilot.instrument.twin_serialem.truth_report import _centre_point

    point = _centre_point(scope, before)
    assert np.hypot(*after.offset_nm(point)) < 2.0


def _textured(scope: TwinMicroscope, sem: SerialEMModule, shift: tuple[float, float]) -> None:
    rng = np.random.default_rng(3)
    texture = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 3) * 50 + 100
    moved = ndimage.shift(texture, (shift[1], shift[0]), order=3, mode="wrap")
    for data, letter in ((moved, "A"), (texture, "B")):  # A first: putting into A rolls A to B
        data = data.copy()
        data[:, :70] = 0.5  # a dark border (a grid bar), the same in both images
        sem.PutImageInBuffer(data.astype(np.float32), letter)


def test_align_to_trims_dark_borders_unless_told_not_to(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    sem.R()  # gives the buffers a camera matrix (Record, binned 4)
    _textured(scope, sem, (6.0, -4.0))
    sem.AlignTo("B", 1)  # no image shift change
    px = np.array(sem.ReportAlignShift()[:2]) / -4  # unbinned content motion -> binned shift
    assert px == pytest.approx((6.0, -4.0), abs=0.2)
    assert sem.ReportImageShift()[:2] == (0.0, 0.0)
    _textured(scope, sem, (6.0, -4.0))
    sem.AlignTo("B", 1, 1)  # no trimming: the fixed border edge pulls the peak towards 0
    untrimmed = np.array(sem.ReportAlignShift()[:2]) / -4
    assert np.hypot(*(untrimmed - (6.0, -4.0))) > 1.0


def test_align_to_corrects_by_image_shift_and_honours_the_shift_limit(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    from tomopilot.instrument.twin_serialem.truth_report import _centre_point

    sem.R()
    sem.Copy("A", "P")
    point = _centre_point(scope, scope.ground_truth.exposures[-1])
    sem.ImageShiftByMicrons(0.08, -0.05)  # the field is now off by 94 nm
    sem.R()
    sem.LimitNextAutoAlign(0.02)  # nothing can match within 20 nm
    assert sem.AlignTo("P") == -1.0
    assert sem.ReportSpecimenShift() == pytest.approx((0.08, -0.05))  # nothing applied
    sem.LimitNextAutoAlign(0.2)
    assert sem.AlignTo("P") is None
    ali = sem.ReportAlignShift()
    assert ali[4:6] == pytest.approx((-80.0, 50.0), abs=6.0)  # nm on the specimen
    sem.R()
    assert np.hypot(*scope.ground_truth.exposures[-1].offset_nm(point)) < 8.0
    assert sem.ReportISforBufferShift("A") == (0.0, 0.0)  # a new image: not aligned yet


def test_files_are_real_mrc_and_mdoc_with_autodoc_keys(sem: SerialEMModule, tmp_path: Path) -> None:
    sem.OpenNewFile("ts.mrc")
    sem.AreaForCumulRecordDose(2)
    for tilt in (0.0, 3.0):
        sem.TiltTo(tilt)
        sem.R()
        sem.S()
        sem.AddToAutodoc("SpecimenShift", "0.5 -0.25")
        sem.AddToAutodoc("MyKey", 7.125)
        sem.WriteAutodoc()
        sem.AccumulateRecordDose(sem.ImageConditions("A")[0])
    assert sem.ReportFileZsize() == 2
    sem.CloseFile()
    with mrcfile.open(tmp_path / "ts.mrc", permissive=False) as mrc:
        assert mrc.data.shape == (2, 256, 256)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)
    table = mdocfile.read(tmp_path / "ts.mrc.mdoc")
    assert list(table["TiltAngle"]) == pytest.approx([0.0, 3.0])
    assert list(table["PriorRecordDose"]) == pytest.approx([0.0, 3.0])
    text = (tmp_path / "ts.mrc.mdoc").read_text()
    assert "SpecimenShift = 0.5 -0.25" in text and "MyKey = 7.125" in text
    with pytest.raises(SEMerror, match="already exists"):
        sem.OpenNewFile("ts.mrc")
    sem.OpenOldFile("ts.mrc")  # continue the stack: its autodoc sections are kept
    sem.S()
    sem.CloseFile()
    assert len(mdocfile.read(tmp_path / "ts.mrc.mdoc")) == 3
    sem.OpenOldFile("ts.mrc")
    sem.ReadFile(1)  # into the read buffer: F in Low Dose
    assert np.array_equal(sem.bufferImage("F"), mrcfile.read(tmp_path / "ts.mrc")[1])


def test_navigator_items_and_nav_file(sem: SerialEMModule, tmp_path: Path) -> None:
    group = int(sem.GetUniqueNavID())
    for x in (1.0, 2.0, 3.0):
        sem.AddStagePosAsNavPoint(x, -x, 0.5, group)
    assert sem.ReportNumTableItems() == 3
    sem.ChangeItemLabel(2, "T2")
    sem.ChangeItemNote(2, "second target")
    sem.SetItemAcquire(2, 1)
    assert sem.NavIndexWithLabel("t2") == 2 and sem.NavIndexWithNote("second target") == 2
    assert sem.ReportOtherItem(2) == (2.0, 2.0, -2.0, 0.5, 0.0)
    assert sem.GetVariable("navLabel") == "T2" and sem.GetVariable("navNote") == "second target"
    assert sem.GetNavGroupStageCoords(group, "gx", "gy", "gz") == 3.0
    assert sem.GetVariable("gx").split() == ["1.0000", "2.0000", "3.0000"]
    sem.DeleteNavigatorItem(1)
    assert sem.NavIndexWithLabel("T2") == 1
    sem.SaveNavigator("targets.nav")
    doc = read_nav(tmp_path / "targets.nav")
    items = list(doc.items())
    assert [s.name for s in items] == ["T2", "3"]
    assert items[0].get("Acquire") == "1" and items[0].get("Note") == "second target"
    assert items[0].get("StageXYZ") == "2 -2 0.5"
    sem.ReadNavFile("targets.nav")
    assert sem.ReportNumTableItems() == 2 and sem.ReportItemAcquire(1) == 1


def test_dialogs_take_answers_or_defaults(scope: TwinMicroscope, tmp_path: Path) -> None:
    sem = make_module(
        scope,
        directory=tmp_path,
        answers={
            "Start the series": "no",
            "How many": 5,
            "Sample name": "lamella 3",
            "Go on": False,
        },
    )
    assert sem.YesNoBox("Start the series now?") == 0.0
    assert sem.YesNoBox("Anything else?") == 1.0  # default: Yes
    assert sem.EnterDefaultedNumber(3, -1, "How many targets?") == 5.0
    assert sem.EnterDefaultedNumber(2.5, 1, "Step?") == 2.5
    assert sem.EnterString("name", "Sample name") == "lamella 3"
    assert sem.GetVariable("name") == "lamella 3"
    sem.OKBox("Done")
    with pytest.raises(SEMexited, match="User STOP"):
        sem.Pause("Go on?")
    assert [a["dialog"] for a in sem.session.answers.asked][:2] == ["YesNoBox", "YesNoBox"]
    assert sem.session.answers.unused() == []


def test_clock_delays_and_housekeeping_run_on_the_twin_clock(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    sem.ResetClock()
    sem.Delay(2, "min")
    sem.Delay(500)  # > 60 without units: milliseconds
    sem.Delay(3)  # seconds
    assert sem.ReportClock() == pytest.approx(123.5)
    start = scope.clock.now_s()
    sem.LongOperation("Re", 0)  # refill now: the fill's duration passes
    assert scope.clock.now_s() - start >= scope.config.housekeeping.dewar_refill_duration_s
    assert sem.AreDewarsFilling() == 0.0
    sem.LongOperation("Re", 100)  # done within 100 h: skipped
    assert scope.clock.now_s() - start < scope.config.housekeeping.dewar_refill_duration_s + 5
    sem.SetColumnOrGunValve(0)
    n = len(scope.ground_truth.exposures)
    sem.R()  # no beam: an empty image, and no dose given
    assert sem.ReportMeanCounts() == 0.0 and len(scope.ground_truth.exposures) == n
    sem.SetColumnOrGunValve(1)
    assert sem.ReportColumnOrGunValve() == 1.0


def test_focus_autofocus_and_low_dose_offsets(sem: SerialEMModule, scope: TwinMicroscope) -> None:
    sem.SetTargetDefocus(-2.5)
    sem.G()
    _measured, error = sem.ReportAutoFocus()
    assert error == 0.0
    sem.R()
    truth = scope.ground_truth.exposures[-1]
    assert truth.defocus_um == pytest.approx(-2.5, abs=0.15)  # autofocus error and noise
    record = sem.ReportDefocus()
    sem.GoToLowDoseArea("V")
    assert sem.ReportDefocus() == pytest.approx(record + sem.ReportLDDefocusOffset("V"))
    assert sem.ReportLowDose() == (1.0, 0.0)
    sem.GoToLowDoseArea("R")
    assert sem.ReportAxisPosition("F") == (3.0, 0.0)


def test_persistent_variables_survive_to_the_next_session(
    scope: TwinMicroscope, tmp_path: Path
) -> None:
    first = make_module(scope, directory=tmp_path, record_dir=tmp_path)
    first.SetPersistentVar("warned", 1)
    second = make_module(scope, directory=tmp_path, record_dir=tmp_path)
    assert second.IsVariableDefined("warned") == 1.0 and second.GetVariable("warned") == "1"


def test_ctffind_recovers_the_true_defocus(tmp_path: Path) -> None:
    from serialem_helpers import SMALL

    from tomopilot.instrument.twin import TwinConfig

    presets = {**SMALL["presets"], "record": {"binning": 2, "exposure_s": 2.0}}
    scope = TwinMicroscope(TwinConfig.model_validate({**SMALL, "presets": presets}))
    sem = make_module(scope, directory=tmp_path)
    sem.SetDefocus(-3.0)
    sem.R()
    truth = scope.ground_truth.exposures[-1].defocus_um  # the specimen is not at focus 0
    defocus, astig, _angle, phase, score, resolution = sem.CtfFind("A", -1.0, -6.0)
    assert defocus == pytest.approx(truth, abs=0.05)
    assert astig < 0.15 and phase == 0.0 and score > 0 and 4.0 < resolution < 40.0
    with pytest.raises(SEMerror, match="not a range of underfocus"):
        sem.CtfFind("A", 1.0, 1.0)


def test_frames_are_saved_when_dose_fractionation_asks(sem: SerialEMModule, tmp_path: Path) -> None:
    import tifffile

    with pytest.raises(SEMerror, match="No frames have been saved"):
        sem.ReportLastFrameFile()
    sem.SetDoseFracParams("R", 1, 1)
    sem.SetFrameBaseName(0, 1, 0, "L1_tilt")
    sem.OpenNewFile("ts.mrc")
    sem.R()
    sem.S()
    sem.CloseFile()
    path = Path(sem.ReportLastFrameFile())
    assert path.parent == tmp_path / "frames" and path.name == "L1_tilt_001_0.0.tif"
    frames = tifffile.imread(path)
    assert frames.shape == (10, 256, 256) and sem.ReportNumFramesSaved() == 10.0
    # the frames add up to the image's counts
    assert frames.sum(axis=0).mean() == pytest.approx(sem.ReportMeanCounts(), rel=0.02)
    row = mdocfile.read(tmp_path / "ts.mrc.mdoc").iloc[0]
    assert str(row["SubFramePath"]).replace("\\", "/") == "frames/L1_tilt_001_0.0.tif"
    assert row["NumSubFrames"] == 10


def test_early_return_next_shot_hands_back_the_sum_while_the_frames_are_written(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    from tomopilot.instrument.twin.camera import FRAME_SAVE_S

    cam = scope.config.camera
    clock = scope.clock

    def timed(*commands: tuple[str, tuple[object, ...]]) -> float:
        start = clock.now_s()
        for name, args in commands:
            getattr(sem, name)(*args)
        return clock.now_s() - start

    sem.SetDoseFracParams("R", 1, 1)
    plain = timed(("R", ()))
    full_mean = sem.ReportMeanCounts()
    n = int(sem.ReportNumFramesSaved())
    left = cam.readout_s + n * FRAME_SAVE_S - cam.sum_return_s
    # -1: the full sum comes back sum_return_s after the exposure, the writing goes on
    early = timed(("EarlyReturnNextShot", (-1,)), ("R", ()))
    assert early == pytest.approx(plain - left)
    assert sem.ReportMeanCounts() == pytest.approx(full_mean, rel=0.05)
    assert sem.ReportNumFramesSaved() == n
    # for the next shot only: the one after waits for the writing and returns in full
    assert timed(("R", ())) == pytest.approx(left + plain)
    # n frames: the sum of the first n; 0: no summed image (buffer A keeps the last one)
    timed(("EarlyReturnNextShot", (n // 2,)), ("R", ()))
    assert sem.ReportMeanCounts() == pytest.approx(full_mean / 2, rel=0.1)
    before = np.array(sem.bufferImage("A"))
    timed(("EarlyReturnNextShot", (0,)), ("R", ()))
    np.testing.assert_array_equal(np.array(sem.bufferImage("A")), before)
    # a shot without frames gets nothing from it, and the request is used up by it
    clock.sleep(5.0)
    single = timed(("L", ()))
    assert timed(("EarlyReturnNextShot", (-1,)), ("L", ())) == pytest.approx(single)
    assert timed(("R", ())) == pytest.approx(plain)


def test_axis_position_binning_and_tilt_limit(sem: SerialEMModule, scope: TwinMicroscope) -> None:
    sem.SetAxisPosition("F", -2.5)
    assert sem.ReportAxisPosition("F") == (-2.5, 0.0)
    with pytest.raises(SEMerror, match="Focus or Trial"):
        sem.SetAxisPosition("R", 1.0)
    sem.RestoreLowDoseParams()
    assert sem.ReportAxisPosition("F") == (3.0, 0.0)
    sem.SetBinning("R", 8)
    assert sem.ReportBinning("R") == 8.0
    assert sem.ReportProperty("MaximumTiltAngle") == scope.stage.limits.tilt_deg


def test_parameter_sets_change_and_restore(sem: SerialEMModule, scope: TwinMicroscope) -> None:
    sem.SetExposure("R", 0.5)
    sem.SetBinning("R", 8)
    sem.SetCameraArea("R", "H")  # the centred half: 512 unbinned px on this camera
    assert sem.ReportExposure("R")[0] == 0.5
    sem.R()
    assert sem.ImageProperties()[:4] == (64.0, 64.0, 8.0, 0.5)
    sem.Copy("A", "M")
    sem.RestoreCameraSet("R")
    sem.R()
    assert sem.ImageProperties()[:4] == (256.0, 256.0, 4.0, 1.0)
    sem.AcquireToMatchBuffer("M")  # the kept image's set, binning, exposure and size
    assert sem.ImageProperties()[:4] == (64.0, 64.0, 8.0, 0.5)
    assert sem.ReportExposure("R")[0] == 1.0  # the set itself is left as it was


def test_tilt_with_restore_and_realign_ending_with_zero_image_shift(
    sem: SerialEMModule, scope: TwinMicroscope
) -> None:
    sem.MoveStageTo(2.0, -1.0)
    sem.TiltTo(20.0, 1)  # #R: the stage X, Y are put back after tilting
    assert sem.ReportStageXYZ()[:2] == pytest.approx((2.0, -1.0))
    sem.TiltBy(-20.0)
    sem.Eucentricity(3)
    sem.OpenNewFile("map.mrc")
    sem.V()
    sem.NewMap()
    sem.CloseFile()
    point = int(sem.AddImagePosAsNavPoint("A", 140.0, 120.0))
    sem.RealignToOtherItem(point, 1, 0, 0.05, 2, 1)  # reset IS above 50 nm, end with zero IS
    assert sem.ReportImageShift()[:2] == (0.0, 0.0)
    x, y = sem.ReportOtherItem(point)[1:3]
    assert sem.ReportStageXYZ()[:2] == pytest.approx((x, y), abs=0.3)
    with pytest.raises(SEMerror, match="must be given together"):
        sem.RealignToOtherItem(point, 1, 0, 0.05)


def test_log_commands(scope: TwinMicroscope, tmp_path: Path) -> None:
    lines: list[str] = []
    sem = make_module(scope, directory=tmp_path, on_log=lines.append)
    sem.Echo("tilt", 3, 2.5)
    sem.EchoBreakLines("first\\nsecond")
    sem.ReportTiltAngle()  # reports are printed ...
    sem.SuppressReports()
    sem.ReportTiltAngle()  # ... unless suppressed
    assert lines == ["tilt 3 2.5", "first", "second", "Tilt angle 0.00"]
    sem.SaveLog(0, "session")
    assert (tmp_path / "session.log").read_text().splitlines() == lines
    sem.SetStatusLine(2, "running")
    assert sem.session.status_lines == {2: "running"}
    sem.ClearStatusLine()
    assert sem.session.status_lines == {}


def test_align_between_mags_puts_the_field_on_the_view_centre(tmp_path: Path) -> None:
    from serialem_helpers import SMALL

    from tomopilot.instrument.twin import TwinConfig
    from tomopilot.instrument.twin_serialem.truth_report import _centre_point

    presets = {**SMALL["presets"], "view": {"binning": 2}}  # View 28 Å/px, Preview 8 Å/px
    scope = TwinMicroscope(TwinConfig.model_validate({**SMALL, "presets": presets}))
    sem = make_module(scope, directory=tmp_path)
    sem.SetDefocus(-4.0)
    sem.V()
    sem.Copy("A", "P")
    sem.L()
    point = _centre_point(scope, scope.ground_truth.exposures[-1])
    sem.ImageShiftByMicrons(0.05, -0.03)
    sem.L()
    applied = sem.AlignBetweenMags("P")
    assert applied == pytest.approx((-0.05, 0.03), abs=0.006)
    sem.L()
    assert np.hypot(*scope.ground_truth.exposures[-1].offset_nm(point)) < 6.0
    with pytest.raises(SEMerror, match="lower magnification"):
        sem.Copy("A", "Q")
        sem.AlignBetweenMags("Q")


@pytest.mark.parametrize("command", ["SetImageShift", "ImageShiftByMicrons"])
def test_a_shift_without_settling_multiplier_sets_no_time_out(tmp_path: Path, command: str) -> None:
    """SerialEM sets an image-shift time-out only for a settling multiplier #D > 0. Without it
    a Record right after a 5 µm jump starts after the camera's start-up alone, before the
    deflectors settled: its beam is short of the shift and its image smeared (the twin's truth).
    With #D 1 the Record waits out the table's delay (+ the start-up built into it) and is
    clean; #D 2 waits twice the delay."""
    seen = {}
    images: dict[float | None, np.ndarray] = {}
    for multiplier in (None, 1.0, 2.0):
        scope = TwinMicroscope(TwinConfig.model_validate(SMALL))
        sem = make_module(scope, directory=tmp_path / str(multiplier), record_dir=tmp_path)
        args = (5.0, 0.0) if multiplier is None else (5.0, 0.0, multiplier)
        shifted_s = scope.clock.now_s()
        getattr(sem, command)(*args)
        after_shift_s = scope.clock.now_s() - shifted_s
        sem.R()
        truth = scope.ground_truth.exposures[-1]
        seen[multiplier] = (truth, truth.time_s - shifted_s, after_shift_s)
        images[multiplier] = np.asarray(sem.session.buffers.get("A").data, np.float64)  # type: ignore[union-attr]
    bare, once, twice = seen[None], seen[1.0], seen[2.0]
    assert all(s[2] == 0.0 for s in seen.values())  # the command itself never waits
    start_up = TwinConfig.model_validate(SMALL).camera.pre_exposure_s
    assert bare[1] == pytest.approx(start_up)
    assert bare[0].is_blur_nm > 2.0  # a 25 nm lag at the shift, about 5 nm left at beam-on
    assert math.hypot(*bare[0].is_lag_um) > 2e-4
    assert once[0].is_blur_nm == 0.0 and once[0].is_lag_um == (0.0, 0.0)
    assert twice[0].is_blur_nm == 0.0
    delay = twice[1] - once[1]  # one more table delay
    assert once[1] == pytest.approx(delay + 0.25)  # delay + StartupForISDelays
    assert delay >= 0.5
    # the same place asked for; the bare Record's beam is short by its lag
    np.testing.assert_allclose(
        np.subtract(once[0].beam_centre_lab_um, bare[0].beam_centre_lab_um),
        bare[0].is_lag_um,
        atol=1e-9,
    )
    # the smear (about 7 pixels of 8 Å) takes detail out of the image: less power at 5-20 %
    # of the sampling frequency than the settled Record of the same place (same noise seed)
    assert _band_power(images[None]) < 0.95 * _band_power(images[1.0])


def _band_power(image: np.ndarray) -> float:
    power = np.abs(np.fft.rfft2(image - image.mean())) ** 2
    k = np.hypot(np.fft.rfftfreq(image.shape[1])[None, :], np.fft.fftfreq(image.shape[0])[:, None])
    return float(power[(k > 0.05) & (k < 0.2)].mean())
