"""Map pixel <-> stage geometry (hypothesis) and the .nav round trip of the module's Navigator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tomopilot.instrument.twin_serialem.navigator import (
    MAP,
    POINT,
    MapInfo,
    Navigator,
    NavItem,
)


def _map(rotation_deg: float, pixel_um: float, tilt_deg: float, file: str = "map.mrc") -> MapInfo:
    r = math.radians(rotation_deg)
    matrix = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]]) / pixel_um
    return MapInfo(
        file=file,
        section=0,
        camera_set=0,
        binning=8,
        pixel_size_a=pixel_um * 1e4,
        shape_xy=(384, 256),
        centre_stage_um=(12.5, -40.0),
        tilt_deg=tilt_deg,
        specimen_to_camera=matrix,
    )


@given(
    rotation=st.floats(-180, 180),
    pixel_um=st.floats(0.001, 0.05),
    tilt=st.floats(-60, 60),
    x=st.floats(-0.5, 383.5),
    y=st.floats(-0.5, 255.5),
)
def test_pixel_and_stage_positions_are_inverse(
    rotation: float, pixel_um: float, tilt: float, x: float, y: float
) -> None:
    info = _map(rotation, pixel_um, tilt)
    stage = info.stage_of_pixel(x, y)
    assert info.pixel_of_stage(*stage) == pytest.approx((x, y), abs=1e-6)
    # the map centre is where the map was taken; Y on the stage is stretched by 1/cos(tilt)
    cx, cy = info.stage_of_pixel(383 / 2, 255 / 2)
    assert (cx, cy) == pytest.approx(info.centre_stage_um, abs=1e-9)
    a, b, c, d = info.scale_matrix()
    step = np.array(info.stage_of_pixel(x + 1, y)) - np.array(stage)
    assert np.array([[a, b], [c, d]]) @ step == pytest.approx((1.0, 0.0), abs=1e-6)


def test_nav_round_trip_keeps_items_and_maps(tmp_path: Path) -> None:
    nav = Navigator()
    info = _map(85.3 + 90, 0.0224, 0.0, str(tmp_path / "map.mrc"))
    map_id = nav.new_id()
    nav.add(
        NavItem(
            "1",
            MAP,
            (12.5, -40.0, 3.25),
            map_id,
            note="Sec 0 - map.mrc",
            points=[(0.0, 0.0)] * 5,
            map=info,
        )
    )
    for label, (x, y) in (("2", (13.0, -39.5)), ("T3", (12.0, -40.7))):
        nav.add(
            NavItem(
                label,
                POINT,
                (x, y, 3.25),
                nav.new_id(),
                note="target",
                acquire=True,
                group_id=77,
                drawn_id=map_id,
                points=[(x, y)],
            )
        )
    first = nav.save(tmp_path / "a.nav").read_text()
    again = Navigator()
    again.load(tmp_path / "a.nav")
    second = again.save(tmp_path / "b.nav").read_text()
    assert first.replace("a.nav", "b.nav") == second
    assert [i.label for i in again.items] == ["1", "2", "T3"]
    loaded = again.items[0].map
    assert loaded is not None and loaded.file == str(tmp_path / "map.mrc")
    assert loaded.pixel_of_stage(13.0, -39.5) == pytest.approx(
        info.pixel_of_stage(13.0, -39.5), abs=1e-3
    )
    assert again.map_of(again.items[2]) is again.items[0]
    assert again.items[1].acquire and again.items[1].group_id == 77
