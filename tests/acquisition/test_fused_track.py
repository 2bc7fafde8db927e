"""Where fused's tracking spot goes: next to target 1, clear of every target's beam."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.acquisition.strategies.fused_track import BEAM_CLEARANCE, place_spot

coordinate = st.floats(-6.0, 6.0, allow_nan=False)


@given(st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_the_spot_clears_every_beam_and_stays_in_reach(targets: list[tuple[float, float]]) -> None:
    beam, limit = 1.5, 15.0
    offset = place_spot(targets, beam, limit)
    if offset is None:
        return
    spot = np.asarray(targets[0]) + offset
    assert np.max(np.abs(spot)) <= limit
    distances = np.hypot(*(np.asarray(targets) - spot).T)
    assert distances.min() >= BEAM_CLEARANCE * beam - 1e-9


def test_the_spot_stays_close_to_target_one() -> None:
    # The autoloader lamella of the benchmark: ±x at one clearance hit targets 2 and 3.
    targets = [(0.0, 0.0), (2.0, 1.0), (-2.0, 1.5), (1.5, -2.0)]
    assert place_spot(targets, 1.5, 15.0) == (0.0, BEAM_CLEARANCE * 1.5)
    # Alone, the spot sits one clearance along the axis.
    assert place_spot([(0.0, 0.0)], 1.5, 15.0) == (BEAM_CLEARANCE * 1.5, 0.0)
    # Nowhere to go inside a tight image-shift limit.
    assert place_spot([(0.0, 0.0)], 1.5, 1.0) is None
