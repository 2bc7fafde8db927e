"""Realign to a Navigator item, SerialEM's way, with the map's own imaging conditions.

Round 1 (items on a map, not the map itself): the stage goes to the map centre, an image is taken
with the map's parameter set and cross-correlated with the map; the shift is the stage error
there. Round 2: the stage goes to the item corrected by that error, an image is taken, and aligned
to the part of the map around the item; the residual is removed by image shift. With ``#S #N
#Z``: while the image shift left is above ``#S`` µm, it is reset with the stage and the item
realigned again, up to ``#N`` times; ``#Z`` = 1 ends with the image shift reset (stage moved).
``#R`` = 1 restores the low-dose area afterwards.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tomopilot.instrument.twin_serialem import calibration as cal
from tomopilot.instrument.twin_serialem.align_commands import correction_units, measure_shift
from tomopilot.instrument.twin_serialem.buffers import BufferImage
from tomopilot.instrument.twin_serialem.camera_commands import acquire
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.navigator import MapInfo, NavItem
from tomopilot.instrument.twin_serialem.navigator_commands import load_other_map, nav_of
from tomopilot.instrument.twin_serialem.optics_commands import shift_by_units
from tomopilot.instrument.twin_serialem.session import Session
from tomopilot.instrument.twin_serialem.stage_commands import reset_image_shift

ROUND1_MIN_OFFSET_UM = 0.5  # items closer than this to the map centre need only one round


def _map_image(session: Session, map_item: NavItem) -> BufferImage:
    info = map_item.map
    assert info is not None
    if info.image is None:
        index = nav_of(session).items.index(map_item) + 1
        load_other_map(session, index, "T")
    assert info.image is not None
    return info.image


def _patch(
    info: MapInfo, image: BufferImage, map_image: BufferImage, stage_xy: tuple[float, float]
) -> BufferImage:
    """The part of the map where ``image`` should be, at ``image``'s pixel size and shape."""
    px, py = info.pixel_of_stage(*stage_xy)
    scale = map_image.pixel_size_a / image.pixel_size_a
    h, w = image.data.shape
    rows = py + (np.arange(h) - (h - 1) / 2) / scale
    cols = px + (np.arange(w) - (w - 1) / 2) / scale
    grid = np.meshgrid(rows, cols, indexing="ij")
    data = ndimage.map_coordinates(
        map_image.data.astype(np.float32),
        grid,
        order=1,
        mode="constant",
        cval=float(np.mean(map_image.data)),
    ).astype(np.float32)
    template = image.copy()
    template.data = data
    return template


def _align_round(
    session: Session, info: MapInfo, map_image: BufferImage, stage_xy: tuple[float, float]
) -> np.ndarray | None:
    """Image with the map's set; the correction (specimen µm) to the map position."""
    image = acquire(session, info.camera_set)
    template = _patch(info, image, map_image, stage_xy)
    limit_um = session.properties.values.get("RealignItemMaxShiftMicrons", 3.0)
    limit_px = limit_um * float(np.sqrt(abs(np.linalg.det(image.specimen_to_camera))))
    shift = measure_shift(session, template, image, trim=True, limit_px=limit_px)
    if shift is None:
        return None
    return np.linalg.solve(image.specimen_to_camera, np.asarray(shift, np.float64))


def realign(
    session: Session, index: int, restore: int, reset: tuple[float, int, int] | None, name: str
) -> None:
    """Realign to the item at ``index`` (0 = the current item)."""
    nav = nav_of(session)
    item = nav.item(index)
    map_item = nav.map_of(item)
    if map_item is None or map_item.map is None:
        raise SEMerror(
            f"Item {item.label} is not a map nor drawn on one in script statement: {name} {index}",
            name,
        )
    info = map_item.map
    if info.camera_set < 0:
        raise SEMerror(
            f"Map {map_item.label} has no parameter set to image with in script "
            f"statement: {name} {index}",
            name,
        )
    map_image = _map_image(session, map_item)
    scope = session.scope
    area_before = session.ld_area
    target = (item.stage_um[0], item.stage_um[1])
    error = np.zeros(2)
    scope.optics.set_image_shift_units(0.0, 0.0)
    offset = np.hypot(target[0] - info.centre_stage_um[0], target[1] - info.centre_stage_um[1])
    if item is not map_item and offset > ROUND1_MIN_OFFSET_UM:
        scope.stage.move_to(x_um=info.centre_stage_um[0], y_um=info.centre_stage_um[1])
        first = _align_round(session, info, map_image, info.centre_stage_um)
        if first is None:
            raise SEMerror(
                f"Failure 1 in Realign to Item (no match at the map centre) in script "
                f"statement: {name} {index}",
                name,
            )
        error = np.asarray(cal.stage_for_specimen(session, (float(first[0]), float(first[1]))))
        scope.optics.set_image_shift_units(0.0, 0.0)
    scope.stage.move_to(x_um=target[0] + float(error[0]), y_um=target[1] + float(error[1]))
    threshold, max_resets, zero = reset if reset is not None else (np.inf, 0, 0)
    for attempt in range(max(0, max_resets) + 1):
        correction = _align_round(session, info, map_image, target)
        if correction is None:
            raise SEMerror(
                f"Failure 2 in Realign to Item (no match at the item) in script "
                f"statement: {name} {index}",
                name,
            )
        delta = cal.specimen_to_is(session) @ correction
        if shift_by_units(session, np.asarray(delta)) == (1,):
            raise SEMerror(
                f"Failure 3 in Realign to Item (image shift limit) in script "
                f"statement: {name} {index}",
                name,
            )
        left = float(np.hypot(*cal.image_shift_specimen_um(session)))
        if left <= threshold or attempt >= max_resets:
            break
        reset_image_shift(session, 1)
    if zero:
        reset_image_shift(session, 1)
    nav.current = nav.items.index(item) + 1
    if restore:
        session.ld_area = area_before


def _reset_args(args: tuple[float, ...], name: str) -> tuple[float, int, int] | None:
    if not args:
        return None
    if len(args) < 3:
        raise SEMerror(f"#S, #N and #Z must be given together in script statement: {name}", name)
    return float(args[0]), int(args[1]), int(args[2])


@command("RealignToOtherItem", "II|IFFFS")
def realign_to_other_item(
    session: Session, index: int, restore: int, continuous: int = 0, *rest: object
) -> Reported:
    """Realign to the item at ``index`` (1-based)."""
    if index <= 0:
        raise ValueError(f"Navigator index must be 1 or more, not {index}")
    numbers = tuple(float(v) for v in rest if not isinstance(v, str))  # type: ignore[arg-type]
    realign(
        session, index, restore, _reset_args(numbers, "RealignToOtherItem"), "RealignToOtherItem"
    )
    return None


@command("RealignToNavItem", "I|IFFFS")
def realign_to_nav_item(
    session: Session, restore: int, continuous: int = 0, *rest: object
) -> Reported:
    """Realign to the current item."""
    numbers = tuple(float(v) for v in rest if not isinstance(v, str))  # type: ignore[arg-type]
    realign(session, 0, restore, _reset_args(numbers, "RealignToNavItem"), "RealignToNavItem")
    return None


__all__ = ["correction_units", "realign"]
