"""Warnings about a target set: image-shift reach, beam overlap at maxTilt, grid bars.

- **Image-shift limit.** Targets whose specimen shift is within ``margin_um`` (PACEtomo: the
  0.5 µm alignLimit) of the image-shift limit may be aborted during the series, when tracking
  adds to their shift.
- **Overlap.** Beam footprints are ellipses stretched by 1/cos θmax across the tilt axis
  (:mod:`tomopilot.geometry.footprints`); overlapping ones pre-expose each other at high tilt.
- **Grid bars.** A target whose tilted footprint reaches a dark (opaque) region of a map, such
  as a grid bar, loses its image at high tilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tomopilot.geometry.footprints import ellipse_samples_um, overlapping_pairs
from tomopilot.targeting.map_image import MapImage
from tomopilot.targeting.targets import TargetSet

ALIGN_LIMIT_UM = 0.5


@dataclass(frozen=True)
class TargetWarning:
    """A warning about targets (0-based indices), with a short code and a message."""

    code: str
    targets: tuple[int, ...]
    message: str


def image_shift_warnings(
    targets: TargetSet, *, limit_um: float, margin_um: float = ALIGN_LIMIT_UM
) -> list[TargetWarning]:
    """Targets whose specimen shift is beyond ``limit_um − margin_um`` on an axis."""
    out = []
    for index, target in enumerate(targets.targets):
        reach = max(abs(target.ss_x_um), abs(target.ss_y_um))
        if reach > limit_um - margin_um:
            beyond = "beyond" if reach > limit_um else f"within {limit_um - reach:.2g} µm of"
            out.append(
                TargetWarning(
                    "image-shift-limit",
                    (index,),
                    f"target {index + 1} at ({target.ss_x_um:.2f}, {target.ss_y_um:.2f}) µm is "
                    f"{beyond} the image-shift limit of ±{limit_um:g} µm",
                )
            )
    return out


def overlap_warnings(
    targets: TargetSet, *, beam_radius_um: float, max_tilt_deg: float, gap_um: float = 0.0
) -> list[TargetWarning]:
    """Pairs of targets whose beam footprints overlap at ``max_tilt_deg``."""
    active = targets.active
    points = targets.ss_array_um()[active]
    out = []
    for i, j in overlapping_pairs(
        points, beam_radius_um=beam_radius_um, max_tilt_deg=max_tilt_deg, gap_um=gap_um
    ):
        a, b = active[i], active[j]
        out.append(
            TargetWarning(
                "beam-overlap",
                (a, b),
                f"the beams of targets {a + 1} and {b + 1} overlap at {max_tilt_deg:g}°",
            )
        )
    return out


def opaque_threshold(data: np.ndarray, fraction: float = 0.2) -> float:
    """Counts below which a map pixel counts as opaque: ``fraction`` of the bright level."""
    bright = float(np.percentile(data, 90))
    return fraction * bright


def grid_bar_warnings(
    targets: TargetSet,
    map_image: MapImage,
    *,
    origin_um: tuple[float, float],
    beam_radius_um: float,
    max_tilt_deg: float,
    dark_fraction: float = 0.2,
) -> list[TargetWarning]:
    """Targets whose footprint at ``max_tilt_deg`` reaches an opaque region of a map.

    ``origin_um`` is target 1's specimen position in the map's coordinates. Parts of a
    footprint outside the map are not judged.
    """
    threshold = opaque_threshold(map_image.data, dark_fraction)
    out = []
    for index in targets.active:
        target = targets.targets[index]
        centre = (origin_um[0] + target.ss_x_um, origin_um[1] + target.ss_y_um)
        samples = ellipse_samples_um(
            centre, beam_radius_um=beam_radius_um, max_tilt_deg=max_tilt_deg
        )
        values = map_image.sample(samples)
        seen = values[np.isfinite(values)]
        if seen.size and np.mean(seen < threshold) > 0.02:
            out.append(
                TargetWarning(
                    "grid-bar",
                    (index,),
                    f"target {index + 1}: its beam at {max_tilt_deg:g}° reaches an opaque "
                    "region (a grid bar?)",
                )
            )
    return out
