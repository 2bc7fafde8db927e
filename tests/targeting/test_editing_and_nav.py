"""Editing target sets, manual selection, Navigator items, warnings and virtual maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from targeting_helpers import NO_DRIFT, twin

from tomopilot.instrument import LowDoseArea
from tomopilot.io.navigator import NavDocument, read_nav, write_nav
from tomopilot.targeting import (
    GeoPoint,
    MapImage,
    Target,
    TargetEditError,
    TargetSet,
    acquire_montage,
    copy_to_points,
    fill_polygon,
    find_item,
    grid_bar_warnings,
    group_points,
    image_shift_warnings,
    load_targets,
    make_tracking,
    name_files,
    nav_items,
    overlap_warnings,
    reorder,
    save_targets,
    set_overrides,
    set_skip,
    target_items,
    targets_from_image_shifts,
    targets_from_nav_points,
    targets_from_shifts,
    targets_from_specimen_points,
)
from tomopilot.targeting.realign import measure_misplacement
from tomopilot.targeting.virtual_maps import virtual_maps_for_scope, write_map_mrc


def _three() -> TargetSet:
    return TargetSet(
        targets=[Target(), Target(ss_x_um=2.0, ss_y_um=1.0), Target(ss_x_um=-1.0, ss_y_um=3.0)],
        geo_points=[GeoPoint(ss_x_um=4.0, ss_y_um=4.0)],
    )


def test_make_tracking_re_expresses_shifts() -> None:
    out = make_tracking(set_skip(_three(), [1]), 1)
    assert [t.ss_um for t in out.targets] == [(0.0, 0.0), (-2.0, -1.0), (-3.0, 2.0)]
    assert out.geo_points == [GeoPoint(ss_x_um=2.0, ss_y_um=3.0)]
    assert not out.targets[0].skip  # the tracking target is never skipped
    assert _three().targets[1].ss_um == (2.0, 1.0)  # the input is unchanged


def test_reorder_skip_and_overrides() -> None:
    ts = reorder(_three(), [0, 2, 1])
    assert [t.ss_um for t in ts.targets] == [(0.0, 0.0), (-1.0, 3.0), (2.0, 1.0)]
    with pytest.raises(TargetEditError):
        reorder(ts, [0, 0, 1])
    with pytest.raises(TargetEditError, match="target 7"):
        set_skip(ts, [6])
    ts = set_overrides(ts, {"pretilt": -9.5, "maxTilt": 54}, {"previewAli": True})
    ts = set_overrides(ts, {"previewAli": 2.0}, remove=["maxTilt"])
    assert ts.settings == {"pretilt": -9.5, "previewAli": 2.0} and ts.bool_settings == {}
    assert set_skip(ts, [1, 2]).active == [0]


def test_copy_to_acq(tmp_path: Path) -> None:
    ts = name_files(_three(), "L3", maps=False)
    copies = copy_to_points(ts, [(100.0, 50.0), (-20.0, 7.5)], "L3")
    assert [name for name, _ in copies] == ["L3_tgts_p01.txt", "L3_tgts_p02.txt"]
    second = copies[1][1]
    assert (
        second.targets[0].stage_x_um == -20.0 and second.targets[2].ts_file == "L3_p02_ts_003.mrc"
    )
    assert [t.ss_um for t in second.targets] == [t.ss_um for t in ts.targets]
    path = save_targets(tmp_path / copies[1][0], second)
    assert load_targets(path) == second


def test_manual_selections(real_data: Path) -> None:
    assert [t.ss_um for t in targets_from_specimen_points([(5, 5), (6, 7)]).targets] == [
        (0.0, 0.0),
        (1.0, 2.0),
    ]
    assert len(targets_from_shifts([(1, 0), (0, 1)]).targets) == 3
    shifted = targets_from_image_shifts([(1, 1), (2, 3)], specimen_to_is=np.diag([2.0, 1.0]))
    assert shifted.targets[1].ss_um == (0.5, 2.0)
    doc = read_nav(real_data / "nav" / "pyem_tutorial1_nav1.nav")
    ts = targets_from_nav_points(group_points(doc, "1401770435"))
    assert len(ts.targets) == 20 and ts.targets[0].stage_x_um == 194.899
    assert ts.targets[1].ss_um == pytest.approx((193.465 - 194.899, -306.614 + 299.917))


def test_target_items_round_trip_through_a_nav_file(tmp_path: Path, real_data: Path) -> None:
    doc = read_nav(real_data / "nav" / "pyem_sort.nav")
    ts = name_files(_three(), "L3", maps=False)
    items = target_items(
        doc,
        ts,
        stage_origin_um=(60.0, 20.0, -39.85),
        targets_file="L3_tgts.txt",
        beam_radius_um=0.75,
    )
    doc.sections.extend(items)
    path = write_nav(tmp_path / "with_targets.nav", doc)
    again = read_nav(path)
    assert again == doc
    first = find_item(again, "001")
    assert (
        first.acquire and first.note == "L3_tgts.txt" and first.stage_xyz_um == (60.0, 20.0, -39.85)
    )
    assert find_item(again, "003").stage_xyz_um[:2] == (59.0, 23.0)
    beam = find_item(again, "002_beam")
    assert len(beam.points_um) == 33 and beam.item_type == 1
    old_ids = {i.map_id for i in nav_items(read_nav(real_data / "nav" / "pyem_sort.nav"))}
    new_ids = [i.map_id for i in nav_items(again)][-len(items) :]
    assert len(set(new_ids)) == len(items) and not old_ids & set(new_ids)


def test_warnings_for_is_limit_and_overlap() -> None:
    ts = TargetSet(targets=[Target(), Target(ss_x_um=14.7), Target(ss_y_um=2.0)])
    assert [w.targets for w in image_shift_warnings(ts, limit_um=15.0)] == [(1,)]
    overlaps = overlap_warnings(ts, beam_radius_um=0.75, max_tilt_deg=60.0)
    assert [w.targets for w in overlaps] == [(0, 2)]
    assert overlap_warnings(set_skip(ts, [2]), beam_radius_um=0.75, max_tilt_deg=60.0) == []


def test_grid_bar_warning_on_the_twin() -> None:
    scope = twin(
        21,
        stage={**NO_DRIFT, "xy_periodic_error_um": 0.0},
        specimen={"kind": "holey_film", "grid_pitch_um": 85.0, "grid_bar_um": 25.0},
    )
    scope.stage.move_to(x_um=0.0, y_um=25.0)  # the bar starts at y = 30 µm
    search = scope.camera.acquire(LowDoseArea.SEARCH)
    overview = MapImage.from_exposure(scope, search)
    # where target 1 (the field centre) really is: off the stage position by the axis offset
    true_y = scope.ground_truth.exposure(search.exposure_id).specimen_centre_um[1]
    to_bar = 30.0 - true_y
    ts = TargetSet(
        targets=[
            Target(),
            Target(ss_y_um=to_bar - 1.1),
            Target(ss_y_um=-6.0),
            Target(ss_y_um=to_bar - 0.3),
        ]
    )

    def warned(max_tilt: float) -> set[int]:
        found = grid_bar_warnings(
            ts, overview, origin_um=(0.0, 25.0), beam_radius_um=0.75, max_tilt_deg=max_tilt
        )
        return {w.targets[0] for w in found}

    # target 2 is 1.1 µm from the bar: clear at 0° (R = 0.75 µm), not at 60° (R/cos = 1.5 µm)
    assert warned(60.0) == {1, 3}
    assert warned(0.0) == {3}


def test_polygon_fill_on_a_real_polygon(real_data: Path) -> None:
    doc = read_nav(real_data / "nav" / "pyem_sort.nav")
    polygon = find_item(doc, "206")
    fill = fill_polygon(np.array(polygon.points_um), beam_diameter_um=0.8, max_tilt_deg=60.0)
    assert len(fill.targets.targets) >= 3
    assert overlap_warnings(fill.targets, beam_radius_um=0.4, max_tilt_deg=60.0) == []


def test_virtual_maps_from_a_view_montage(tmp_path: Path) -> None:
    scope = twin(
        22,
        stage=NO_DRIFT,
        presets={
            "view": {"unbinned_pixel_size_a": 8.0, "camera_area_px": [2048, 2048], "binning": 4}
        },
    )
    montage = acquire_montage(scope, LowDoseArea.VIEW, tiles=(3, 3))
    points = [(0.6, 0.4), (-1.1, 0.9)]
    maps = virtual_maps_for_scope(scope, montage, points)
    for point, virtual in zip(points, maps, strict=True):
        view = virtual[LowDoseArea.VIEW]
        preview = virtual[LowDoseArea.PREVIEW]
        assert view.data.shape == (512, 512) and preview.data.shape == (256, 256)
        assert preview.pixel_size_a == pytest.approx(4.0) and view.pixel_size_a == pytest.approx(
            32.0
        )
        scope.optics.set_image_shift_um(point[0], point[1])
        fresh = scope.camera.acquire(LowDoseArea.VIEW)
        misplacement = measure_misplacement(scope, view.data, fresh)
        assert np.hypot(*misplacement.correction_um) < 0.05  # IS calibration error over ~1 µm
    path = write_map_mrc(tmp_path / "L3_tgt_001_view.mrc", maps[0][LowDoseArea.VIEW])
    import mrcfile

    with mrcfile.open(path) as mrc:
        assert mrc.data.shape == (512, 512) and float(mrc.voxel_size.x) == pytest.approx(32.0)
    with pytest.raises(FileExistsError):
        write_map_mrc(path, maps[0][LowDoseArea.VIEW])
    assert isinstance(NavDocument.new(), NavDocument)
