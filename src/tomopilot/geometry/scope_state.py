"""Temporary microscope state: presets, image shift and focus restored on the way out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tomopilot.instrument import LowDoseArea, Microscope


@contextmanager
def temporary_preset(scope: Microscope, area: LowDoseArea, **changes: Any) -> Iterator[None]:
    """Change fields of ``area``'s preset (``offset_along_axis_um=0``...) and restore them."""
    original = scope.optics.preset(area)
    if changes:
        scope.optics.set_preset(area, original.model_copy(update=changes))
    try:
        yield
    finally:
        if changes:
            scope.optics.set_preset(area, original)


@contextmanager
def preserved_optics(scope: Microscope) -> Iterator[tuple[float, float]]:
    """Restore the image shift and the focus on exit; yields the image shift on entry."""
    image_shift = scope.optics.image_shift_um()
    focus = scope.optics.focus_um()
    try:
        yield image_shift
    finally:
        scope.optics.set_image_shift_um(*image_shift)
        scope.optics.set_focus_um(focus)
