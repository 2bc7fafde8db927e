"""SerialEM-style X,Y positioning: realign to an item, reset image shift, acquire to match, align.

The routine of the X,Y-positioning note (seeds/000), as one reusable operation::

    RealignToNavItem 0      → realign_to_item: stage to the item, then fresh images under the
                              map's own conditions aligned to the map, corrected by image shift
    ResetImageShift 2       → reset_image_shift: the image shift becomes a stage move, with
                              backlash compensation and a small relaxation
    AcquireToMatchBuffer T  → acquire_to_match: an image with the reference's area, binning and
                              exposure, cropped to its size
    AlignTo T 0 1           → align_to: cross-correlate, optionally without trimming dark
                              borders (grids with dark film), and apply the shift as image shift

:func:`realign` runs all four. Conventions (Microscope protocol): an image shift or stage move
of +d µm moves the field by +d over the specimen, so image content moves by −M·d pixels, with M
the area's specimen-to-camera matrix. If a reference's content at p appears in a new image at
p + s, the field is off by −M⁻¹s and an image shift of +M⁻¹s puts it back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.core.events import Progress
from tomopilot.geometry.scope_state import temporary_preset
from tomopilot.imaging.xcorr import align
from tomopilot.instrument import Image, LowDoseArea, Microscope
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.map_image import MapImage

DEFAULT_RELAX_UM = 0.025  # SerialEM property StageRelaxation
DARK_BORDER_FRACTION = 0.3


@dataclass(frozen=True)
class AlignResult:
    """A measured misplacement: the correction (specimen µm), the pixel shift and CC peak."""

    correction_um: tuple[float, float]
    shift_px: tuple[float, float]
    peak: float
    applied: bool


@dataclass(frozen=True)
class RealignResult:
    """What realign-to-item did: its corrections (µm) and the last image it took."""

    iterations: int
    converged: bool
    corrections_um: tuple[tuple[float, float], ...]
    image: Image

    @property
    def last_correction_um(self) -> float:
        """Size of the last image-shift correction."""
        x, y = self.corrections_um[-1]
        return math.hypot(x, y)


def _crop_centre(data: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float32]:
    ny, nx = data.shape
    h, w = min(shape[0], ny), min(shape[1], nx)
    y0, x0 = (ny - h) // 2, (nx - w) // 2
    return data[y0 : y0 + h, x0 : x0 + w]


def _conditions(reference: Image | MapImage) -> tuple[LowDoseArea, dict[str, object]]:
    image = reference if isinstance(reference, Image) else reference.image
    if image is None:
        raise TargetingError("the reference has no exposure conditions: give an Image-based map")
    return image.area, {"binning": image.binning, "exposure_s": image.exposure_s}


def acquire_to_match(scope: Microscope, reference: Image) -> Image:
    """Take an image with the reference's area, binning and exposure, cropped to its size."""
    area, changes = _conditions(reference)
    preset = scope.optics.preset(area)
    binning = int(changes["binning"])  # type: ignore[call-overload]
    ref_h, ref_w = reference.data.shape
    width, height = preset.camera_area_px or scope.camera.size_px
    if width < ref_w * binning or height < ref_h * binning:
        sensor_w, sensor_h = scope.camera.size_px
        changes["camera_area_px"] = (
            min(sensor_w - sensor_w % binning, max(width, ref_w * binning)),
            min(sensor_h - sensor_h % binning, max(height, ref_h * binning)),
        )
    wanted = {k: v for k, v in changes.items() if getattr(preset, k) != v}
    with temporary_preset(scope, area, **wanted):
        image = scope.camera.acquire(area)
    return dataclasses.replace(image, data=_crop_centre(image.data, (ref_h, ref_w)).copy())


def _trim_box(data: NDArray[np.float32]) -> tuple[slice, slice]:
    """Rows and columns to keep after dropping dark borders (SerialEM's trimming)."""
    level = float(np.median(data))
    rows = data.mean(axis=1) > DARK_BORDER_FRACTION * level
    cols = data.mean(axis=0) > DARK_BORDER_FRACTION * level

    def span(mask: NDArray[np.bool_]) -> slice:
        idx = np.flatnonzero(mask)
        return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, len(mask))

    return span(rows), span(cols)


def measure_misplacement(
    scope: Microscope,
    reference: NDArray[np.floating],
    image: Image,
    *,
    trim: bool = True,
    max_shift_um: float | None = None,
) -> AlignResult:
    """How far the field of ``image`` is from the reference's (the correction to apply)."""
    ref = np.asarray(reference, np.float32)
    data = np.asarray(image.data, np.float32)
    if ref.shape != data.shape:
        shape = (min(ref.shape[0], data.shape[0]), min(ref.shape[1], data.shape[1]))
        ref, data = _crop_centre(ref, shape), _crop_centre(data, shape)
    if trim:
        r_rows, r_cols = _trim_box(ref)
        d_rows, d_cols = _trim_box(data)
        rows = slice(max(r_rows.start, d_rows.start), min(r_rows.stop, d_rows.stop))
        cols = slice(max(r_cols.start, d_cols.start), min(r_cols.stop, d_cols.stop))
        if rows.stop - rows.start >= 32 and cols.stop - cols.start >= 32:
            # keep the crop centred, so the shift stays about the same centre
            ref, data = ref[rows, cols], data[rows, cols]
    matrix = scope.camera.specimen_to_camera_matrix(image.area)
    limit_px = None
    if max_shift_um is not None:
        limit_px = max_shift_um * float(np.sqrt(abs(np.linalg.det(matrix))))
    result = align(ref, data, max_shift_px=limit_px, low_pass_px=2.0, upsample=20)
    shift = np.array([result.shift_x_px, result.shift_y_px])
    correction = np.linalg.solve(matrix, shift)
    return AlignResult(
        (float(correction[0]), float(correction[1])),
        (result.shift_x_px, result.shift_y_px),
        result.peak,
        applied=False,
    )


def align_to(
    scope: Microscope,
    reference: Image | NDArray[np.floating],
    image: Image,
    *,
    trim: bool = True,
    apply: bool = True,
    max_shift_um: float | None = None,
) -> AlignResult:
    """Align ``image`` to ``reference`` and (by default) correct the field by image shift.

    ``trim=False`` is SerialEM's "no trimming" (``AlignTo buf 0 1``), for grids whose dark
    film regions would otherwise be cut away.
    """
    ref = reference.data if isinstance(reference, Image) else reference
    result = measure_misplacement(scope, ref, image, trim=trim, max_shift_um=max_shift_um)
    if apply:
        x, y = scope.optics.image_shift_um()
        dx, dy = result.correction_um
        scope.optics.set_image_shift_um(x + dx, y + dy)
        result = dataclasses.replace(result, applied=True)
    return result


def reset_image_shift(
    scope: Microscope, *, backlash: bool = True, relax_um: float = DEFAULT_RELAX_UM
) -> tuple[float, float]:
    """Turn the image shift into a stage move (SerialEM ``ResetImageShift 2``).

    The stage moves by the image shift, its y divided by cos(tilt) (the specimen is
    foreshortened across the axis); the focus changes by +y·tan(tilt) so the target keeps its
    defocus (it sat y·tan(tilt) deeper, z along the beam, than the axis it moves to). With
    ``backlash`` the move ends in the + direction and then relaxes back by ``relax_um``;
    backlash is imposed only below 10° tilt, as SerialEM does. Returns the stage move (µm).
    """
    is_x, is_y = scope.optics.image_shift_um()
    tilt = scope.stage.position().tilt_deg
    dx, dy = is_x, is_y / math.cos(math.radians(tilt))
    use_backlash = backlash and abs(tilt) < 10.0
    scope.stage.move_by(dx_um=dx, dy_um=dy, backlash_compensate=use_backlash)
    if use_backlash and relax_um > 0:
        scope.stage.move_by(dx_um=-relax_um, dy_um=-relax_um)
    scope.optics.set_image_shift_um(0.0, 0.0)
    if tilt != 0.0:
        focus = scope.optics.focus_um()
        scope.optics.set_focus_um(focus + is_y * math.tan(math.radians(tilt)))
    return dx, dy


def map_reference(
    map_image: MapImage, point_um: tuple[float, float], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """The part of a map centred on a specimen point, ``shape`` pixels, mean-padded."""
    ny, nx = shape
    centre = map_image.to_pixels(np.array([point_um]))[0]
    rows, cols = np.mgrid[0:ny, 0:nx].astype(np.float64)
    src_cols = cols + 0.5 - nx / 2 + centre[0] - 0.5
    src_rows = rows + 0.5 - ny / 2 + centre[1] - 0.5
    fill = float(np.mean(map_image.data))
    out = ndimage.map_coordinates(
        map_image.data.astype(np.float64), [src_rows, src_cols], order=3, mode="constant", cval=fill
    )
    return out.astype(np.float32)


def realign_to_item(
    scope: Microscope,
    map_image: MapImage,
    point_um: tuple[float, float] | None = None,
    *,
    max_iterations: int = 3,
    tolerance_um: float = 0.02,
    trim: bool = True,
    return_to_record: bool = True,
) -> RealignResult:
    """Bring the field onto ``point_um`` (specimen µm; default the map centre).

    The stage moves to the point (backlash-compensated, image shift zero); then up to
    ``max_iterations`` images are taken under the map's own conditions (area, binning,
    exposure), aligned to the map and corrected by image shift, until a correction is below
    ``tolerance_um``. With ``return_to_record`` the area's preset is restored afterwards,
    otherwise the map's conditions stay set.
    """
    area, changes = _conditions(map_image)
    point = map_image.centre_um if point_um is None else point_um
    scope.stage.move_to(x_um=point[0], y_um=point[1], backlash_compensate=True)
    scope.optics.set_image_shift_um(0.0, 0.0)
    preset = scope.optics.preset(area)
    wanted = {k: v for k, v in changes.items() if getattr(preset, k) != v}
    corrections: list[tuple[float, float]] = []
    converged = False
    image: Image | None = None
    manager = temporary_preset(scope, area, **wanted)
    manager.__enter__()
    try:
        for iteration in range(1, max_iterations + 1):
            image = scope.camera.acquire(area)
            reference = map_reference(map_image, point, image.data.shape)
            result = align_to(scope, reference, image, trim=trim)
            corrections.append(result.correction_um)
            scope.events.emit(
                Progress(
                    time_s=scope.clock.now_s(),
                    task="realign",
                    done=iteration,
                    total=max_iterations,
                    detail=f"correction {math.hypot(*result.correction_um) * 1e3:.0f} nm",
                )
            )
            if math.hypot(*result.correction_um) < tolerance_um:
                converged = True
                break
    finally:
        if return_to_record:
            manager.__exit__(None, None, None)
    assert image is not None
    return RealignResult(len(corrections), converged, tuple(corrections), image)


def realign(
    scope: Microscope,
    map_image: MapImage,
    point_um: tuple[float, float] | None = None,
    *,
    reference: Image | None = None,
    max_iterations: int = 3,
    tolerance_um: float = 0.02,
    trim: bool = False,
    backlash: bool = True,
) -> tuple[RealignResult, AlignResult]:
    """The whole X,Y-positioning routine (module docstring): realign, reset, match, align.

    ``reference`` is the image to align to at the end (SerialEM's buffer T); by default the
    map cropped around the point, taken as an :class:`Image` of the map's conditions.
    """
    first = realign_to_item(
        scope,
        map_image,
        point_um,
        max_iterations=max_iterations,
        tolerance_um=tolerance_um,
        trim=True,
        return_to_record=True,
    )
    reset_image_shift(scope, backlash=backlash)
    point = map_image.centre_um if point_um is None else point_um
    if reference is None:
        data = map_reference(map_image, point, first.image.data.shape)
        reference = dataclasses.replace(first.image, data=data)
    image = acquire_to_match(scope, reference)
    final = align_to(scope, reference, image, trim=trim)
    return first, final
