"""PACEtomo's square spiral: the order in which a (2n+1)² pattern is acquired.

Starting at the centre, legs of length L = 1 … 2n go L steps along ±A, then L steps along ±B
(+ when L is odd), and a final 2n steps along +A close the square (pacetomo.md §6).

Examples
--------
>>> spiral_indices(1)
[(0, 0), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tomopilot.targeting.errors import TargetingError


def spiral_indices(size: int) -> list[tuple[int, int]]:
    """Lattice indices (i, j) of a (2·size+1)² pattern in spiral order, centre first."""
    if size < 0:
        raise TargetingError(f"the pattern size must be ≥ 0, not {size}")
    i = j = 0
    out = [(0, 0)]
    for leg in range(1, 2 * size + 1):
        sign = 1 if leg % 2 else -1
        for _ in range(leg):
            i += sign
            out.append((i, j))
        for _ in range(leg):
            j += sign
            out.append((i, j))
    for _ in range(2 * size):
        i += 1
        out.append((i, j))
    return out


def pattern_offsets_um(
    vec_a_um: Sequence[float], vec_b_um: Sequence[float], size: int
) -> NDArray[np.float64]:
    """Specimen offsets (n, 2) i·A + j·B of a spiral pattern, centre first."""
    a = np.asarray(vec_a_um, np.float64)
    b = np.asarray(vec_b_um, np.float64)
    idx = np.array(spiral_indices(size), dtype=np.float64)
    return np.asarray(idx[:, :1] * a + idx[:, 1:] * b)
