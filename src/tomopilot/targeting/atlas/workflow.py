"""From a grid to a target list, unattended (Leginon's MSI chain as one function).

1. **Atlas** (Grid preset): a stitched montage of the grid (:mod:`.montage`).
2. **Squares**: found in the atlas, their ice from counts, flagged and ranked (:mod:`.squares`).
3. **Square images** (Square preset) of the best ``squares``: holes found and judged
   (:mod:`~tomopilot.targeting.hole_finder`); up to ``targets_per_square`` intact holes apart
   from each other are chosen, each with a focus point on carbon along the tilt axis.
4. **Hole images** (Hole preset) at each chosen hole: the stage goes there (to a micrometre
   or so), and image shift brings the hole nearest the centre to the centre (a few images);
   the target becomes stage readout + image shift.
5. **Preview**, with that image shift, so it is centred on the hole: its counts through the ice
   against the Preview preset's dose give the ice thickness (the log ratio again), a target
   outside ``ice_range_nm`` is dropped, and the image is kept as the target's map, to which the
   series recentres the target by stage moves (Leginon's iterative recentring) when it starts.
   A **View** follows, with the same image shift, under the View area's own conditions (as
   the series will take its Views): it shows the hole's edge and the carbon around it, which
   the Preview (all ice) does not, and the series realigns to it first (SerialEM's Realign to
   Item, PACEtomo's ``viewfile``), wherever the stage has crept to since the atlas.
   The Preview dose is measured once over vacuum, at the torn film of a broken square the
   atlas found (Leginon's dose measurement over an empty area; a real microscope's preset
   has no dose until then, and a beam's current is not its nominal one: on the twin a 3 %
   lower beam read 11 nm too much ice with the nominal dose). The point is well inside the
   torn patch (VACUUM_CLEAR_UM, for the stage's error going there) and the Preview must show
   an even beam, else the dose is not measured (a warning). A preset whose dose was
   already measured is used as it is; without vacuum in the atlas the nominal dose is used,
   or, with none, the targets are kept unjudged (a warning says so).

Everything is in the stage frame of the microscope (stage position plus image shift), so the
targets are where the same microscope goes back to. Progress is emitted as
:class:`~tomopilot.core.events.Progress` on the microscope's bus (task ``atlas``, ``squares``,
``targets``); nothing here prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy import ndimage

from tomopilot.core.config import ConfigModel
from tomopilot.core.events import Message, Progress
from tomopilot.instrument import AreaPreset, Image, LowDoseArea, Microscope
from tomopilot.instrument.presets import PresetManager
from tomopilot.targeting.atlas.montage import Atlas, acquire_atlas
from tomopilot.targeting.atlas.squares import (
    VACUUM_LEVEL,
    Square,
    SquareSurvey,
    survey_squares,
)
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.hole_finder import (
    ICE_MFP_NM,
    HoleFinding,
    HoleTarget,
    choose_targets,
    find_holes_in_square,
)
from tomopilot.targeting.hole_pattern import HoleNotFoundError, centre_on_hole
from tomopilot.targeting.map_image import MapImage

VACUUM_CLEAR_UM = 10.0  # a vacuum point this far inside a torn patch: a stage move's error
VACUUM_EVEN = 0.8  # a dose measurement's beam is even: no row or column under 80 % of the top


class AtlasSettings(ConfigModel):
    """What ``tomopilot atlas`` does (see module docstring); lengths in µm."""

    centre_um: tuple[float, float] = (0.0, 0.0)
    extent_um: float = Field(default=3050.0, gt=0, description="side of the area the atlas covers")
    overlap: float = Field(default=0.12, ge=0, lt=0.5)
    hole_diameter_um: float = Field(default=2.0, gt=0)
    hole_pitch_um: float = Field(default=3.0, gt=0)
    squares: int = Field(default=5, ge=1, description="best-ranked squares to look at")
    targets_per_square: int = Field(default=4, ge=1)
    min_separation_um: float = Field(default=6.0, ge=0)
    target_ice_nm: float = Field(default=80.0, gt=0, description="the square ranking's aim")
    ice_range_nm: tuple[float, float] = (20.0, 250.0)
    max_square_ice_nm: float = Field(default=200.0, gt=0)
    recentre_with_hole_image: bool = True
    confirm_with_preview: bool = True
    view_per_target: bool = Field(
        default=True, description="a View of each target, for its series to realign to"
    )
    mfp_nm: float = Field(default=ICE_MFP_NM, gt=0)


@dataclass
class AtlasResult:
    """The atlas, its survey, what was found in each square looked at, the targets, their
    Preview maps (None without the Preview step) and their Views (None without)."""

    atlas: Atlas
    survey: SquareSurvey
    findings: list[tuple[Square, HoleFinding]] = field(default_factory=list)
    targets: list[HoleTarget] = field(default_factory=list)
    target_squares: list[int] = field(default_factory=list)
    maps: list[NDArray[np.float32] | None] = field(default_factory=list)
    views: list[NDArray[np.float32] | None] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


def _emit(scope: Microscope, task: str, done: int, total: int, detail: str) -> None:
    scope.events.emit(
        Progress(time_s=scope.clock.now_s(), task=task, done=done, total=total, detail=detail)
    )


def _centre_on_hole(
    scope: Microscope, presets: PresetManager, target: HoleTarget, settings: AtlasSettings
) -> HoleTarget | None:
    """Stage to a target, then image shift onto the hole the Hole-preset images show nearest
    the centre (a few iterations); the target becomes stage readout + image shift. The image
    shift is left on for the Preview; None (image shift back to 0) when no hole is near."""
    scope.optics.set_image_shift_um(0.0, 0.0)
    scope.stage.move_to(x_um=target.centre_um[0], y_um=target.centre_um[1])
    area = presets.apply("Hole")
    try:
        centre_on_hole(scope, hole_diameter_um=settings.hole_diameter_um, area=area)
    except HoleNotFoundError:
        scope.optics.set_image_shift_um(0.0, 0.0)
        return None
    ix, iy = scope.optics.image_shift_um()
    if math.hypot(ix, iy) > settings.hole_pitch_um / 2:
        scope.optics.set_image_shift_um(0.0, 0.0)
        return None  # nearer another hole than this one: not where the square image put it
    stage = scope.stage.position()
    dx, dy = stage.x_um + ix - target.centre_um[0], stage.y_um + iy - target.centre_um[1]
    return HoleTarget(
        centre_um=(target.centre_um[0] + dx, target.centre_um[1] + dy),
        focus_um=(target.focus_um[0] + dx, target.focus_um[1] + dy),
        ice_nm=target.ice_nm,
    )


def _preview(
    scope: Microscope, presets: PresetManager, mfp_nm: float
) -> tuple[float, NDArray[np.float32]]:
    """A Preview where the field is (its map for the series) and the ice its counts give
    against the Preview preset's dose."""
    image = presets.acquire("Preview")
    preset = presets.get("Preview")
    ny, nx = image.data.shape
    centre = image.data[ny // 4 : 3 * ny // 4, nx // 4 : 3 * nx // 4]
    per_pixel = preset.dose_e_a2 * image.pixel_size_a**2 * image.counts_per_electron
    transmission = float(centre.mean()) / per_pixel if per_pixel > 0 else 0.0
    ice = mfp_nm * -math.log(transmission) if transmission > 0 else math.inf
    return ice, np.asarray(image.data, np.float32)


def _view(scope: Microscope, conditions: AreaPreset) -> NDArray[np.float32]:
    """A View where the field is, under the View area's own ``conditions`` (those the series
    takes its Views with; the Hole preset goes through the same area and may differ)."""
    scope.optics.set_preset(LowDoseArea.VIEW, conditions)
    return np.asarray(scope.camera.acquire(LowDoseArea.VIEW).data, np.float32)


def vacuum_point_um(
    atlas_map: MapImage, vacuum_counts: float, clear_um: float = VACUUM_CLEAR_UM
) -> tuple[float, float] | None:
    """A specimen point of the atlas in vacuum (torn film) at least ``clear_um`` from anything
    that is not vacuum, nearest the atlas centre; where no vacuum is that wide, the point
    deepest inside the vacuum there is. None if the atlas shows no vacuum three pixels wide.

    The clearance is the stage's error in going there: a point three atlas pixels (4.5 µm)
    inside a torn patch put the Preview on a grid bar for a stage that misses by 7 µm."""
    smooth = ndimage.gaussian_filter(np.asarray(atlas_map.data, np.float64), 1.0)
    depth_um = ndimage.distance_transform_edt(smooth >= VACUUM_LEVEL * vacuum_counts)
    depth_um = np.asarray(depth_um, np.float64) * atlas_map.pixel_um
    if depth_um.max() < 3 * atlas_map.pixel_um:
        return None
    rows, cols = np.nonzero(depth_um >= min(clear_um, float(depth_um.max())))
    ny, nx = smooth.shape
    nearest = int(np.argmin(np.hypot(cols - nx / 2, rows - ny / 2)))
    point = atlas_map.to_specimen(np.array([[cols[nearest] + 0.5, rows[nearest] + 0.5]]))[0]
    return float(point[0]), float(point[1])


def looks_like_vacuum(image: Image) -> bool:
    """Whether an exposure saw an even beam: no pixel row or column of the image is darker than
    VACUUM_EVEN of the brightest (a grid bar, the film's edge or a hole's rim in the field is;
    shot noise at a dose measurement's counts is not)."""
    data = np.asarray(image.data, np.float64)
    profiles = [data.mean(axis=0), data.mean(axis=1)]
    return all(p.max() > 0 and p.min() >= VACUUM_EVEN * p.max() for p in profiles)


def measure_preview_dose(
    scope: Microscope, presets: PresetManager, atlas_map: MapImage, survey: SquareSurvey
) -> bool:
    """Measure the Preview dose over the atlas's vacuum; False if there is no vacuum."""
    point = None
    if survey.vacuum_source != "brightest square pixels":  # a true vacuum reference
        point = vacuum_point_um(atlas_map, survey.vacuum_counts)
    if point is None:
        known = presets.get("Preview").dose_e_a2 > 0
        scope.events.emit(
            Message(
                time_s=scope.clock.now_s(),
                level="warning",
                text="the atlas shows no vacuum to measure the Preview dose over: "
                + (
                    "the Preview's ice uses the preset's nominal dose"
                    if known
                    else "targets are kept without the Preview's ice check"
                ),
            )
        )
        return False
    scope.optics.set_image_shift_um(0.0, 0.0)
    scope.stage.move_to(x_um=point[0], y_um=point[1])
    image = presets.acquire("Preview")
    if not looks_like_vacuum(image):
        scope.events.emit(
            Message(
                time_s=scope.clock.now_s(),
                level="warning",
                text=f"no even beam at ({point[0]:.0f}, {point[1]:.0f}) um, where the atlas "
                "shows vacuum (the stage missed it?): the Preview dose is not measured",
            )
        )
        return False
    dose = presets.record_dose("Preview", image)
    scope.events.emit(
        Message(
            time_s=scope.clock.now_s(),
            level="info",
            text=f"Preview dose {dose:.3g} e/A^2 measured over vacuum at "
            f"({point[0]:.0f}, {point[1]:.0f}) um",
        )
    )
    return dose > 0


def grid_to_targets(
    scope: Microscope, presets: PresetManager, settings: AtlasSettings | None = None
) -> AtlasResult:
    """Atlas, squares, holes and targets of the grid in the microscope (module docstring)."""
    settings = settings or AtlasSettings()
    view_conditions = scope.optics.preset(LowDoseArea.VIEW)  # before the Hole preset's
    atlas = acquire_atlas(
        scope,
        presets,
        centre_um=settings.centre_um,
        extent_um=settings.extent_um,
        overlap=settings.overlap,
    )
    atlas_map = atlas.stitched()
    survey = survey_squares(
        atlas_map,
        mfp_nm=settings.mfp_nm,
        target_nm=settings.target_ice_nm,
        max_nm=settings.max_square_ice_nm,
    )
    result = AtlasResult(atlas=atlas, survey=survey, dropped={"hole image": 0, "preview": 0})
    ranked = survey.ranked()[: settings.squares]
    if not ranked:
        raise TargetingError("no usable square in the atlas (all broken, empty or too thick)")
    judge_ice = settings.confirm_with_preview
    if judge_ice and presets.get("Preview").measured_dose_e_a2 is None:
        measured = measure_preview_dose(scope, presets, atlas_map, survey)
        judge_ice = measured or presets.get("Preview").dose_e_a2 > 0
    for done, square in enumerate(ranked, start=1):
        scope.stage.move_to(x_um=square.centre_um[0], y_um=square.centre_um[1])
        image = presets.acquire("Square")
        square_map = MapImage.from_exposure(scope, image)
        finding = find_holes_in_square(
            square_map, settings.hole_diameter_um, pitch_um=settings.hole_pitch_um
        )
        result.findings.append((square, finding))
        chosen = choose_targets(
            finding,
            settings.hole_diameter_um,
            count=settings.targets_per_square,
            min_separation_um=settings.min_separation_um,
        )
        for target in chosen:
            kept = target
            if settings.recentre_with_hole_image:
                moved = _centre_on_hole(scope, presets, target, settings)
                if moved is None:
                    result.dropped["hole image"] += 1
                    continue
                kept = moved
            else:
                scope.optics.set_image_shift_um(0.0, 0.0)
                scope.stage.move_to(x_um=target.centre_um[0], y_um=target.centre_um[1])
            preview: NDArray[np.float32] | None = None
            if settings.confirm_with_preview:
                ice, preview = _preview(scope, presets, settings.mfp_nm)
                lo, hi = settings.ice_range_nm
                if judge_ice and not lo <= ice <= hi:
                    scope.optics.set_image_shift_um(0.0, 0.0)
                    result.dropped["preview"] += 1
                    continue
                if judge_ice:
                    kept = HoleTarget(centre_um=kept.centre_um, focus_um=kept.focus_um, ice_nm=ice)
            view = _view(scope, view_conditions) if settings.view_per_target else None
            scope.optics.set_image_shift_um(0.0, 0.0)
            result.targets.append(kept)
            result.maps.append(preview)
            result.views.append(view)
            result.target_squares.append(square.label)
        _emit(
            scope,
            "squares",
            done,
            len(ranked),
            f"square {square.rank} ({square.thickness_nm:.0f} nm): "
            f"{len(finding.intact)} holes, {len(chosen)} chosen",
        )
    if not result.targets:
        scope.events.emit(
            Message(time_s=scope.clock.now_s(), level="warning", text="no target was kept")
        )
    scope.stage.move_to(x_um=settings.centre_um[0], y_um=settings.centre_um[1])
    return result
