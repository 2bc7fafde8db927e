"""Hole patterns on a holey film: (2n+1)² targets in spiral order, one per hole.

1. :func:`centre_on_hole` moves the field onto the hole nearest its centre (matched filter on
   a fresh image, corrected by image shift, repeated until the correction is small).
2. The lattice vectors come from :func:`~tomopilot.targeting.lattice.find_lattice` on a
   low-magnification image (Search by default).
3. :func:`refine_vectors` image-shifts by n·A (and n·B), aligns a fresh image to the hole
   hole template (a disc matched to the holes, or an image taken centred on a hole) and sets
   A = (n·A + correction)/n. This measures
   the vectors in the image-shift calibration itself, so its errors cancel (PACEtomo's
   ``alignToP``); at run time the same at n·A and n·B is ``refineVec``
   (:func:`refine_vectors_at_runtime`), which rejects changes over 0.5 µm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tomopilot.geometry.geo_points import pattern_geo_points
from tomopilot.imaging.hole_template import find_holes
from tomopilot.instrument import Image, LowDoseArea, Microscope
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.lattice import HoleLattice, find_lattice
from tomopilot.targeting.realign import acquire_to_match, measure_misplacement
from tomopilot.targeting.spiral import pattern_offsets_um
from tomopilot.targeting.targets import GeoPoint, Target, TargetSet

Vector = tuple[float, float]
MAX_REFINE_CHANGE_UM = 0.5


class HoleNotFoundError(TargetingError):
    """No hole near the field centre."""


@dataclass(frozen=True)
class HolePattern:
    """A pattern: its target set, the refined vectors, the lattice found and the template."""

    targets: TargetSet
    vec_a_um: Vector
    vec_b_um: Vector
    lattice: HoleLattice
    template: Image


def hole_offset_um(
    scope: Microscope, image: Image, *, hole_diameter_um: float
) -> tuple[float, float]:
    """Where the hole nearest the field centre is, relative to it (specimen µm).

    The holes are found with a disc template (matched filter), which measures a hole by its
    edge and is little disturbed by what lies in the ice.
    """
    matrix = scope.camera.specimen_to_camera_matrix(image.area)
    ny, nx = image.data.shape
    radius_px = hole_diameter_um / 2 * math.sqrt(abs(np.linalg.det(matrix)))
    holes = find_holes(image.data, radius_px, whole=False)
    if len(holes) == 0:
        raise HoleNotFoundError(f"no hole of {hole_diameter_um:g} µm in the {image.area} image")
    offsets = holes - np.array([nx / 2, ny / 2])
    nearest = offsets[int(np.argmin(np.hypot(offsets[:, 0], offsets[:, 1])))]
    correction = np.linalg.solve(matrix, nearest)
    return float(correction[0]), float(correction[1])


def centre_on_hole(
    scope: Microscope,
    *,
    hole_diameter_um: float,
    area: LowDoseArea = LowDoseArea.VIEW,
    max_iterations: int = 3,
    tolerance_um: float = 0.02,
) -> tuple[int, float]:
    """Centre the field on the nearest hole by image shift; returns (images, last correction µm)."""
    last = math.inf
    for iteration in range(1, max_iterations + 1):
        image = scope.camera.acquire(area)
        dx, dy = hole_offset_um(scope, image, hole_diameter_um=hole_diameter_um)
        x, y = scope.optics.image_shift_um()
        scope.optics.set_image_shift_um(x + dx, y + dy)
        last = math.hypot(dx, dy)
        if last < tolerance_um:
            return iteration, last
    return max_iterations, last


def refine_vectors(
    scope: Microscope,
    vectors_um: Sequence[Vector],
    *,
    hole_diameter_um: float,
    area: LowDoseArea = LowDoseArea.VIEW,
    template: Image | None = None,
    multiples: Sequence[int] = (1,),
) -> list[Vector]:
    """Refine lattice vectors by image-shifting to n·V and measuring the hole found there.

    By default the hole is measured with a disc template (:func:`hole_offset_um`); with an
    image ``template`` (taken centred on a hole, PACEtomo's P) a fresh image is aligned to it
    instead. The field must be centred on a hole; it is restored afterwards.
    """
    base_x, base_y = scope.optics.image_shift_um()
    out: list[Vector] = []
    try:
        for vector in vectors_um:
            v = np.asarray(vector, np.float64)
            for n in multiples:
                scope.optics.set_image_shift_um(base_x + n * v[0], base_y + n * v[1])
                if template is None:
                    image = scope.camera.acquire(area)
                    correction = hole_offset_um(scope, image, hole_diameter_um=hole_diameter_um)
                else:
                    image = acquire_to_match(scope, template)
                    limit = 0.3 * float(np.hypot(*v))
                    correction = measure_misplacement(
                        scope, template.data, image, trim=False, max_shift_um=limit
                    ).correction_um
                v = (n * v + np.asarray(correction)) / n
            out.append((float(v[0]), float(v[1])))
    finally:
        scope.optics.set_image_shift_um(base_x, base_y)
    return out


def pattern_targets(vec_a_um: Vector, vec_b_um: Vector, size: int) -> TargetSet:
    """The target set of a (2·size+1)² pattern, with PACEtomo's pattern settings and geo points."""
    offsets = pattern_offsets_um(vec_a_um, vec_b_um, size)
    geo = [GeoPoint(ss_x_um=x, ss_y_um=y) for x, y in pattern_geo_points(vec_a_um, vec_b_um, size)]
    return TargetSet(
        targets=[Target(ss_x_um=float(x), ss_y_um=float(y)) for x, y in offsets],
        geo_points=geo,
        settings={
            "size": float(size),
            "vecA0": vec_a_um[0],
            "vecA1": vec_a_um[1],
            "vecB0": vec_b_um[0],
            "vecB1": vec_b_um[1],
        },
    )


def hole_pattern(
    scope: Microscope,
    *,
    size: int,
    hole_diameter_um: float,
    lattice_area: LowDoseArea = LowDoseArea.SEARCH,
    centre_area: LowDoseArea = LowDoseArea.VIEW,
    refine: bool = True,
) -> HolePattern:
    """Build a hole pattern around the current position (module docstring).

    The field ends centred on the pattern's central hole (image shift), which is target 1.
    """
    overview = scope.camera.acquire(lattice_area)
    lattice = find_lattice(
        overview.data,
        scope.camera.specimen_to_camera_matrix(lattice_area),
        hole_diameter_um=hole_diameter_um,
    )
    centre_on_hole(scope, hole_diameter_um=hole_diameter_um, area=centre_area)
    template = scope.camera.acquire(centre_area)
    vec_a, vec_b = lattice.vec_a_um, lattice.vec_b_um
    if refine:
        multiples = (1, size) if size > 1 else (1,)
        vec_a, vec_b = refine_vectors(
            scope,
            (vec_a, vec_b),
            hole_diameter_um=hole_diameter_um,
            area=centre_area,
            multiples=multiples,
        )
    return HolePattern(pattern_targets(vec_a, vec_b, size), vec_a, vec_b, lattice, template)


def refine_vectors_at_runtime(
    scope: Microscope,
    targets: TargetSet,
    *,
    hole_diameter_um: float,
    area: LowDoseArea = LowDoseArea.VIEW,
    template: Image | None = None,
    max_change_um: float = MAX_REFINE_CHANGE_UM,
) -> tuple[TargetSet, bool]:
    """PACEtomo's ``refineVec``: refine at n·A and n·B, then rewrite every SSX/SSY.

    The field must be centred on target 1. Returns the (possibly) updated targets and whether
    the refinement was accepted; a change of n·A or n·B over ``max_change_um`` is rejected.
    """
    settings = targets.settings
    try:
        size = round(settings["size"])
        vec_a = (settings["vecA0"], settings["vecA1"])
        vec_b = (settings["vecB0"], settings["vecB1"])
    except KeyError as exc:
        raise TargetingError(f"not a pattern: the targets lack the setting {exc.args[0]}") from None
    n = max(size, 1)
    new_a, new_b = refine_vectors(
        scope,
        (vec_a, vec_b),
        hole_diameter_um=hole_diameter_um,
        area=area,
        template=template,
        multiples=(n,),
    )
    change = max(
        n * math.hypot(new_a[0] - vec_a[0], new_a[1] - vec_a[1]),
        n * math.hypot(new_b[0] - vec_b[0], new_b[1] - vec_b[1]),
    )
    if change > max_change_um:
        return targets, False
    basis = np.array([vec_a, vec_b]).T
    new_basis = np.array([new_a, new_b]).T
    out = targets.model_copy(deep=True)
    for target in out.targets:
        idx = np.round(np.linalg.solve(basis, np.array(target.ss_um)))
        target.ss_x_um, target.ss_y_um = (float(v) for v in new_basis @ idx)
    out.settings.update(
        {"vecA0": new_a[0], "vecA1": new_a[1], "vecB0": new_b[0], "vecB1": new_b[1]}
    )
    return out, True
