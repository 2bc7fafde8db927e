"""The microscope steps of a Leginon-style series around the Records (leginon.md §3).

- :func:`wait_for_drift`: the drift manager. Two images of the Focus area (off the target, so
  the target takes no dose), ``interval_s`` apart, give the drift rate; while it is above the
  threshold the measurement repeats, up to a timeout. Every image and wait costs microscope
  time, which the twin's clock counts.
- :func:`backlash_release`: tilt ``steps``° below the start tilt (above it, before a half tilted
  downwards) and come back in 1° steps with a pause after each, so the final approach is in
  the direction every later tilt is approached from.
- :func:`recentre_by_stage`: move the stage until the target sits within a tolerance of the
  field centre on its Preview map, image shift back to zero, as Leginon's iterative recentring;
  only believable registrations count (:func:`register_to_map`), a View searches for a map
  the Preview lost, and a target neither finds is reported lost.
- :func:`tracking_displacement_um`: Leginon's tracking correlation between two images of one
  target (binned to the coarser pixel first), in specimen µm.

The defocus–tilt calibration and the Focus-area readings are in :mod:`.sequential_focus`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.map_register import MIN_MAP_SIGNIFICANCE, register_to_map
from tomopilot.geometry.scope_state import temporary_preset
from tomopilot.imaging.errors import NoCorrelationPeakError
from tomopilot.imaging.tilt_tracking import tracking_shift
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea

# The drift images: the Focus area's whole chip binned to about 512² (16 Å pixels on a 4096²
# camera at 2 Å), exposed at least DRIFT_EXPOSURE_S: ~500 counts per pixel show the
# specimen's texture, and a pair measures the displacement to 1-2 nm, rarely 5 (the twin, holes of
# six grids). A 512² window at binning 2 and 0.3 s had ~9 counts per 4 Å pixel: no
# believable peak in ice or on carbon, and the noise peak read 10-40 nm/s where the twin's
# specimen drifted 0.2-0.5 nm/s.
DRIFT_WINDOW_PX = 512
MAX_DRIFT_BINNING = 16
DRIFT_EXPOSURE_S = 1.0
# A drift peak weaker than this (standard deviations above the correlation's mean) is noise:
# noise peaks of 512² images stand 4-5 high, true ones of textured areas 10-28 (at 0.3 s,
# 7-9 high ones were 4-5 nm off).
MIN_DRIFT_SIGNIFICANCE = 8.0
# A map located in a View (its field's middle, resampled): believed from this peak height on.
MIN_VIEW_SIGNIFICANCE = 10.0
# A tracking peak weaker than this (standard deviations above the map's mean) is not believed:
# true peaks of 0.8 µm fields stand 20–70 high up to 60°, false ones 4–9.
MIN_TRACKING_SIGNIFICANCE = 12.0
# The same for tracking Views (2.9 µm fields of 112 Å pixels over grid holes): true peaks
# between consecutive 15° tilts stand 6-8 high, peaks of plain noise about 4.
MIN_VIEW_TRACKING_SIGNIFICANCE = 5.5


@dataclass(frozen=True)
class DriftReading:
    """What the drift manager saw: the last rate (nan when the images could not tell it), how
    long it waited, how many pairs."""

    rate_nm_s: float
    waited_s: float
    pairs: int
    settled: bool

    @property
    def measured(self) -> bool:
        return not math.isnan(self.rate_nm_s)


def drift_image_conditions(scope: Microscope) -> dict[str, object]:
    """The Focus-area conditions of the drift images: the chip's largest centred square,
    binned (a power of two) to about DRIFT_WINDOW_PX, exposed at least DRIFT_EXPOSURE_S."""
    exposure_s = max(scope.optics.preset(LowDoseArea.FOCUS).exposure_s, DRIFT_EXPOSURE_S)
    width, height = scope.camera.size_px
    side = min(width, height)
    binning = 1
    while side // (2 * binning) >= DRIFT_WINDOW_PX and 2 * binning <= MAX_DRIFT_BINNING:
        binning *= 2
    side -= side % binning
    return {"camera_area_px": (side, side), "binning": binning, "exposure_s": exposure_s}


def wait_for_drift(
    toolkit: Toolkit, *, threshold_nm_s: float, interval_s: float, timeout_s: float
) -> DriftReading:
    """Measure the drift rate until it is below ``threshold_nm_s`` or ``timeout_s`` has passed.

    The rate is the specimen's displacement between two Focus-area images over the time
    between them; a correlation peak under MIN_DRIFT_SIGNIFICANCE is no measurement."""
    scope = toolkit.scope
    clock = scope.clock
    start = clock.now_s()
    pairs = 0
    with temporary_preset(scope, LowDoseArea.FOCUS, **drift_image_conditions(scope)):
        previous = scope.camera.acquire(LowDoseArea.FOCUS)
        while True:
            clock.sleep(interval_s)
            current = scope.camera.acquire(LowDoseArea.FOCUS)
            pairs += 1
            found = toolkit.shift_um(previous, current)
            waited = clock.now_s() - start
            if found is None or found[1] < MIN_DRIFT_SIGNIFICANCE:
                # Images without texture (an empty area, no beam, featureless ice) cannot tell
                # the drift, and waiting will not change that: report it unmeasured, go on.
                return DriftReading(math.nan, waited, pairs, False)
            dt = max(1e-6, current.time_s - previous.time_s)
            rate = float(np.hypot(*found[0])) * 1e3 / dt
            if rate <= threshold_nm_s or waited >= timeout_s:
                return DriftReading(rate, waited, pairs, rate <= threshold_nm_s)
            previous = current


def backlash_release(
    toolkit: Toolkit, start_deg: float, steps: int, pause_s: float, *, from_above: bool = False
) -> None:
    """Tilt ``steps``° below ``start_deg``, then back up to it in 1° steps, pausing after each;
    ``from_above``: above it and back down (Leginon's release before the − half, whose tilts
    are then approached downwards)."""
    scope = toolkit.scope
    limit = scope.stage.limits.tilt_deg
    sign = -1.0 if from_above else 1.0
    scope.stage.tilt_to(max(-limit, min(limit, start_deg - sign * steps)))
    for k in range(steps - 1, -1, -1):
        scope.stage.tilt_to(max(-limit, min(limit, start_deg - sign * k)))
        if pause_s > 0:
            scope.clock.sleep(pause_s)


def locate_map_wider(
    toolkit: Toolkit,
    reference: Image,
    doses_e_a2: list[float] | None = None,
    view_map: Image | None = None,
) -> tuple[NDArray[np.float64], str] | None:
    """Where a target's map lies in a wider field taken now (µm, as :func:`register_to_map`)
    and which field found it, for a target the Preview lost: first a Preview of the camera's
    whole chip (the same pixel, a larger field) when the Preview uses part of it, then a
    View (lower magnification: the map resampled to its pixel; with ``view_map``, the
    target's View from selection, the View is aligned to that instead: it holds the hole's
    edge, where a Preview map of a hole's ice holds nothing to find). None if neither peak is
    believable (MIN_MAP_SIGNIFICANCE, MIN_VIEW_SIGNIFICANCE). The dose of each image taken
    is appended to ``doses_e_a2``."""
    scope = toolkit.scope
    doses = [] if doses_e_a2 is None else doses_e_a2
    preset = scope.optics.preset(LowDoseArea.PREVIEW)
    side = min(scope.camera.size_px)
    side -= side % preset.binning
    if preset.camera_area_px is not None and min(preset.camera_area_px) < side:
        with temporary_preset(scope, LowDoseArea.PREVIEW, camera_area_px=(side, side)):
            wide = scope.camera.acquire(LowDoseArea.PREVIEW)
        doses.append(wide.dose_e_a2)
        hit = toolkit.locate_in_wider(reference, wide)
        reach_um = min(wide.data.shape) * wide.pixel_size_a * 1e-4 / 2
        if hit is not None and hit[1] >= MIN_MAP_SIGNIFICANCE and math.hypot(*hit[0]) <= reach_um:
            return np.asarray(hit[0], dtype=np.float64), "whole-chip Preview"
    view = toolkit.view()
    doses.append(view.dose_e_a2)
    if view_map is not None:  # View to View, as the tracking Views (their threshold)
        hit = toolkit.shift_um(view_map, view)
        threshold = MIN_VIEW_TRACKING_SIGNIFICANCE
    else:
        hit = toolkit.locate_in_wider(reference, view)
        threshold = MIN_VIEW_SIGNIFICANCE
    if hit is None or hit[1] < threshold:
        return None
    return np.asarray(hit[0], dtype=np.float64), "View"


@dataclass(frozen=True)
class Recentring:
    """What the stage recentring did: the image shift that now centres the target, the misses
    measured (µm), how many times a wider field had to find the map, and whether the target
    was found at all (``lost``: no field matched the map; the stage stays where its move put
    it and the image shift at the origin)."""

    image_shift_um: tuple[float, float]
    misses_um: list[float]
    widened: int = 0
    lost: bool = False
    dose_e_a2: float = 0.0  # of the images it took at the target (Previews, wider fields)
    # How far the target stood from where the stage's move under it should have put it
    # (the move's offset plus what the Previews measured; µm of stage): the stage's creep
    # since the target's position was taken (drift, jumps, a dewar fill's burst).
    stage_offset_um: tuple[float, float] = (0.0, 0.0)


def recentre_by_stage(
    toolkit: Toolkit,
    reference: Image,
    image_shift_um: tuple[float, float],
    *,
    tolerance_um: float,
    iterations: int,
    stage_offset_um: tuple[float, float] = (0.0, 0.0),
    view_map: Image | None = None,
) -> Recentring:
    """Move the stage under the target (its map ``reference``), the image shift back to 0.

    The target sits at ``image_shift_um``; the stage takes that shift over (plus
    ``stage_offset_um``: how far the last target stood from its stage position, when the
    stage creeps; if the first Preview then finds nothing, the move is tried without it:
    the last target's offset may have been its own move's error), then Preview images
    registered to the map (:func:`register_to_map`) correct the rest by stage moves until
    within ``tolerance_um``. When a Preview cannot be registered (the stage missed by more
    than half its field, or it shows too little), a wider field is searched for the map
    (:func:`locate_map_wider`, with the target's View from selection ``view_map`` when there
    is one) and the stage moves by what it finds; when that fails too, the target is reported
    lost.
    """
    scope = toolkit.scope
    misses: list[float] = []
    shift = np.array(image_shift_um, dtype=np.float64)
    if iterations <= 0:
        return Recentring((float(shift[0]), float(shift[1])), misses)
    base = np.array(scope.optics.image_shift_um()) - shift  # the area's image-shift origin
    carried = np.array(stage_offset_um, dtype=np.float64)
    offset = carried.copy()
    first = shift + offset
    scope.stage.move_by(dx_um=float(first[0]), dy_um=float(first[1]), backlash_compensate=True)
    scope.optics.set_image_shift_um(float(base[0]), float(base[1]))
    residual = base.copy()
    widened = 0
    lost = False
    doses: list[float] = []
    for i in range(iterations):
        preview = scope.camera.acquire(LowDoseArea.PREVIEW)
        doses.append(preview.dose_e_a2)
        miss = register_to_map(toolkit, reference, preview)
        if miss is None and i == 0 and np.any(carried):
            # The last area's offset may have been its own move's error, not the stage's creep.
            miss = _without_carry(toolkit, reference, carried, doses)
            if miss is not None:
                offset = offset - carried
        from_preview = miss is not None
        if miss is None:
            wider = locate_map_wider(toolkit, reference, doses, view_map)
            if wider is None:
                lost = True  # keep what the stage did, image shift at the origin
                break
            miss = wider[0]
            widened += 1
        misses.append(float(np.hypot(*miss)))
        offset = offset + miss
        if (from_preview and misses[-1] <= tolerance_um) or i == iterations - 1:
            residual = base + miss  # the rest is left to image shift
            break
        scope.stage.move_by(dx_um=float(miss[0]), dy_um=float(miss[1]), backlash_compensate=True)
    scope.optics.set_image_shift_um(float(residual[0]), float(residual[1]))
    return Recentring(
        (float(residual[0]), float(residual[1])),
        misses,
        widened,
        lost,
        float(sum(doses)),
        (float(offset[0]), float(offset[1])),
    )


def _without_carry(
    toolkit: Toolkit, reference: Image, carried: NDArray[np.float64], doses: list[float]
) -> NDArray[np.float64] | None:
    """The map's miss from a Preview at the stage's move without the carried offset (the stage
    left there), or None (the stage put back: a wider field then looks where it was)."""
    stage = toolkit.scope.stage
    stage.move_by(dx_um=-float(carried[0]), dy_um=-float(carried[1]), backlash_compensate=True)
    preview = toolkit.scope.camera.acquire(LowDoseArea.PREVIEW)
    doses.append(preview.dose_e_a2)
    miss = register_to_map(toolkit, reference, preview)
    if miss is None:
        stage.move_by(dx_um=float(carried[0]), dy_um=float(carried[1]), backlash_compensate=True)
    return miss


def _coarsen(image: Image, factor: int) -> np.ndarray:
    data = np.asarray(image.data, dtype=np.float32)
    if factor == 1:
        return data
    ny, nx = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    return np.asarray(
        data[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3)),
        dtype=np.float32,
    )


def tracking_displacement_um(
    toolkit: Toolkit,
    reference: Image,
    image: Image,
    reference_tilt_deg: float,
    tilt_deg: float,
    min_significance: float = MIN_TRACKING_SIGNIFICANCE,
    pretilt_deg: float = 0.0,
) -> tuple[float, float] | None:
    """Displacement of the target from ``reference`` to ``image`` (specimen µm), or None.

    Both images must be at one magnification; the finer is binned to the coarser pixel. None
    when they differ otherwise, or the correlation finds no peak ``min_significance`` high.

    Each image is untilted into the specimen's plane, which lies at the stage tilt plus
    ``pretilt_deg`` (the pretilt's component about the axis,
    ``fused_align.pretilt_about_axis_deg``): Leginon's 1/cos θ (``pretilt_deg`` 0) leaves a
    lamella's two images differing by a stretch, and on a 2.9 µm View the peak leans towards
    the field's texture by tens of nm per step at high tilt.
    """
    if reference.magnification != image.magnification:
        return None
    ratio = reference.pixel_size_a / image.pixel_size_a
    factor = round(max(ratio, 1.0 / ratio))
    if abs(max(ratio, 1.0 / ratio) - factor) > 1e-6:
        return None
    coarse = reference if ratio >= 1 else image
    ref = _coarsen(reference, 1 if ratio >= 1 else factor)
    img = _coarsen(image, factor if ratio > 1 else 1)
    if ref.shape != img.shape:
        return None
    matrix = toolkit.camera_matrix(coarse)
    axis = matrix @ np.array([1.0, 0.0])
    try:
        result = tracking_shift(
            ref,
            img,
            reference_tilt_deg + pretilt_deg,
            tilt_deg + pretilt_deg,
            (float(axis[0]), float(axis[1])),
        )
    except (NoCorrelationPeakError, ValueError):
        return None
    if result.significance < min_significance:
        return None
    shift = np.linalg.solve(matrix, np.array([result.shift_x_px, result.shift_y_px]))
    return float(shift[0]), float(shift[1])
