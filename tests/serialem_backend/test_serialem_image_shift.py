"""Image shift in specimen µm through SerialEM's own calibration, for any calibration.

A minimal module with an arbitrary (invertible) ``SpecimenToISMatrix`` records what the backend
sends: ``SetImageShift`` gets exactly the matrix times the requested shift with the settling
multiplier 1 (without it SerialEM sets no image-shift time-out and the next exposure could start
on a moving beam), and a shift beyond ``ImageShiftLimit`` on either axis is refused before
anything is sent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.instrument import ImageShiftLimitError
from tomopilot.instrument.serialem import SerialEMMicroscope, SerialEMSession


class CalibratedStub:
    """Just enough of the ``serialem`` module for the optics."""

    def __init__(self, matrix: np.ndarray, limit_um: float) -> None:
        self.matrix = matrix
        self.limit_um = limit_um
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.settling: list[float] = []

    def SpecimenToISMatrix(self, mag_index: int) -> tuple[float, ...]:
        return tuple(float(v) for v in self.matrix.ravel())

    def ReportProperty(self, name: str) -> float:
        assert name == "ImageShiftLimit"
        return self.limit_um

    def SetImageShift(self, x: float, y: float, settling: float = 0.0) -> None:
        self.sent.append(("SetImageShift", (x, y)))
        self.settling.append(settling)


matrices = st.tuples(
    st.floats(0.3, 3.0), st.floats(-180.0, 180.0), st.floats(-0.2, 0.2), st.booleans()
).map(
    lambda p: (
        p[0]
        * np.array(
            [
                [np.cos(np.radians(p[1])), -np.sin(np.radians(p[1])) + p[2]],
                [np.sin(np.radians(p[1])), np.cos(np.radians(p[1]))],
            ]
        )
        @ np.diag([1.0, -1.0 if p[3] else 1.0])
    )
)
shifts = st.floats(-20.0, 20.0)


@settings(max_examples=60, deadline=None)
@given(matrix=matrices, x=shifts, y=shifts, limit=st.floats(2.0, 15.0))
def test_specimen_shift_goes_through_serialems_matrix(
    matrix: np.ndarray, x: float, y: float, limit: float
) -> None:
    stub = CalibratedStub(matrix, limit)
    scope = SerialEMMicroscope(SerialEMSession(stub), prepare=False)
    if max(abs(x), abs(y)) > limit:
        with pytest.raises(ImageShiftLimitError):
            scope.optics.set_image_shift_um(x, y)
        assert stub.sent == []
        return
    scope.optics.set_image_shift_um(x, y)
    (name, units), *rest = stub.sent
    assert name == "SetImageShift" and not rest
    assert stub.settling == [1.0]  # SerialEM's calibrated settling before the next exposure
    np.testing.assert_allclose(units, matrix @ np.array([x, y]), rtol=1e-12, atol=1e-12)
    back = np.linalg.solve(matrix, np.array(units))  # ISToSpecimen of what was sent
    np.testing.assert_allclose(back, [x, y], atol=1e-9)
    assert scope.optics.image_shift_um() == (x, y)
