"""Typed Navigator items, and the items that describe a target set.

:class:`NavItem` reads the keys tools use from an ``[Item]`` section of a
:class:`~tomopilot.io.navigator.NavDocument` (the section keeps everything else).
:func:`target_items` makes the items PACEtomo's target selection leaves in the Navigator: target
1 a point set to Acquire whose Note holds the targets file name, the other targets points
labelled NNN in one group, and optionally each target's beam footprint at maxTilt as a
32-vertex polygon (pacetomo.md §4.1, §6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.geometry.footprints import ellipse_outline_um
from tomopilot.io.navigator import NavDocument, NavEntry, NavSection
from tomopilot.targeting.targets import TargetSet, format_number

POINT, POLYGON, MAP = 0, 1, 2


@dataclass(frozen=True)
class NavItem:
    """The commonly used keys of a Navigator item (values parsed; see the raw ``section``)."""

    label: str
    item_type: int
    stage_xyz_um: tuple[float, float, float]
    points_um: tuple[tuple[float, float], ...]
    map_id: int | None
    group_id: int | None
    drawn_id: int | None
    acquire: bool
    note: str
    map_file: str | None
    section: NavSection

    @property
    def is_map(self) -> bool:
        """A map (single image or montage)."""
        return self.item_type == MAP

    @property
    def is_montage(self) -> bool:
        """A montage map (``MapMontage = 1``)."""
        return self.is_map and self.section.get("MapMontage", "0") == "1"


def _floats(section: NavSection, key: str) -> list[float]:
    value = section.get(key)
    return [float(v) for v in value.split()] if value else []


def _int(section: NavSection, key: str) -> int | None:
    value = section.get(key)
    return int(value) if value is not None and value.strip() else None


def nav_item(section: NavSection) -> NavItem:
    """The typed view of an ``[Item]`` section (validate the document first, see
    :func:`tomopilot.io.navigator.validate_nav`)."""
    xyz = _floats(section, "StageXYZ") or [0.0, 0.0, 0.0]
    xs, ys = _floats(section, "PtsX"), _floats(section, "PtsY")
    return NavItem(
        label=section.name,
        item_type=_int(section, "Type") or 0,
        stage_xyz_um=(xyz[0], xyz[1], xyz[2]),
        points_um=tuple(zip(xs, ys, strict=False)),
        map_id=_int(section, "MapID"),
        group_id=_int(section, "GroupID"),
        drawn_id=_int(section, "DrawnID"),
        acquire=section.get("Acquire", "0") == "1",
        note=section.get("Note", "") or "",
        map_file=section.get("MapFile"),
        section=section,
    )


def nav_items(doc: NavDocument) -> list[NavItem]:
    """Every ``[Item]`` of a document, typed."""
    return [nav_item(s) for s in doc.items()]


def find_item(doc: NavDocument, label: str) -> NavItem:
    """The item with this label (``KeyError`` naming the labels there are, if none)."""
    for item in nav_items(doc):
        if item.label == label:
            return item
    labels = ", ".join(i.label for i in nav_items(doc))
    raise KeyError(f"no Navigator item labelled {label!r} (items: {labels})")


def group_points(doc: NavDocument, label_or_group: str) -> list[NavItem]:
    """The points of a group, given the label of one of them or the GroupID itself."""
    items = nav_items(doc)
    group: int | None = None
    for item in items:
        if item.label == label_or_group:
            group = item.group_id
            if group is None:
                return [item]
            break
    if group is None and label_or_group.lstrip("-").isdigit():
        group = int(label_or_group)
    if group is None:
        raise KeyError(f"no Navigator item or group {label_or_group!r}")
    members = [i for i in items if i.group_id == group and i.item_type == POINT]
    if not members:
        raise KeyError(f"group {group} has no points")
    return members


def new_id(doc: NavDocument, salt: str) -> int:
    """A MapID/GroupID not used in ``doc``, derived from ``salt`` (deterministic)."""
    used = {i.map_id for i in nav_items(doc)} | {i.group_id for i in nav_items(doc)}
    counter = 0
    while True:
        digest = hashlib.sha256(f"{salt}/{counter}".encode()).digest()
        candidate = int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
        if candidate not in used and candidate > 0:
            return candidate
        counter += 1


def _coords(values: NDArray[np.float64] | list[float]) -> str:
    return " ".join(format_number(round(float(v), 6)) for v in values)


def point_section(
    label: str,
    stage_xyz_um: tuple[float, float, float],
    map_id: int,
    *,
    group_id: int | None = None,
    acquire: bool = False,
    note: str | None = None,
    color: int = 0,
) -> NavSection:
    """A point item, keys in SerialEM's order."""
    x, y, z = stage_xyz_um
    entries = [
        NavEntry("Color", str(color)),
        NavEntry("StageXYZ", _coords([x, y, z])),
        NavEntry("NumPts", "1"),
        NavEntry("Regis", "1"),
        NavEntry("Type", str(POINT)),
    ]
    if note:
        entries.append(NavEntry("Note", note))
    if group_id is not None:
        entries.append(NavEntry("GroupID", str(group_id)))
    if acquire:
        entries.append(NavEntry("Acquire", "1"))
    entries += [
        NavEntry("MapID", str(map_id)),
        NavEntry("PtsX", _coords([x])),
        NavEntry("PtsY", _coords([y])),
    ]
    return NavSection("Item", label, entries)


def polygon_section(
    label: str,
    vertices_um: NDArray[np.float64],
    z_um: float,
    map_id: int,
    *,
    group_id: int | None = None,
    color: int = 1,
) -> NavSection:
    """A closed polygon item (the first vertex repeated at the end, as SerialEM does)."""
    pts = np.vstack([vertices_um, vertices_um[:1]])
    centre = vertices_um.mean(axis=0)
    entries = [
        NavEntry("Color", str(color)),
        NavEntry("StageXYZ", _coords([centre[0], centre[1], z_um])),
        NavEntry("NumPts", str(len(pts))),
        NavEntry("Regis", "1"),
        NavEntry("Type", str(POLYGON)),
    ]
    if group_id is not None:
        entries.append(NavEntry("GroupID", str(group_id)))
    entries += [
        NavEntry("MapID", str(map_id)),
        NavEntry("PtsX", _coords(pts[:, 0])),
        NavEntry("PtsY", _coords(pts[:, 1])),
    ]
    return NavSection("Item", label, entries)


def target_items(
    doc: NavDocument,
    targets: TargetSet,
    *,
    stage_origin_um: tuple[float, float, float],
    targets_file: str,
    specimen_to_stage: NDArray[np.float64] | None = None,
    beam_radius_um: float | None = None,
    max_tilt_deg: float = 60.0,
    label_prefix: str = "",
) -> list[NavSection]:
    """Navigator items for a target set whose target 1 is at ``stage_origin_um``.

    Target i sits at stage origin + specimen_to_stage · SSᵢ (identity by default). Target 1 is
    set to Acquire with the targets file name as its Note; the rest are labelled NNN and share
    a group. With ``beam_radius_um`` each target also gets its footprint at ``max_tilt_deg``.
    The items are returned, not added: append them to ``doc.sections`` to keep them.
    """
    matrix = np.eye(2) if specimen_to_stage is None else np.asarray(specimen_to_stage)
    x0, y0, z0 = stage_origin_um
    salt = f"{targets_file}/{x0}/{y0}"
    group = new_id(doc, salt + "/group")
    scratch = NavDocument(globals=list(doc.globals), sections=list(doc.sections))
    out: list[NavSection] = []

    def fresh(tag: str) -> int:
        value = new_id(scratch, f"{salt}/{tag}")
        scratch.sections.append(NavSection("Item", tag, [NavEntry("MapID", str(value))]))
        return value

    for index, target in enumerate(targets.targets, start=1):
        dx, dy = matrix @ np.array(target.ss_um)
        xyz = (x0 + float(dx), y0 + float(dy), z0)
        label = f"{label_prefix}{index:03d}"
        first = index == 1
        out.append(
            point_section(
                label,
                xyz,
                fresh(label),
                group_id=None if first else group,
                acquire=first,
                note=targets_file if first else None,
                color=2 if target.skip else 0,
            )
        )
        if beam_radius_um is not None:
            outline = ellipse_outline_um(
                (xyz[0], xyz[1]), beam_radius_um=beam_radius_um, max_tilt_deg=max_tilt_deg
            )
            out.append(
                polygon_section(f"{label}_beam", outline, z0, fresh(label + "b"), group_id=group)
            )
    return out
