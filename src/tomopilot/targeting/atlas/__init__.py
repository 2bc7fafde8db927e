"""From a grid to targets: the atlas montage, its squares ranked by ice, holes in a square.

- :mod:`~tomopilot.targeting.atlas.montage`: low-magnification tiles by stage moves, stitched.
- :mod:`~tomopilot.targeting.atlas.squares`: squares found in the atlas, ice from counts, ranking.
- :mod:`~tomopilot.targeting.atlas.files`: the montage as SerialEM writes it (MRC stack of
  pieces, mdoc with piece coordinates), a Navigator with the map, the squares and the targets,
  and the targets file ``tomopilot acquire`` reads.
- :mod:`~tomopilot.targeting.atlas.workflow`: all of it in order, from the grid to targets.
"""

from __future__ import annotations

from tomopilot.targeting.atlas.files import (
    atlas_navigator,
    montage_mdoc_text,
    target_set,
    write_atlas,
    write_target_list,
)
from tomopilot.targeting.atlas.montage import (
    Atlas,
    acquire_atlas,
    align_pieces,
    serpentine,
    tiles_for_extent,
)
from tomopilot.targeting.atlas.squares import Square, SquareSurvey, find_squares, survey_squares
from tomopilot.targeting.atlas.workflow import (
    AtlasResult,
    AtlasSettings,
    grid_to_targets,
    measure_preview_dose,
)

__all__ = [
    "Atlas",
    "AtlasResult",
    "AtlasSettings",
    "Square",
    "SquareSurvey",
    "acquire_atlas",
    "align_pieces",
    "atlas_navigator",
    "find_squares",
    "grid_to_targets",
    "measure_preview_dose",
    "montage_mdoc_text",
    "serpentine",
    "survey_squares",
    "target_set",
    "tiles_for_extent",
    "write_atlas",
    "write_target_list",
]
