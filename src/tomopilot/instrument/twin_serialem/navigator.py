"""The Navigator a script works with: items, maps, and their .nav file.

Items keep SerialEM's keys (``StageXYZ``, ``Type``, ``Note``, ``GroupID``, ``Acquire``,
``DrawnID``, ``MapID``, map keys, ``PtsX``/``PtsY``) and are written with the project's
:mod:`tomopilot.io.navigator` writer, so a saved file is a real SerialEM autodoc .nav that our
reader (and SerialEM) reads. Keys of a file that the module does not model are kept and written
back unchanged.

A map knows where each of its pixels lies on the stage: the map image's calibrated
specimen-to-camera matrix (``MapScaleMat`` holds the stage-to-pixel form SerialEM writes), the
stage position and image shift it was taken at, and its tilt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomopilot.instrument.twin_serialem.buffers import BufferImage
from tomopilot.io.navigator import NavDocument, NavEntry, NavSection, read_nav, write_nav

POINT, POLYGON, MAP = 0, 1, 2


@dataclass
class MapInfo:
    """What a map item knows about its image."""

    file: str
    section: int
    camera_set: int
    binning: int
    pixel_size_a: float
    shape_xy: tuple[int, int]
    centre_stage_um: tuple[float, float]
    tilt_deg: float
    specimen_to_camera: np.ndarray
    image: BufferImage | None = None
    exposure_id: int | None = None

    def stage_of_pixel(self, x_px: float, y_px: float) -> tuple[float, float]:
        """Stage (x, y) µm of an image position (pixel centres at integers, 0 = first)."""
        nx, ny = self.shape_xy
        offset = np.array([x_px + 0.5 - nx / 2, y_px + 0.5 - ny / 2])
        spec = np.linalg.solve(self.specimen_to_camera, offset)
        cos_t = math.cos(math.radians(self.tilt_deg))
        return (
            self.centre_stage_um[0] + float(spec[0]),
            self.centre_stage_um[1] + float(spec[1]) / cos_t,
        )

    def pixel_of_stage(self, x_um: float, y_um: float) -> tuple[float, float]:
        """Image position of a stage (x, y), the inverse of :meth:`stage_of_pixel`."""
        nx, ny = self.shape_xy
        cos_t = math.cos(math.radians(self.tilt_deg))
        spec = np.array([x_um - self.centre_stage_um[0], (y_um - self.centre_stage_um[1]) * cos_t])
        px = self.specimen_to_camera @ spec
        return float(px[0]) + nx / 2 - 0.5, float(px[1]) + ny / 2 - 0.5

    def scale_matrix(self) -> tuple[float, float, float, float]:
        """Stage -> pixel matrix (MapScaleMat) at the map's tilt."""
        cos_t = math.cos(math.radians(self.tilt_deg))
        m = self.specimen_to_camera @ np.array([[1.0, 0.0], [0.0, cos_t]])
        return float(m[0, 0]), float(m[0, 1]), float(m[1, 0]), float(m[1, 1])


@dataclass
class NavItem:
    """One Navigator item."""

    label: str
    kind: int
    stage_um: tuple[float, float, float]
    map_id: int
    note: str = ""
    color: int = 0
    draw: bool = True
    acquire: bool = False
    group_id: int = 0
    drawn_id: int = 0
    regis: int = 1
    points: list[tuple[float, float]] = field(default_factory=list)
    map: MapInfo | None = None
    kept: list[NavEntry] = field(default_factory=list)

    @property
    def int_label(self) -> int:
        """The label's leading integer (``navIntLabel``), 0 if none."""
        digits = ""
        for char in self.label:
            if not char.isdigit():
                break
            digits += char
        return int(digits) if digits else 0


_MODELLED = {
    "Color",
    "StageXYZ",
    "NumPts",
    "Draw",
    "Regis",
    "Type",
    "Note",
    "GroupID",
    "DrawnID",
    "Acquire",
    "MapID",
    "MapFile",
    "MapSection",
    "MapBinning",
    "MapScaleMat",
    "MapWidthHeight",
    "MapLDConSet",
    "MapTiltAngle",
    "PtsX",
    "PtsY",
}


class Navigator:
    """The items of the open Navigator, and its file."""

    def __init__(self) -> None:
        self.items: list[NavItem] = []
        self.path: Path | None = None
        self.current = 0  # 1-based index of the current item, 0 = none
        self.acquiring = False
        self._next_id = 1000001
        self.unused_sections: list[NavSection] = []

    def new_id(self) -> int:
        """A MapID no item has."""
        taken = {item.map_id for item in self.items}
        while self._next_id in taken:
            self._next_id += 1
        self._next_id += 1
        return self._next_id - 1

    def next_label(self) -> str:
        """SerialEM's default label: one more than the highest numeric label."""
        return str(max([item.int_label for item in self.items] + [0]) + 1)

    def add(self, item: NavItem) -> int:
        """Append an item; returns its 1-based index."""
        self.items.append(item)
        self.current = len(self.items)
        return self.current

    def item(self, index: int) -> NavItem:
        """The item at a 1-based index (0 or omitted = the current one)."""
        index = index or self.current
        if not 1 <= index <= len(self.items):
            raise ValueError(
                f"Navigator index {index} is out of range (1 to {len(self.items)})"
                if self.items
                else "The Navigator has no items"
            )
        return self.items[index - 1]

    def index_of_id(self, map_id: int) -> int:
        """1-based index of the item with this MapID, 0 if none."""
        return next((i for i, it in enumerate(self.items, 1) if it.map_id == map_id), 0)

    def map_of(self, item: NavItem) -> NavItem | None:
        """The map an item is (a map) or was drawn on."""
        if item.map is not None:
            return item
        index = self.index_of_id(item.drawn_id) if item.drawn_id else 0
        return self.items[index - 1] if index else None

    # -- files -------------------------------------------------------------------------------------
    def to_document(self, path: Path) -> NavDocument:
        """The items as a SerialEM .nav autodoc."""
        doc = NavDocument.new(last_saved_as=str(path))
        for item in self.items:
            section = NavSection("Item", item.label)
            put = section.entries.append
            put(NavEntry("Color", str(item.color)))
            put(NavEntry("StageXYZ", " ".join(_num(v) for v in item.stage_um)))
            points = item.points or [item.stage_um[:2]]
            put(NavEntry("NumPts", str(len(points))))
            if not item.draw:
                put(NavEntry("Draw", "0"))
            put(NavEntry("Regis", str(item.regis)))
            put(NavEntry("Type", str(item.kind)))
            if item.note:
                put(NavEntry("Note", item.note))
            if item.group_id:
                put(NavEntry("GroupID", str(item.group_id)))
            if item.drawn_id:
                put(NavEntry("DrawnID", str(item.drawn_id)))
            if item.acquire:
                put(NavEntry("Acquire", "1"))
            if item.map is not None:
                info = item.map
                put(NavEntry("MapFile", info.file))
            put(NavEntry("MapID", str(item.map_id)))
            if item.map is not None:
                info = item.map
                put(NavEntry("MapSection", str(info.section)))
                put(NavEntry("MapBinning", str(info.binning)))
                put(NavEntry("MapScaleMat", " ".join(_num(v) for v in info.scale_matrix())))
                put(NavEntry("MapWidthHeight", f"{info.shape_xy[0]} {info.shape_xy[1]}"))
                put(NavEntry("MapLDConSet", str(info.camera_set)))
                put(NavEntry("MapTiltAngle", _num(info.tilt_deg)))
            section.entries.extend(item.kept)
            put(NavEntry("PtsX", " ".join(_num(p[0]) for p in points)))
            put(NavEntry("PtsY", " ".join(_num(p[1]) for p in points)))
            doc.sections.append(section)
        doc.sections.extend(self.unused_sections)
        return doc

    def save(self, path: Path) -> Path:
        """Write the .nav file (atomically)."""
        self.path = path
        return write_nav(path, self.to_document(path))

    def load(self, path: Path) -> None:
        """Read a .nav file: its items replace the current ones."""
        doc = read_nav(path)
        items: list[NavItem] = []
        others: list[NavSection] = []
        for section in doc.sections:
            if section.kind != "Item":
                others.append(section)
                continue
            items.append(_item_from_section(section, path))
        self.items = items
        self.unused_sections = others
        self.path = path
        self.current = 1 if items else 0


def _num(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"


def _floats(section: NavSection, key: str) -> list[float]:
    text = section.get(key)
    return [float(v) for v in text.split()] if text else []


def _item_from_section(section: NavSection, path: Path) -> NavItem:
    xyz = _floats(section, "StageXYZ") or [0.0, 0.0, 0.0]
    xyz = ([*xyz, 0.0, 0.0, 0.0])[:3]
    kind = int(float(section.get("Type", "0") or 0))
    xs, ys = _floats(section, "PtsX"), _floats(section, "PtsY")
    item = NavItem(
        label=section.name,
        kind=kind,
        stage_um=(xyz[0], xyz[1], xyz[2]),
        map_id=int(float(section.get("MapID", "0") or 0)),
        note=section.get("Note", "") or "",
        color=int(float(section.get("Color", "0") or 0)),
        draw=(section.get("Draw", "1") != "0"),
        acquire=(section.get("Acquire", "0") == "1"),
        group_id=int(float(section.get("GroupID", "0") or 0)),
        drawn_id=int(float(section.get("DrawnID", "0") or 0)),
        regis=int(float(section.get("Regis", "1") or 1)),
        points=list(zip(xs, ys, strict=False)),
        kept=[e for e in section.entries if e.key not in _MODELLED],
    )
    if kind == MAP and section.get("MapFile"):
        scale = _floats(section, "MapScaleMat")
        size = [int(v) for v in _floats(section, "MapWidthHeight")] or [0, 0]
        tilt = (_floats(section, "MapTiltAngle") or [0.0])[0]
        cos_t = math.cos(math.radians(tilt))
        matrix = np.eye(2)
        if len(scale) == 4:
            m = np.array([[scale[0], scale[1]], [scale[2], scale[3]]])
            matrix = m @ np.array([[1.0, 0.0], [0.0, 1.0 / cos_t]])
        file = section.get("MapFile", "") or ""
        if not Path(file).is_absolute():
            file = str(path.parent / file)
        item.map = MapInfo(
            file=file,
            section=int(float(section.get("MapSection", "0") or 0)),
            camera_set=int(float(section.get("MapLDConSet", "0") or 0)),
            binning=int(float(section.get("MapBinning", "1") or 1)),
            pixel_size_a=0.0,
            shape_xy=(size[0], size[1]),
            centre_stage_um=(xyz[0], xyz[1]),
            tilt_deg=tilt,
            specimen_to_camera=matrix,
        )
    return item
