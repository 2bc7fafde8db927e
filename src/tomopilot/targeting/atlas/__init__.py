"""From a grid to targets: the atlas montage, its squares ranked by ice, holes in a square.

- :mod:`~tomopilot.targeting.atlas.montage`: low-magnification tiles by stage moves, stitched.
- :mod:`~tomopilot.targeting.atlas.squares`: squares found in the atlas, ice from counts, ranking.
- :mod:`~tomopilot.targeting.atlas.files`: the montage as SerialEM writes it (MRC stack of
  pieces, mdoc with piece coordinates) and a Navigator with the map and the squares.
"""

from __future__ import annotations

from tomopilot.targeting.atlas.files import atlas_navigator, montage_mdoc_text, write_atlas
from tomopilot.targeting.atlas.montage import (
    Atlas,
    acquire_atlas,
    align_pieces,
    serpentine,
    tiles_for_extent,
)
from tomopilot.targeting.atlas.squares import Square, SquareSurvey, find_squares, survey_squares

__all__ = [
    "Atlas",
    "Square",
    "SquareSurvey",
    "acquire_atlas",
    "align_pieces",
    "atlas_navigator",
    "find_squares",
    "montage_mdoc_text",
    "serpentine",
    "survey_squares",
    "tiles_for_extent",
    "write_atlas",
]
