"""Navigator commands: items, maps, groups, reports, and moving to items.

Item indices are 1-based table positions as in SerialEM. ``ReportNavItem``/``ReportOtherItem``
report (index, x, y, z, type) and set the variables navLabel, navNote, navIndex, navIntLabel,
navRegis, navColor and navAcqIndex.
"""

from __future__ import annotations

import numpy as np

from tomopilot.instrument.twin_serialem import calibration as cal
from tomopilot.instrument.twin_serialem.camera_commands import need
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.file_commands import files_of, save
from tomopilot.instrument.twin_serialem.navigator import (
    MAP,
    POINT,
    POLYGON,
    MapInfo,
    Navigator,
    NavItem,
)
from tomopilot.instrument.twin_serialem.session import Session


def nav_of(session: Session) -> Navigator:
    """The session's Navigator (opened on first use, as SerialEM opens it for a script)."""
    found = session.extensions.get("navigator")
    if found is None:
        found = session.extensions["navigator"] = Navigator()
    assert isinstance(found, Navigator)
    return found


def _report_item(session: Session, index: int) -> Reported:
    nav = nav_of(session)
    item = nav.item(index)
    index = nav.items.index(item) + 1
    session.variables.update(
        navLabel=item.label,
        navNote=item.note,
        navIndex=str(index),
        navIntLabel=str(item.int_label),
        navRegis=str(item.regis),
        navColor=str(item.color),
        navAcqIndex=str(index if nav.acquiring else 0),
    )
    x, y, z = item.stage_um
    return index, x, y, z, item.kind


@command("ReportNavItem")
def report_nav_item(session: Session) -> Reported:
    """(index, x, y, z, type) of the current item."""
    return _report_item(session, 0)


@command("ReportOtherItem", "I")
def report_other_item(session: Session, index: int) -> Reported:
    """(index, x, y, z, type) of the item at ``index``."""
    if index <= 0:
        raise ValueError(f"Navigator index must be 1 or more, not {index}")
    return _report_item(session, index)


@command("ReportNumTableItems")
def report_num_table_items(session: Session) -> Reported:
    """How many items the Navigator holds."""
    return (len(nav_of(session).items),)


@command("NavIndexWithLabel", "S")
def nav_index_with_label(session: Session, label: str) -> Reported:
    """Index of the item with this label (case-insensitive), 0 if none."""
    folded = label.strip().casefold()
    items = nav_of(session).items
    return (next((i for i, it in enumerate(items, 1) if it.label.casefold() == folded), 0),)


@command("NavIndexWithNote", "S")
def nav_index_with_note(session: Session, note: str) -> Reported:
    """Index of the item with this note (case-insensitive), 0 if none."""
    folded = note.strip().casefold()
    items = nav_of(session).items
    return (next((i for i, it in enumerate(items, 1) if it.note.casefold() == folded), 0),)


@command("NavIndexItemDrawnOn", "I")
def nav_index_item_drawn_on(session: Session, index: int) -> Reported:
    """Index of the map an item was drawn on, 0 if none."""
    nav = nav_of(session)
    item = nav.item(index)
    return (nav.index_of_id(item.drawn_id) if item.drawn_id else 0,)


@command("ReportItemAcquire", "|I")
def report_item_acquire(session: Session, index: int = 0) -> Reported:
    """1 if the item is marked for Acquire."""
    return (1 if nav_of(session).item(index).acquire else 0,)


@command("SetItemAcquire", "|II")
def set_item_acquire(session: Session, index: int = 0, on: int = 1) -> Reported:
    """Mark (1) or unmark (0) an item for Acquire."""
    nav_of(session).item(index).acquire = bool(on)
    return None


@command("ChangeItemColor", "II")
def change_item_color(session: Session, index: int, color: int) -> Reported:
    """Colour index 0 to 5."""
    if not 0 <= color <= 5:
        raise ValueError(f"Item colour must be 0 to 5, not {color}")
    nav_of(session).item(index).color = color
    return None


@command("ChangeItemDraw", "II")
def change_item_draw(session: Session, index: int, draw: int) -> Reported:
    """Show (1) or hide (0) an item."""
    nav_of(session).item(index).draw = bool(draw)
    return None


@command("ChangeItemLabel", "IS")
def change_item_label(session: Session, index: int, label: str) -> Reported:
    """New label (no more than 10 characters, as SerialEM)."""
    if not label.strip() or len(label) > 10 or any(c in label for c in "[]=\n"):
        raise ValueError(f"Item label {label!r} must be 1 to 10 characters without [ ] =")
    item = nav_of(session).item(index)
    item.label = label.strip()
    session.record.add("nav_label", map_id=item.map_id, label=item.label)
    return None


@command("ChangeItemNote", "IS")
def change_item_note(session: Session, index: int, note: str) -> Reported:
    """New note."""
    if "\n" in note or "\r" in note:
        raise ValueError("An item note must be one line")
    nav_of(session).item(index).note = note
    return None


@command("ChangeItemGroupID", "II")
def change_item_group_id(session: Session, index: int, group: int) -> Reported:
    """New group ID (0 = no group)."""
    nav_of(session).item(index).group_id = group
    return None


@command("DeleteNavigatorItem", "I")
def delete_navigator_item(session: Session, index: int) -> Reported:
    """Remove an item (the indices after it move down by one)."""
    nav = nav_of(session)
    item = nav.item(index)
    nav.items.remove(item)
    nav.current = min(nav.current, len(nav.items))
    return None


@command("GetUniqueNavID")
def get_unique_nav_id(session: Session) -> Reported:
    """An ID unused by any item (for group IDs)."""
    return (nav_of(session).new_id(),)


def _new_point(
    session: Session, x: float, y: float, z: float, group: int, drawn_on: NavItem | None
) -> int:
    nav = nav_of(session)
    item = NavItem(
        label=nav.next_label(),
        kind=POINT,
        stage_um=(x, y, z),
        map_id=nav.new_id(),
        group_id=max(group, 0),
        drawn_id=drawn_on.map_id if drawn_on is not None else 0,
        regis=1,
        points=[(x, y)],
    )
    return nav.add(item)


@command("AddStagePosAsNavPoint", "FFF|I")
def add_stage_pos_as_nav_point(
    session: Session, x: float, y: float, z: float, group: int = 0
) -> Reported:
    """A point at a stage position; returns its index."""
    index = _new_point(session, x, y, z, group, None)
    item = nav_of(session).items[index - 1]
    session.record.add("nav_point", map_id=item.map_id, label=item.label, stage=[x, y, z])
    return (index,)


def _map_of_buffer(session: Session, letter: str) -> NavItem | None:
    image = need(session, letter, "AddImagePosAsNavPoint")
    if image.map_id is None:
        return None
    nav = nav_of(session)
    index = nav.index_of_id(image.map_id)
    return nav.items[index - 1] if index else None


@command("AddImagePosAsNavPoint", "BFF|FII")
def add_image_pos_as_nav_point(
    session: Session,
    letter: str,
    x_px: float,
    y_px: float,
    z: float = -9999.0,
    group: int = 0,
    *options: int,
) -> Reported:
    """A point at an image position (binned pixels, 0 = first) of a buffer; returns its index."""
    image = need(session, letter, "AddImagePosAsNavPoint")
    nx, ny = image.shape_xy
    if not (-0.5 <= x_px <= nx - 0.5 and -0.5 <= y_px <= ny - 0.5):
        raise ValueError(f"Position ({x_px}, {y_px}) lies outside the {nx} x {ny} image")
    map_item = _map_of_buffer(session, letter)
    info = map_item.map if map_item is not None else None
    if info is None:
        info = _map_info(session, image, "", -1)
    sx, sy = info.stage_of_pixel(x_px, y_px)
    stage_z = image.stage_xyz_um[2] if z < -9000 else z
    index = _new_point(session, sx, sy, stage_z, group, map_item)
    item = nav_of(session).items[index - 1]
    session.record.add(
        "nav_point",
        map_id=item.map_id,
        label=item.label,
        exposure_id=image.exposure_id,
        pixel=[x_px, y_px],
        stage=[sx, sy, stage_z],
    )
    return (index,)


def _array(session: Session, name: str) -> list[float]:
    text = session.variables.get(name)
    if text is None:
        raise ValueError(f"Variable {name} is not defined")
    try:
        return [float(v) for v in text.replace("\n", " ").split()]
    except ValueError as exc:
        raise ValueError(f"Variable {name} is not an array of numbers") from exc


@command("AddStagePointsAsPolygon", "SSF")
def add_stage_points_as_polygon(session: Session, xs_var: str, ys_var: str, z: float) -> Reported:
    """A polygon from array variables of stage X and Y; returns its index."""
    xs, ys = _array(session, xs_var), _array(session, ys_var)
    if len(xs) != len(ys) or len(xs) < 3:
        raise ValueError(
            f"Polygon needs equal X and Y arrays of at least 3 points ({len(xs)}, {len(ys)})"
        )
    points = list(zip(xs, ys, strict=True))
    if points[0] != points[-1]:
        points.append(points[0])
    nav = nav_of(session)
    centre = (float(np.mean(xs)), float(np.mean(ys)), z)
    item = NavItem(nav.next_label(), POLYGON, centre, nav.new_id(), points=points)
    return (nav.add(item),)


def _group_items(session: Session, group: int) -> list[NavItem]:
    items = [it for it in nav_of(session).items if it.group_id == group and group]
    if not items:
        raise ValueError(f"No Navigator items in group {group}")
    return items


@command("GetNavGroupStageCoords", "ISS|S")
def get_nav_group_stage_coords(
    session: Session, group: int, xs_var: str, ys_var: str, zs_var: str = ""
) -> Reported:
    """Stage X, Y (and Z) of a group's items into array variables."""
    items = _group_items(session, group)
    session.variables[xs_var] = "\n".join(f"{it.stage_um[0]:.4f}" for it in items)
    session.variables[ys_var] = "\n".join(f"{it.stage_um[1]:.4f}" for it in items)
    if zs_var:
        session.variables[zs_var] = "\n".join(f"{it.stage_um[2]:.4f}" for it in items)
    return (len(items),)


@command("GetNavGroupImageCoords", "IBSS")
def get_nav_group_image_coords(
    session: Session, group: int, letter: str, xs_var: str, ys_var: str
) -> Reported:
    """Image positions of a group's items in a buffer's map image into array variables."""
    items = _group_items(session, group)
    map_item = _map_of_buffer(session, letter)
    if map_item is None or map_item.map is None:
        raise ValueError(f"The image in buffer {letter} is not a Navigator map")
    pixels = [map_item.map.pixel_of_stage(it.stage_um[0], it.stage_um[1]) for it in items]
    session.variables[xs_var] = "\n".join(f"{p[0]:.2f}" for p in pixels)
    session.variables[ys_var] = "\n".join(f"{p[1]:.2f}" for p in pixels)
    return (len(items),)


def _map_info(session: Session, image: object, file: str, section: int) -> MapInfo:
    from tomopilot.instrument.twin_serialem.buffers import BufferImage

    assert isinstance(image, BufferImage)
    spec = cal.is_to_specimen(session) @ np.asarray(image.image_shift_units, np.float64)
    cos_t = np.cos(np.radians(image.tilt_deg))
    centre = (
        image.stage_xyz_um[0] + float(spec[0]),
        image.stage_xyz_um[1] + float(spec[1]) / cos_t,
    )
    return MapInfo(
        file=file,
        section=section,
        camera_set=image.camera_set,
        binning=image.binning,
        pixel_size_a=image.pixel_size_a,
        shape_xy=image.shape_xy,
        centre_stage_um=centre,
        tilt_deg=image.tilt_deg,
        specimen_to_camera=np.asarray(image.specimen_to_camera, np.float64),
        image=image,
        exposure_id=image.exposure_id,
    )


@command("NewMap", "|IS")
def new_map(session: Session, skip_save: int = 0, note: str = "") -> Reported:
    """Make the image in A a map (saved to the current file first if it is not saved yet)."""
    image = need(session, "A", "NewMap")
    if not image.saved_to:
        files = files_of(session)
        if files.current < 0:
            raise SEMerror(
                "The image must be saved to a file to become a map; no file is open in script "
                "statement: NewMap",
                "NewMap",
            )
        save(session, "A")
    file, _, z = image.saved_to.rpartition(":")
    info = _map_info(session, image, file, int(z))
    nav = nav_of(session)
    nx, ny = image.shape_xy
    corners = [(-0.5, -0.5), (nx - 0.5, -0.5), (nx - 0.5, ny - 0.5), (-0.5, ny - 0.5)]
    outline = [info.stage_of_pixel(x, y) for x, y in corners]
    outline.append(outline[0])
    item = NavItem(
        label=nav.next_label(),
        kind=MAP,
        stage_um=(info.centre_stage_um[0], info.centre_stage_um[1], image.stage_xyz_um[2]),
        map_id=nav.new_id(),
        note=note or f"Sec {z} - {file.rsplit('/', 1)[-1]}",
        points=outline,
        map=info,
    )
    image.map_id = item.map_id
    index = nav.add(item)
    session.record.add(
        "map", map_id=item.map_id, exposure_id=image.exposure_id, file=file, section=int(z)
    )
    return (index,)


@command("LoadOtherMap", "I|B")
def load_other_map(session: Session, index: int, letter: str = "") -> Reported:
    """Load the image of the map at ``index`` into a buffer (default the read buffer)."""
    from tomopilot.instrument.twin_serialem.file_commands import _read_section

    nav = nav_of(session)
    item = nav.item(index)
    if item.map is None:
        raise ValueError(f"Navigator item {index} is not a map")
    target = letter or session.buffers.read_buffer(session.low_dose)
    if item.map.image is not None:
        session.buffers.put(target, item.map.image.copy())
    else:
        _read_section(
            session, session.resolve(item.map.file), item.map.section, target, "LoadOtherMap"
        )
        loaded = session.buffers.get(target)
        assert loaded is not None
        loaded.specimen_to_camera = item.map.specimen_to_camera
        loaded.binning = item.map.binning
        loaded.tilt_deg = item.map.tilt_deg
        item.map.image = loaded.copy()
    image = session.buffers.get(target)
    assert image is not None
    image.map_id = item.map_id
    session.buffers.current = target
    return None


@command("ReadNavFile", "S")
def read_nav_file(session: Session, name: str) -> Reported:
    """Open a .nav file (its items replace the current ones)."""
    nav_of(session).load(session.resolve(name))
    return None


@command("SaveNavigator", "|S")
def save_navigator(session: Session, name: str = "") -> Reported:
    """Save the Navigator (to ``name``, or to the file it was read from or saved to)."""
    nav = nav_of(session)
    if name:
        path = session.resolve(name)
    elif nav.path is not None:
        path = nav.path
    else:
        path = session.directory / "navigator.nav"
    nav.save(path)
    return None


@command("ReportNavFile", "|I")
def report_nav_file(session: Session, option: int = 0) -> Reported:
    """The .nav file's path ('' if never saved); with 1: (root, extension, directory)."""
    path = nav_of(session).path
    if path is None:
        return ("",)
    if option:
        return str(path.with_suffix("")), path.suffix, str(path.parent)
    return (str(path),)


@command("ReportIfNavOpen")
def report_if_nav_open(session: Session) -> Reported:
    """2 if a Navigator is open with a file, 1 if open without one (it always is here)."""
    return (2 if nav_of(session).path is not None else 1,)


@command("ReportIfNavAcquiring")
def report_if_nav_acquiring(session: Session) -> Reported:
    """(1 while Acquire at Items runs the script, the item's index; else 0, 0)."""
    nav = nav_of(session)
    return (1 if nav.acquiring else 0, nav.current if nav.acquiring else 0)


@command("EndAcquireAtItems")
def end_acquire_at_items(session: Session) -> Reported:
    """Stop Acquire at Items after the current item."""
    session.extensions["end_acquire"] = True
    return None


@command("SkipAcquiringNavItem", "|I")
def skip_acquiring_nav_item(session: Session, skip: int = 1) -> Reported:
    """Skip the current item (it has an effect only in a preliminary script, which sem-run does
    not run: recorded)."""
    session.extensions["skip_item"] = bool(skip)
    return None


@command("ReportGroupStatus")
def report_group_status(session: Session) -> Reported:
    """(acquire status: −1 not acquiring, 0 no group, 1 first, 2 later; group ID; items in it)."""
    nav = nav_of(session)
    item = nav.item(0)
    count = sum(1 for it in nav.items if item.group_id and it.group_id == item.group_id)
    status = -1 if not nav.acquiring else (0 if not item.group_id else 1)
    return status, item.group_id, count


@command("UpdateItemZ", "|I")
def update_item_z(session: Session, index: int = 0) -> Reported:
    """Give the item the current stage Z."""
    item = nav_of(session).item(index)
    z = session.scope.stage.position().z_um
    item.stage_um = (item.stage_um[0], item.stage_um[1], z)
    return None


@command("MoveToNavItem", "|I")
def move_to_nav_item(session: Session, index: int = 0) -> Reported:
    """Move the stage to an item's X, Y, Z (image shift is left as it is)."""
    nav = nav_of(session)
    item = nav.item(index)
    x, y, z = item.stage_um
    session.scope.stage.move_to(x_um=x, y_um=y, z_um=z)
    nav.current = nav.items.index(item) + 1
    return None


@command("AdjustStagePosForNav", "FF|II")
def adjust_stage_pos_for_nav(
    session: Session, x: float, y: float, option: int = 0, reverse: int = 0
) -> Reported:
    """The stage position to move to so the beam lands on (x, y) given the image shift now."""
    spec = cal.image_shift_specimen_um(session)
    dx, dy = cal.stage_for_specimen(session, spec)
    sign = 1.0 if reverse else -1.0
    return x + sign * dx, y + sign * dy
