"""Images saved by a run, read back as :class:`Image` for alignment.

Sections of the tilt-series stacks and the target maps become references again after a
resume, and the selection's View image becomes the map target 1 is realigned to. Images a
strategy holds that no stack has (fused's Views of target 1) are saved under ``references/``
when they change, and the journal names the file each reference key had at every commit. A
file holds only pixels, so each image takes the imaging conditions of its low-dose area as they
are now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.output.journal import JournalState, last_section_on_branch
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea
from tomopilot.io.mrc_image import write_mrc

REFERENCES_DIR = "references"
#: kinds of held images (saved under ``references/``, see :func:`save_held_images`) and the
#: low-dose area a journal without the image's conditions assumes: fused's Views of target 1
#: (``view:1:<branch>``) and its tracking spot's shots (``spot:1:<branch>``)
HELD_KINDS = {"view": LowDoseArea.VIEW, "spot": LowDoseArea.PREVIEW}


def read_section(path: Path, section: int = 0) -> NDArray[np.float32] | None:
    """One section of an MRC file (its only image for a 2D file); None when absent."""
    if not path.exists():
        return None
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data)
    if data.ndim == 3:
        if section >= data.shape[0]:
            return None
        data = data[section]
    return np.asarray(data, dtype=np.float32)


def image_from_file(path: Path, section: int, area: LowDoseArea, scope: Microscope) -> Image | None:
    """A saved section as an :class:`Image` with the area's current imaging conditions."""
    data = read_section(path, section)
    if data is None:
        return None
    preset = scope.optics.preset(area)
    return Image(
        data=data,
        area=area,
        pixel_size_a=preset.pixel_size_a,
        binning=preset.binning,
        magnification=preset.magnification,
        exposure_s=preset.exposure_s,
        dose_e_a2=preset.dose_e_a2,
        defocus_um=scope.optics.focus_um(),
        stage=scope.stage.position(),
        image_shift_um=scope.optics.image_shift_um(),
        time_s=scope.clock.now_s(),
        datetime=scope.clock.datetime(),
        exposure_id=-1,
    )


def ts_stem(root: str, target: int) -> str:
    """The file stem of a target's tilt series (``<root>_ts_NNN``)."""
    return f"{root}_ts_{target:03d}"


def reference_images(
    keys: Iterable[str], state: JournalState, run_dir: Path, root: str, scope: Microscope
) -> dict[str, Image]:
    """The references a strategy names (``map:N``, ``img:N:branch``, held images such as
    ``view:N:branch``) reloaded from the files."""
    refs: dict[str, Image] = {}
    for key in keys:
        kind, *rest = key.split(":")
        number = int(rest[0])
        if kind == "map":
            path = run_dir / f"{root}_tgt_{number:03d}.mrc"
            image = image_from_file(path, 0, LowDoseArea.PREVIEW, scope)
        elif kind in HELD_KINDS:
            saved = state.views.get(key)
            if saved is None:
                continue
            image = held_image(run_dir, saved, HELD_KINDS[kind], scope)
        else:
            section = last_section_on_branch(state, number, rest[1])
            if section is None:
                continue
            path = run_dir / f"{ts_stem(root, number)}.mrc"
            image = image_from_file(path, section, LowDoseArea.RECORD, scope)
        if image is not None:
            refs[key] = image
    return refs


def held_image(
    run_dir: Path, saved: Mapping[str, Any], area: LowDoseArea, scope: Microscope
) -> Image | None:
    """A held image back from its file; the conditions it was taken under, where the journal
    has them (a shot under a temporary preset, such as fused's tracking spot), else ``area``'s."""
    area = LowDoseArea(saved.get("area", area))
    image = image_from_file(run_dir / str(saved["file"]), 0, area, scope)
    if image is None:
        return None
    image = replace(image, exposure_id=int(saved["exposure_id"]))
    if "pixel_size_a" in saved:
        image = replace(
            image,
            pixel_size_a=float(saved["pixel_size_a"]),
            binning=int(saved["binning"]),
            magnification=int(saved["magnification"]),
        )
    return image


def save_held_images(
    images: Mapping[str, Image], saved: Mapping[str, Mapping[str, Any]], run_dir: Path, root: str
) -> dict[str, dict[str, Any]]:
    """Save the images a strategy holds that are new since ``saved``; the key → file table.

    Each image is written once, atomically, as ``references/<root>_<key>_<exposure id>.mrc``
    before the journal record that names it, so a crash in between leaves only an unused file.
    """
    table: dict[str, dict[str, Any]] = {}
    for key, image in images.items():
        before = saved.get(key)
        if before is not None and int(before["exposure_id"]) == image.exposure_id:
            table[key] = dict(before)
            continue
        label = key.replace(":", "_").replace("+", "plus").replace("-", "minus")
        name = f"{REFERENCES_DIR}/{root}_{label}_{image.exposure_id:06d}.mrc"
        write_mrc(run_dir / name, image.data, pixel_size_a=image.pixel_size_a)
        table[key] = {
            "file": name,
            "exposure_id": image.exposure_id,
            "area": image.area.value,
            "pixel_size_a": image.pixel_size_a,
            "binning": image.binning,
            "magnification": image.magnification,
        }
    return table
