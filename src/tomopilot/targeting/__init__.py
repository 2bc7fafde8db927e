"""Target selection: PACEtomo targets files, patterns, polygon fills, virtual maps, Navigator
items, and SerialEM-style X,Y positioning (:mod:`tomopilot.targeting.realign`).

Examples
--------
>>> from tomopilot.targeting import TargetSet, Target, make_tracking
>>> ts = make_tracking(TargetSet(targets=[Target(), Target(ss_x_um=2.0, ss_y_um=1.0)]), 1)
>>> [t.ss_um for t in ts.targets]
[(0.0, 0.0), (-2.0, -1.0)]
"""

from tomopilot.targeting.checks import (
    TargetWarning,
    grid_bar_warnings,
    image_shift_warnings,
    overlap_warnings,
)
from tomopilot.targeting.editing import (
    TargetEditError,
    copy_to_points,
    make_tracking,
    reorder,
    set_overrides,
    set_skip,
)
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.hole_pattern import (
    HolePattern,
    centre_on_hole,
    hole_pattern,
    pattern_targets,
    refine_vectors,
    refine_vectors_at_runtime,
)
from tomopilot.targeting.lattice import HoleLattice, LatticeNotFoundError, find_lattice
from tomopilot.targeting.manual import (
    targets_from_image_shifts,
    targets_from_nav_points,
    targets_from_shifts,
    targets_from_specimen_points,
)
from tomopilot.targeting.map_image import MapImage
from tomopilot.targeting.nav_items import NavItem, find_item, group_points, nav_items, target_items
from tomopilot.targeting.polygon_fill import PolygonFill, fill_polygon, fill_vectors_um
from tomopilot.targeting.realign import (
    AlignResult,
    RealignResult,
    acquire_to_match,
    align_to,
    realign,
    realign_to_item,
    reset_image_shift,
)
from tomopilot.targeting.spiral import pattern_offsets_um, spiral_indices
from tomopilot.targeting.targets import (
    GeoPoint,
    Target,
    TargetSet,
    load_targets,
    name_files,
    save_targets,
)
from tomopilot.targeting.virtual_maps import VirtualMap, acquire_montage, virtual_map

__all__ = [
    "AlignResult",
    "GeoPoint",
    "HoleLattice",
    "HolePattern",
    "LatticeNotFoundError",
    "MapImage",
    "NavItem",
    "PolygonFill",
    "RealignResult",
    "Target",
    "TargetEditError",
    "TargetSet",
    "TargetWarning",
    "TargetingError",
    "VirtualMap",
    "acquire_montage",
    "acquire_to_match",
    "align_to",
    "centre_on_hole",
    "copy_to_points",
    "fill_polygon",
    "fill_vectors_um",
    "find_item",
    "find_lattice",
    "grid_bar_warnings",
    "group_points",
    "hole_pattern",
    "image_shift_warnings",
    "load_targets",
    "make_tracking",
    "name_files",
    "nav_items",
    "overlap_warnings",
    "pattern_offsets_um",
    "pattern_targets",
    "realign",
    "realign_to_item",
    "refine_vectors",
    "refine_vectors_at_runtime",
    "reorder",
    "reset_image_shift",
    "save_targets",
    "set_overrides",
    "set_skip",
    "spiral_indices",
    "target_items",
    "targets_from_image_shifts",
    "targets_from_nav_points",
    "targets_from_shifts",
    "targets_from_specimen_points",
    "virtual_map",
]
