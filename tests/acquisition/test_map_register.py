"""A Preview registered to its target's map: a shift of more than half the field must not be
taken for its circular alias (a series once started one field, 0.82 µm, off its target)."""

from __future__ import annotations

import numpy as np
import pytest

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.map_register import register_to_map
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.types import Image, LowDoseArea

FIELD_UM = 4096 * 2e-4  # a 4096² camera at 2 Å, binned 8: 0.82 µm Previews


@pytest.fixture(scope="module")
def previews() -> tuple[Toolkit, Image, TwinMicroscope]:
    presets = {"preview": {"camera_area_px": [4096, 4096], "binning": 8}}
    twin = TwinMicroscope(TwinConfig.model_validate({"seed": 3, "presets": presets}))
    toolkit = Toolkit(twin, AcquisitionSettings())
    twin.optics.set_image_shift_um(0.0, 0.0)
    return toolkit, twin.camera.acquire(LowDoseArea.PREVIEW), twin


@pytest.mark.parametrize(
    "move_um",
    [(0.05, -0.12), (0.0, 0.3), (-0.25, 0.2), (0.0, 0.53), (-0.29, 0.53), (0.6, 0.0), (0.0, -0.65)],
)
def test_a_preview_registers_to_its_map_or_not_at_all_never_to_the_alias(
    previews: tuple[Toolkit, Image, TwinMicroscope], move_um: tuple[float, float]
) -> None:
    """Moves up to 0.8 field (beyond, a shift of 1 − f fields cannot be told from f: the
    images share too little) give the true move or nothing; small ones are found."""
    toolkit, reference, twin = previews
    twin.optics.set_image_shift_um(*move_um)
    found = register_to_map(toolkit, reference, twin.camera.acquire(LowDoseArea.PREVIEW))
    twin.optics.set_image_shift_um(0.0, 0.0)
    expected = -np.array(move_um)  # the image shift moved the field; the specimen moves back
    if float(np.hypot(*move_um)) < 0.35 * FIELD_UM:
        assert found is not None, move_um
    if found is not None:  # what is returned is the true move, to a Preview pixel or two
        assert np.allclose(found, expected, atol=0.03), (move_um, found)
