"""Image files a script opens: MRC stacks with their ``.mdoc`` autodoc, written for real.

Each ``Save`` appends a section to the MRC stack (crash-safe, see
:class:`~tomopilot.io.mrc_stack.MrcStackWriter`) and a ``[ZValue]`` section to the autodoc, which
is then rewritten atomically, as SerialEM writes its ``.mdoc`` after every image. ``AddToAutodoc``
adds a key to the last section (or to the global keys before the first image); ``WriteAutodoc``
writes the autodoc again.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from tomopilot.core.files import atomic_write_text
from tomopilot.instrument.twin_serialem.buffers import BufferImage
from tomopilot.io.mdoc_format import (
    MdocHeader,
    MdocSection,
    format_full,
    serialem_title,
    tilt_axis_title,
)
from tomopilot.io.mdoc_writer import parse_mdoc
from tomopilot.io.mrc_stack import MrcStackWriter

SITE = "tomopilot twin"


def rotation_angle_deg(image: BufferImage) -> float:
    """Angle (°, CCW) from the image X axis to the tilt axis, from the camera matrix."""
    m = image.specimen_to_camera
    return math.degrees(math.atan2(float(m[1, 0]), float(m[0, 0])))


def value_text(value: object) -> str:
    """An autodoc value: text as given, numbers at full precision."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return format_full(value)
    return str(value)


class ImageFile:
    """An open MRC file and its autodoc."""

    def __init__(self, path: Path, *, existing: MrcStackWriter | None = None) -> None:
        self.path = path
        self.mdoc_path = path.with_name(path.name + ".mdoc")
        self.stack = existing
        self.header_text: str | None = None
        self.sections: list[MdocSection] = []
        self.global_extra: list[tuple[str, str]] = []
        if existing is not None and self.mdoc_path.exists():
            parsed = parse_mdoc(self.mdoc_path)
            self.header_text = parsed.header_text.replace("\r\n", "\n")
            self.sections = [MdocSection.from_items(sec.items) for sec in parsed.sections]

    @property
    def n_sections(self) -> int:
        """Sections in the stack."""
        return 0 if self.stack is None else self.stack.n_sections

    def save(self, image: BufferImage, section: MdocSection) -> int:
        """Append an image and its autodoc section; returns the section index."""
        data = np.asarray(image.data, np.float32)
        if self.stack is None:
            when = image.taken
            labels = [
                serialem_title(SITE, when),
                tilt_axis_title(
                    rotation_angle_deg(image) - 90.0,
                    binning=image.binning,
                    spot_size=0,
                    camera_index=0,
                ),
            ]
            self.stack = MrcStackWriter(
                self.path,
                shape_yx=(int(data.shape[0]), int(data.shape[1])),
                dtype=np.float32,
                pixel_size_a=image.pixel_size_a,
                labels=labels,
            )
            header = MdocHeader(
                pixel_spacing_a=image.pixel_size_a,
                image_file=self.path.name,
                image_size_xy=image.shape_xy,
                data_mode=self.stack.mode,
                titles=tuple(labels),
            ).to_text()
            first_block, _, rest = header.partition("\n\n")
            extra = "".join(f"\n{k} = {v}" for k, v in self.global_extra)
            self.header_text = first_block + extra + "\n\n" + rest
        index = self.stack.append(data)
        self.sections.append(section)
        self.write_autodoc()
        return index

    def add_to_autodoc(self, key: str, value: str) -> None:
        """A key in the last section (or among the global keys before the first image)."""
        if not self.sections:
            if self.header_text is not None:
                raise ValueError("the file has a header already; add keys after an image")
            self.global_extra = [(k, v) for k, v in self.global_extra if k != key]
            self.global_extra.append((key, value))
            return
        items = dict(self.sections[-1].items())
        items[key] = value
        self.sections[-1] = replace(MdocSection.from_items(items))

    def autodoc_text(self) -> str:
        """The whole ``.mdoc`` text."""
        if self.header_text is None:
            lines = [f"{k} = {v}" for k, v in self.global_extra]
            return "\n".join(lines) + ("\n" if lines else "")
        text = self.header_text
        for z, section in enumerate(self.sections):
            text += section.to_text(z)
        return text

    def write_autodoc(self) -> None:
        """Write the ``.mdoc`` (atomically)."""
        if self.header_text is not None or self.global_extra:
            atomic_write_text(self.mdoc_path, self.autodoc_text())
