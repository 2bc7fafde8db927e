"""An atlas on disk, as SerialEM leaves a montage map: MRC pieces, mdoc, Navigator map item.

- ``<name>.mrc``: the pieces as an image stack (one section per piece, acquisition order,
  float32, voxel size = the piece pixel size).
- ``<name>.mrc.mdoc``: globals with ``Montage = 1``, a ``[ZValue = k]`` section per piece with
  ``PieceCoordinates = x y 0`` (lower-left corner of the piece in the montage, pixels, rows
  counted as stored) and ``AlignedPieceCoords`` after edge alignment, then the scope keys; a
  ``[MontSection = 0]`` with the whole montage's size and frame counts.
- ``<name>.nav``: one map item (``Type = 2``, ``MapMontage = 1``, ``MapFile`` the MRC,
  ``MapFramesXY``, ``MapWidthHeight``, ``MapScaleMat`` the stage-to-pixel matrix, the outline in
  ``PtsX``/``PtsY``) and, when a survey is given, one point per square drawn on the map
  (``DrawnID``), labelled by rank, with its thickness and flags in the ``Note``.

The target list (:func:`write_target_list`) is a PACEtomo-style targets file
``<root>_tgts.txt``: every target with its stage position (``stageX``/``stageY``) and its
specimen shift from target 1 (``SSX``/``SSY``), which ``tomopilot acquire`` reads (the
``sequential`` strategy gives each its own area), each target's Preview map
``<root>_tgt_NNN.mrc`` (``tgtfile``) and View ``<root>_tgt_NNN_view.mrc`` (``viewfile``, a
View centred on the hole, its edge in the field: the series realigns to it before the Preview
map alignment); the Navigator gains one Acquire point per target (labelled ``T001``…, the ice
in the note) and a focus point beside each (``F001``…).

Every file is written to a temporary name and renamed, so a crash leaves the old file whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import mrcfile
import numpy as np
from numpy.typing import NDArray

from tomopilot.core.files import atomic_write_text
from tomopilot.instrument import LowDoseArea
from tomopilot.io.mdoc_format import VERSION, format_g, serialem_datetime, serialem_title
from tomopilot.io.navigator import NavDocument, NavEntry, NavSection, format_nav, read_nav
from tomopilot.targeting.atlas.montage import Atlas
from tomopilot.targeting.atlas.squares import SquareSurvey
from tomopilot.targeting.hole_finder import HoleTarget
from tomopilot.targeting.nav_items import MAP, new_id, point_section
from tomopilot.targeting.targets import Target, TargetSet, name_files, save_targets

# SerialEM's LowDoseConSet: low-dose area index + 1 (View 0, Focus 1, Trial 2, Record 3,
# Preview 4, Search 5).
_LD_INDEX = {
    LowDoseArea.VIEW: 0,
    LowDoseArea.FOCUS: 1,
    LowDoseArea.TRIAL: 2,
    LowDoseArea.RECORD: 3,
    LowDoseArea.PREVIEW: 4,
    LowDoseArea.SEARCH: 5,
}


def _g(*values: float) -> str:
    return " ".join(format_g(float(v)) for v in values)


def _write_map(path: Path, data: NDArray[np.float32], pixel_size_a: float) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, np.float32))
            mrc.voxel_size = pixel_size_a
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_montage_mrc(path: Path, atlas: Atlas) -> Path:
    """The pieces as an MRC image stack, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(atlas.pieces, np.float32))
            mrc.set_image_stack()
            mrc.voxel_size = atlas.pixel_um * 1e4
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def montage_mdoc_text(atlas: Atlas, image_file: str, *, site: str = "tomopilot") -> str:
    """The mdoc of a montage, as SerialEM writes one (see module docstring)."""
    ny, nx = atlas.piece_shape
    pixel_a = atlas.pixel_um * 1e4
    first = atlas.images[0] if atlas.images else None
    when = first.datetime if first is not None else datetime.now()
    lines = [
        f"PixelSpacing = {format_g(pixel_a)}",
        f"Version = {VERSION}",
        f"ImageFile = {image_file}",
        f"ImageSize = {nx} {ny}",
        "Montage = 1",
        "DataMode = 2",
        "",
        f"[T = {serialem_title(site, when)}]",
        "",
    ]
    for k, piece in enumerate(atlas.pieces):
        x0, y0 = atlas.piece_coords_px[k]
        ax, ay = atlas.aligned_coords_px[k]
        lines += [
            f"[ZValue = {k}]",
            f"PieceCoordinates = {x0} {y0} 0",
            f"MinMaxMean = {_g(piece.min(), piece.max(), piece.mean(dtype=np.float64))}",
        ]
        if k < len(atlas.images):
            image = atlas.images[k]
            lines += [
                f"TiltAngle = {format_g(image.stage.tilt_deg)}",
                f"StagePosition = {_g(image.stage.x_um, image.stage.y_um)}",
                f"StageZ = {format_g(image.stage.z_um)}",
                f"Magnification = {image.magnification}",
                f"ExposureDose = {format_g(image.dose_e_a2)}",
                f"PixelSpacing = {format_g(image.pixel_size_a)}",
                f"Defocus = {format_g(image.defocus_um)}",
                f"ImageShift = {_g(*image.image_shift_um)}",
                f"ExposureTime = {format_g(image.exposure_s)}",
                f"Binning = {image.binning}",
                f"LowDoseConSet = {_LD_INDEX.get(image.area, 5) + 1}",
                f"CountsPerElectron = {format_g(image.counts_per_electron)}",
                f"DateTime = {serialem_datetime(image.datetime)}",
            ]
        lines += [f"AlignedPieceCoords = {ax} {ay} 0", ""]
    width, height = atlas.size_px
    n_cols = int(atlas.indices[:, 0].max()) + 1
    n_rows = int(atlas.indices[:, 1].max()) + 1
    lines += [
        "[MontSection = 0]",
        "TiltAngle = 0",
        f"StagePosition = {_g(*atlas.centre_um)}",
        f"PixelSpacing = {format_g(pixel_a)}",
        f"FullMontSize = {width} {height}",
        f"FullMontNumFrames = {n_cols} {n_rows}",
        "BufISXY = 0 0",
        "MoveStage = 1",
        "",
    ]
    return "\n".join(lines)


def _map_section(atlas: Atlas, map_file: str, map_id: int, z_um: float) -> NavSection:
    width, height = atlas.size_px
    n_cols = int(atlas.indices[:, 0].max()) + 1
    n_rows = int(atlas.indices[:, 1].max()) + 1
    inverse = np.linalg.inv(atlas.matrix)
    corners_px = np.array([[0, 0], [width, 0], [width, height], [0, height], [0, 0]], float)
    corners = (corners_px - [width / 2, height / 2]) @ inverse.T + np.asarray(atlas.centre_um)
    binning = atlas.images[0].binning if atlas.images else 1
    m = atlas.matrix
    entries = [
        NavEntry("Color", "2"),
        NavEntry("StageXYZ", _g(*atlas.centre_um, z_um)),
        NavEntry("NumPts", "5"),
        NavEntry("Regis", "1"),
        NavEntry("Type", str(MAP)),
        NavEntry("Note", f"Sec 0 - {map_file}"),
        NavEntry("MapFile", map_file),
        NavEntry("MapID", str(map_id)),
        NavEntry("MapMontage", "1"),
        NavEntry("MapSection", "0"),
        NavEntry("MapBinning", str(binning)),
        NavEntry("MapScaleMat", _g(m[0, 0], m[0, 1], m[1, 0], m[1, 1])),
        NavEntry("MapWidthHeight", f"{width} {height}"),
        NavEntry("MapFramesXY", f"{n_cols} {n_rows}"),
        NavEntry("MontBinning", str(binning)),
        NavEntry("MapLDConSet", str(_LD_INDEX[LowDoseArea.SEARCH])),
        NavEntry("MontUseStage", "1"),
        NavEntry("ImageType", "0"),
        NavEntry("PtsX", _g(*corners[:, 0])),
        NavEntry("PtsY", _g(*corners[:, 1])),
    ]
    return NavSection("Item", "Atlas", entries)


def atlas_navigator(
    atlas: Atlas, map_file: str, survey: SquareSurvey | None = None, *, z_um: float = 0.0
) -> NavDocument:
    """A Navigator holding the atlas map and, with a survey, its squares drawn on it."""
    doc = NavDocument.new()
    map_id = new_id(doc, f"atlas/{map_file}")
    doc.sections.append(_map_section(atlas, map_file, map_id, z_um))
    if survey is None:
        return doc
    group = new_id(doc, f"squares/{map_file}")
    for square in sorted(survey.squares, key=lambda s: (s.rank is None, s.rank or 0, s.label)):
        label = f"Sq{square.rank:03d}" if square.rank is not None else f"Sq-{square.label:03d}"
        flags = ", ".join(square.flags) or "usable"
        note = f"{square.thickness_nm:.0f} nm ({flags})"
        section = point_section(
            label,
            (square.centre_um[0], square.centre_um[1], z_um),
            new_id(doc, f"square/{map_file}/{square.label}"),
            group_id=group,
            note=note,
            color=0 if square.usable else 1,
        )
        section.set("DrawnID", str(map_id), before="MapID")
        doc.sections.append(section)
    return doc


def write_atlas(
    folder: Path | str, atlas: Atlas, survey: SquareSurvey | None = None, *, name: str = "atlas"
) -> dict[str, Path]:
    """Write ``<name>.mrc``, ``<name>.mrc.mdoc`` and ``<name>.nav`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mrc_path = write_montage_mrc(folder / f"{name}.mrc", atlas)
    mdoc_path = folder / f"{name}.mrc.mdoc"
    atomic_write_text(mdoc_path, montage_mdoc_text(atlas, mrc_path.name))
    nav_path = folder / f"{name}.nav"
    atomic_write_text(nav_path, format_nav(atlas_navigator(atlas, mrc_path.name, survey)))
    return {"mrc": mrc_path, "mdoc": mdoc_path, "nav": nav_path}


def target_set(
    targets: list[HoleTarget], root: str, *, maps: bool = False, views: bool = False
) -> TargetSet:
    """Targets in acquisition order: stage positions, shifts from target 1, file names (with
    ``maps``, each target's map ``<root>_tgt_NNN.mrc``; with ``views``, each target's View
    ``<root>_tgt_NNN_view.mrc``: in a sequential session every target is an area's target 1,
    which its set-up realigns to its View)."""
    if not targets:
        raise ValueError("no targets to write")
    x0, y0 = targets[0].centre_um
    out = TargetSet(
        targets=[
            Target(
                ss_x_um=round(t.centre_um[0] - x0, 4),
                ss_y_um=round(t.centre_um[1] - y0, 4),
                stage_x_um=round(t.centre_um[0], 4),
                stage_y_um=round(t.centre_um[1], 4),
                focus_ss_x_um=round(t.focus_um[0] - t.centre_um[0], 4),
                focus_ss_y_um=round(t.focus_um[1] - t.centre_um[1], 4),
            )
            for t in targets
        ]
    )
    named = name_files(out, root, maps=maps)
    if views:
        for index, target in enumerate(named.targets, start=1):
            target.view_file = view_file_name(root, index)
    return named


def view_file_name(root: str, index: int) -> str:
    """A target's View file (PACEtomo's name for target 1's: ``<root>_tgt_NNN_view.mrc``)."""
    return f"{root}_tgt_{index:03d}_view.mrc"


def _every(images: Sequence[NDArray[np.float32] | None] | None, n: int) -> bool:
    return images is not None and len(images) == n and all(m is not None for m in images)


def write_target_list(
    folder: Path | str,
    targets: list[HoleTarget],
    *,
    root: str = "grid",
    maps: Sequence[NDArray[np.float32] | None] | None = None,
    pixel_size_a: float = 1.0,
    nav_path: Path | None = None,
    z_um: float = 0.0,
    views: Sequence[NDArray[np.float32] | None] | None = None,
    view_pixel_size_a: float = 1.0,
) -> Path:
    """Write ``<root>_tgts.txt`` (and each target's map ``<root>_tgt_NNN.mrc`` when every
    target has one, and its View ``<root>_tgt_NNN_view.mrc`` when every target has one) and,
    with ``nav_path``, add the targets to that Navigator."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with_maps = _every(maps, len(targets))
    with_views = _every(views, len(targets))
    tset = target_set(targets, root, maps=with_maps, views=with_views)
    if with_maps and maps is not None:
        for entry, data in zip(tset.targets, maps, strict=True):
            if entry.tgt_file is not None and data is not None:
                _write_map(folder / entry.tgt_file, data, pixel_size_a)
    if with_views and views is not None:
        for entry, data in zip(tset.targets, views, strict=True):
            if entry.view_file is not None and data is not None:
                _write_map(folder / entry.view_file, data, view_pixel_size_a)
    path = save_targets(folder / f"{root}_tgts.txt", tset)
    if nav_path is not None:
        doc = read_nav(nav_path) if nav_path.exists() else NavDocument.new()
        group = new_id(doc, f"targets/{root}")
        focus_group = new_id(doc, f"focus/{root}")
        for k, target in enumerate(targets, start=1):
            ice = f"{target.ice_nm:.0f} nm" if math.isfinite(target.ice_nm) else "ice ?"
            doc.sections.append(
                point_section(
                    f"T{k:03d}",
                    (*target.centre_um, z_um),
                    new_id(doc, f"target/{root}/{k}"),
                    group_id=group,
                    acquire=True,
                    note=f"{path.name} target {k}, {ice}",
                    color=0,
                )
            )
            doc.sections.append(
                point_section(
                    f"F{k:03d}",
                    (*target.focus_um, z_um),
                    new_id(doc, f"focus/{root}/{k}"),
                    group_id=focus_group,
                    note=f"focus for T{k:03d}",
                    color=3,
                )
            )
        atomic_write_text(nav_path, format_nav(doc))
    return path
