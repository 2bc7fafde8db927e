"""``sequential``: Leginon's tilt series with UCSF Tomo's predictive tracking (leginon.md §1–3).

One target at a time: a sequential session is many areas of one target each (the engine runs
an area; :mod:`tomopilot.acquisition.session` runs the areas one after the other). For its
target the strategy does, in Leginon's order:

1. (set-up, by the engine) stage to the area, eucentric height, target map, start tilt,
   autofocus at the focus position;
2. iterative recentring of the target by stage moves (image shift back near zero);
3. backlash release, then the drift manager, then a Preview registered to the target's map
   (what the release and the drift wait moved is taken out);
4. the first half (start tilt and the + branch): before every tilt the predictor
   (:class:`~tomopilot.geometry.tilt_predictor.TiltPredictor`, group 0) gives the image shift
   and the height change, which sets the focus (the defocus–tilt table read as the specimen's
   plane, the target turning as a point of it); a tracking View finds the target, the Focus
   area beside it is read there (``focus_every``, ours) and corrects the focus; after every
   Record, Leginon's tracking correlation with the previous Record of the group measures
   where the target really was;
5. back to the start tilt (with a backlash release), a Preview recentres the target and starts
   group 1's positions, drift manager again;
6. the second half (the − branch) the same way, with its own model.

Exposure can follow 1/cos θ with a total dose spread over the series (Leginon's default), and a
dose cap ends a target's branches before they pass it. The state (predictor, references,
accumulated dose) is journalled after every Record, so a killed run continues where it stopped.

Its parts: :mod:`.sequential_steps` (recentring, backlash, drift, tracking correlation),
:mod:`.sequential_release` (the start reference), :mod:`.sequential_focus` (table, plane,
readings), :mod:`.sequential_setup`, :mod:`.sequential_dose`, :mod:`.sequential_tracking`,
:mod:`.sequential_views`, :mod:`.sequential_halves`, :mod:`.sequential_state`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import (
    BranchEnded,
    ExposureRequest,
    Outcome,
    TargetInfo,
    Toolkit,
)
from tomopilot.acquisition.strategies.fused_align import pretilt_about_axis_deg
from tomopilot.acquisition.strategies.geometry_model import initial_depth_um
from tomopilot.acquisition.strategies.sequential_dose import (
    count_dose,
    exposure_schedule,
    over_dose_cap,
    record_dose_e_a2,
    tilt_key,
    within_dose_cap,
)
from tomopilot.acquisition.strategies.sequential_focus import (
    FOCUS_LAG_UM,
    PLANE_CHECK_DEG,
    FocusAreaTable,
    FocusPlane,
    FocusReadings,
    fit_focus_area_table,
    measure_defocus_tilt_table,
    plane_focus_change_um,
    read_area_plane,
)
from tomopilot.acquisition.strategies.sequential_halves import recentre_between_halves
from tomopilot.acquisition.strategies.sequential_release import (
    take_start_reference,
    view_before_release,
)
from tomopilot.acquisition.strategies.sequential_setup import (
    calibration_tilts,
    report_recentring,
    wait_and_report_drift,
)
from tomopilot.acquisition.strategies.sequential_state import (
    Reference,
    SequentialTarget,
    group_of,
    target_from_state,
    target_state,
)
from tomopilot.acquisition.strategies.sequential_steps import (
    DriftReading,
    backlash_release,
    recentre_by_stage,
)
from tomopilot.acquisition.strategies.sequential_views import (
    offset_in_record,
    start_tracks,
    track_with_view,
    tracks_on_views,
    view_dose_e_a2,
)
from tomopilot.geometry.tilt_model import TiltModel
from tomopilot.geometry.tilt_predictor import (
    PredictionHistory,
    PredictorSettings,
    SeriesRecord,
    TiltPredictor,
)
from tomopilot.instrument.types import Image, LowDoseArea

_log = logging.getLogger(__name__)


class SequentialStrategy:
    """Leginon's sequential tilt series (see module docstring)."""

    name = "sequential"

    def __init__(
        self,
        settings: AcquisitionSettings,
        options: SequentialSettings | None = None,
        history: PredictionHistory | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or SequentialSettings()
        self.history = history
        o = self.options
        self.predictor_settings = PredictorSettings(
            fit_points=o.fit_points,
            z0_error_um=o.z0_error_um,
            fixed_model=o.fixed_model,
            use_z0=o.use_z0,
            max_series=o.max_series,
            initial=(TiltModel(o.phi_deg, o.offset_um), TiltModel(o.phi_deg, o.offset_um)),
            xy_prediction=o.xy_prediction,
            jump_um=o.jump_um,
            early_height=o.early_height,
        )
        self.targets: dict[int, SequentialTarget] = {}
        self.start_tilt_deg = 0.0
        self.exposures_s: dict[float, float] = {}
        self.drift: list[DriftReading] = []
        # Leginon's defocus–tilt calibration: defocus change (µm) at a fixed focus by tilt; the
        # session hands it from area to area, the first area measures it.
        self.calibration: dict[float, float] | None = None
        # The image shift it was measured at: a target's distance across the axis from there
        # enters its focus change (target_defocus_change_um).
        self._table_fit: tuple[dict[float, float], FocusAreaTable] | None = None
        # This area's specimen plane seen from its Focus area (the table's area: from the
        # table; the others: from a few tilts, PLANE_CHECK_DEG).
        self.plane: FocusPlane | None = None
        self.focus0_um = 0.0
        # focus_every: the Focus-area readings' corrections, and the set-up's autofocus scale
        # the readings divide by.
        self.readings = FocusReadings()
        self.autofocus_scale = 1.0
        # How far the last area's target stood from its stage position (its recentring's
        # Previews; µm of stage): the session hands it on, and the next area's first move
        # adds it. The stage creeps over a session (drift, jumps, a dewar fill's burst): a
        # target 0.4 µm off its move is beyond what a Preview of a hole registers.
        self.stage_offset_um: tuple[float, float] = (0.0, 0.0)
        self._toolkit: Toolkit | None = None
        self._images: dict[str, Image] = {}

    # -- set-up -----------------------------------------------------------------------------
    def setup(
        self,
        targets: list[TargetInfo],
        start_tilt_deg: float,
        focus0_um: float,
        start_is_um: dict[int, tuple[float, float]],
        toolkit: Toolkit,
        references: dict[str, Image],
    ) -> None:
        s, o = self.settings, self.options
        self._toolkit = toolkit
        self._images = dict(references)
        self.start_tilt_deg = start_tilt_deg
        self.focus0_um = focus0_um
        self.autofocus_scale = toolkit.autofocus_scale
        self.exposures_s = exposure_schedule(s, o, toolkit)
        live = [t for t in targets if not t.skip]
        earlier = self.history.recent_series(o.max_series - 1) if self.history else []
        reach = max(abs(s.min_tilt_deg), abs(s.max_tilt_deg))
        if o.defocus_tilt_calibration and live and reach >= 20.0:
            # At the Focus area beside the first target, before it is recentred (the sweep
            # moves the stage through the whole range).
            if self.calibration is None:
                shift = toolkit.scope.optics.image_shift_um()
                self.calibration = measure_defocus_tilt_table(
                    toolkit, calibration_tilts(s, o.calibration_step_deg), start_tilt_deg
                )
                _log.info("defocus-tilt calibration: %s", self.calibration)
                self.plane = self._fitted_table().plane_at(shift)
            elif o.focus_every == 0:  # the session's table; this area's plane from a few tilts
                self.plane = read_area_plane(
                    toolkit, self._fitted_table(), start_tilt_deg, min(PLANE_CHECK_DEG, reach)
                )
            _log.info("the Focus area's plane: %s", self.plane)
        for info in targets:
            x, y = info.ss_um
            z0 = initial_depth_um(x, y, s.pretilt_deg, s.rotation_deg)
            focus = focus0_um + (info.defocus_um - s.max_defocus_um) - z0
            is_um = start_is_um[info.index]
            recentring_dose = 0.0  # of the recentring's images
            if not info.skip and len(live) == 1 and f"map:{info.index}" in references:
                done = recentre_by_stage(
                    toolkit,
                    references[f"map:{info.index}"],
                    is_um,
                    tolerance_um=o.recentre_tolerance_um,
                    iterations=o.recentre_iterations,
                    stage_offset_um=self.stage_offset_um,
                    view_map=toolkit.view_maps.get(info.index),
                )
                is_um = done.image_shift_um
                if not done.lost:
                    self.stage_offset_um = done.stage_offset_um
                recentring_dose = done.dose_e_a2
                report_recentring(toolkit, info.index, done)
            self.targets[info.index] = SequentialTarget(
                info=info,
                start_is_um=is_um,
                focus_start_um=focus,
                predictor=TiltPredictor(self.predictor_settings, earlier),
                skipped={"start", "+", "-"} if info.skip else set(),
            )
            setup_dose = recentring_dose + toolkit.setup_dose_e_a2.get(info.index, 0.0)  # + maps
            count_dose(self.targets[info.index], "start", setup_dose)
        before: dict[int, Image] = {}  # Leginon's backlash correction: Views before the release
        if o.backlash_release:
            for number, target in self.targets.items():
                if not target.info.skip and f"map:{number}" in references:
                    before[number] = view_before_release(toolkit, target.start_is_um)
                    count_dose(target, "start", before[number].dose_e_a2)
            backlash_release(toolkit, start_tilt_deg, o.backlash_steps, o.backlash_pause_s)
        if o.drift_check != "off":  # before the reference, so what drifted meanwhile is caught
            self._wait_for_drift()
        for number, target in self.targets.items():
            if not target.info.skip:
                preview = take_start_reference(
                    toolkit, target, references, before.get(number), start_tilt_deg
                )
                if o.track_with_view == "auto":  # to judge the start Record's texture by
                    self._images[f"pre0:{number}"] = preview

    def _wait_for_drift(self) -> None:
        assert self._toolkit is not None
        self.drift.append(wait_and_report_drift(self._toolkit, self.options))

    # -- the series -------------------------------------------------------------------------
    def alive(self, target: int, branch: str) -> bool:
        return branch not in self.targets[target].skipped

    def prepare(self, target: int, step: TiltStep) -> ExposureRequest:
        t = self.targets[target]
        o = self.options
        if step.branch == "-" and not t.second_half_ready:
            self._end_at_dose_cap(t, step, LowDoseArea.PREVIEW)
            self._between_halves(t, step)
        elif o.drift_check == "every" and step.branch != "start":
            self._wait_for_drift()
        if step.branch == "start":
            x, y, dz = t.start_is_um[0], t.start_is_um[1], 0.0
        else:
            prediction = t.predictor.predict(group_of(step.branch), step.tilt_deg)
            x, y, dz = prediction.x_um, prediction.y_um, prediction.dz_um
        assert self._toolkit is not None
        pause = o.tilt_pause_s - self.settings.delay_tilt_s  # the engine waited delayTilt
        if pause > 0 and step.branch != "start":
            self._toolkit.scope.clock.sleep(pause)
        self._end_at_dose_cap(t, step)
        if self.calibration is not None and self.plane is not None and step.branch != "start":
            # The table's goniometer (axis offset, run-out) with the target's own height.
            change = self._table_change(t, step)
        else:  # A point whose height rises by Δz is Δz further from focus
            change = dz
        focus = t.focus_start_um - change
        key = f"{t.info.index}:{group_of(step.branch)}"
        scheduled = step.branch == "start" or (step.branch_step - 1) % max(1, o.focus_every) == 0
        read = o.focus_every > 0 and scheduled
        n = 2 if step.branch == "start" else 1  # the start's reading sets the series' level
        scope = self._toolkit.scope
        # The Focus area read at the predicted image shift, before the tracking View (nothing
        # between the View and its Record: the Record is not delayed by the reading's ~4.5 s
        # of drift) ...
        reading = self.readings.read_um(scope, key, (x, y), focus, n) if read else None
        predicted = (x, y)
        if tracks_on_views(o, t, step.branch):
            x, y = track_with_view(
                self._toolkit, self._images, t, step, (x, y), o.relocate_fraction
            )
        lag_um = math.hypot(x - predicted[0], y - predicted[1])
        slope = abs(math.tan(math.radians(step.tilt_deg + pretilt_about_axis_deg(self.settings))))
        if read and lag_um * slope > FOCUS_LAG_UM:
            # ... unless the View found the target where the tilted plane lies at another
            # height: read again where it is, before the Record (a run-away branch lags
            # microns: read at the prediction, autoloader 0.555 µm RMS; here 0.05). The
            # View's dewar protection spans the reading (VIEW_TO_RECORD_S).
            reading = self.readings.read_um(scope, key, (x, y), focus, n)
        focus = self.readings.focus_um(
            key,
            reading,
            start=step.branch == "start",
            focus_um=focus,
            target_defocus_um=t.info.defocus_um,
            autofocus_scale=self.autofocus_scale,
        )
        return ExposureRequest(
            image_shift_um=(x, y),
            focus_um=focus,
            target_defocus_um=t.info.defocus_um,
            exposure_s=self.exposures_s.get(tilt_key(step.tilt_deg)),
            predicted_dz_um=dz,
        )

    def _end_at_dose_cap(
        self, t: SequentialTarget, step: TiltStep, before: LowDoseArea | None = None
    ) -> None:
        """:class:`BranchEnded` if the Record at ``step`` with its tracking View (and an image in
        ``before`` first, the Preview between the halves) would pass the branch's dose cap."""
        assert self._toolkit is not None
        record = record_dose_e_a2(self.exposures_s, step.tilt_deg, self._toolkit)
        if self.options.dose_cap_e_a2 is None or record is None:
            return
        view = view_dose_e_a2(self.options, self._toolkit, t, step.branch)
        first = 0.0 if before is None else self._toolkit.scope.optics.preset(before).dose_e_a2
        if not within_dose_cap(t, step.branch, self.options.dose_cap_e_a2, first + view + record):
            raise BranchEnded("dose cap")

    def _fitted_table(self) -> FocusAreaTable:
        assert self.calibration is not None
        if self._table_fit is None or self._table_fit[0] is not self.calibration:
            fit = fit_focus_area_table(self.calibration, pretilt_about_axis_deg(self.settings))
            self._table_fit = (self.calibration, fit)
        return self._table_fit[1]

    def _table_change(self, t: SequentialTarget, step: TiltStep) -> float:
        """The target's focus change from the session's table and this area's plane."""
        assert self.plane is not None
        _, rx, ry = t.predictor.current.points[0][0]  # the target's start position
        own_depth = t.info.defocus_um - self.settings.max_defocus_um
        return plane_focus_change_um(
            self._fitted_table(),
            self.plane,
            start_is_um=(rx, ry),
            axis_deg=t.predictor.models[0].phi_deg,
            depth_um=own_depth - (t.focus_start_um - self.focus0_um),  # the target's z0
            tilt_deg=step.tilt_deg,
            start_deg=self.start_tilt_deg,
        )

    def _between_halves(self, t: SequentialTarget, step: TiltStep) -> None:
        """Back to the start tilt, recentre on a Preview (group 1 starts from there), the
        drift wait, then the − branch's approach."""
        assert self._toolkit is not None
        scope = self._toolkit.scope
        # A − half tilted downwards (HalvesInTheirDirection): Leginon's release from above first
        recentre_between_halves(
            self._toolkit,
            self._images,
            t,
            self.options,
            self.start_tilt_deg,
            from_above=step.approach_deg is None,
        )
        if self.options.drift_check != "off":
            self._wait_for_drift()
        if step.approach_deg is not None:
            scope.stage.tilt_to(step.approach_deg)
        scope.stage.tilt_to(step.tilt_deg)

    def observe(
        self, target: int, step: TiltStep, image: Image, request: ExposureRequest
    ) -> Outcome:
        t = self.targets[target]
        s = self.settings
        count_dose(t, step.branch, image.dose_e_a2)
        number = t.info.index
        group = group_of(step.branch)
        key = f"img:{number}:{step.branch}"
        ix, iy = request.image_shift_um
        offset: tuple[float, float] | None = (0.0, 0.0)  # the start image defines the target
        preview = self._images.pop(f"pre0:{number}", None)
        if (
            step.branch == "start"
            and preview is not None
            and self._toolkit is not None
            and not start_tracks(self._toolkit, preview, image, step.tilt_deg)
        ):
            t.view_branches |= {"+", "-"}
            _log.info(
                "target %d: its start Record does not correlate with the Preview before it "
                "(no texture fixed to the specimen): both branches track on Views",
                number,
            )
        if step.branch != "start":
            assert self._toolkit is not None
            offset = offset_in_record(
                self._toolkit,
                self._images,
                t,
                step,
                image,
                (ix, iy),
                self.options,
                self.start_tilt_deg,
            )
        t.view_position_um = None
        if offset is not None:
            t.predictor.add_position(group, step.tilt_deg, ix + offset[0], iy + offset[1])
            self._images[key] = image
            t.references[group] = Reference(key, offset, step.tilt_deg)
        else:  # nothing correlates: no position, and the next image is compared with the last
            # one that did (Leginon takes whatever peak there is, and a false one runs away)
            offset = (0.0, 0.0)
        if self.options.pause_after_record_s > 0 and self._toolkit is not None:
            self._toolkit.scope.clock.sleep(self.options.pause_after_record_s)
        if s.min_counts_per_s > 0 and image.mean_counts_per_s < s.min_counts_per_s:
            self.abort(target, step.branch, "too dark")
            return Outcome(alignment_um=offset, aborted="too dark")
        if over_dose_cap(
            t,
            step,
            self.options.dose_cap_e_a2,
            s.step_deg,
            self.exposures_s,
            self._toolkit,
            view_dose_e_a2(self.options, self._toolkit, t, step.branch),
        ):
            self.abort(target, step.branch, "dose cap")
            return Outcome(alignment_um=offset, aborted="dose cap")
        return Outcome(alignment_um=offset)

    def abort(self, target: int, branch: str, reason: str) -> None:
        self.targets[target].skipped |= {"+", "-"} if branch == "start" else {branch}

    def recover(self, step: TiltStep, shift_um: tuple[float, float]) -> None:
        """After a resume: target 1 moved by ``shift_um`` since its last Record at ``step``."""
        t = self.targets.get(1)
        if t is None:
            return
        t.predictor.shift_last(group_of(step.branch), *shift_um)

    def correct_heights(self, corrections_um: dict[int, float]) -> None:
        for number, dz in corrections_um.items():
            if number in self.targets:
                self.targets[number].focus_start_um -= dz

    def finished_series(self) -> list[SeriesRecord]:
        """Every live target's positions and models, for the session's history."""
        return [t.predictor.finished() for t in self.targets.values() if not t.info.skip]

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "start_tilt_deg": self.start_tilt_deg,
            "exposures_s": [[k, v] for k, v in self.exposures_s.items()],
            "calibration": None
            if self.calibration is None
            else [[k, v] for k, v in self.calibration.items()],
            "plane": None if self.plane is None else self.plane.state(),
            "autofocus_scale": self.autofocus_scale,
            **self.readings.state(),
            "stage_offset_um": list(self.stage_offset_um),
            "focus0_um": self.focus0_um,
            "targets": {str(n): target_state(t) for n, t in self.targets.items()},
        }

    def restore(
        self, state: dict[str, Any], references: dict[str, Image], toolkit: Toolkit | None = None
    ) -> None:
        if toolkit is not None:
            self._toolkit = toolkit
        self._images = dict(references)
        self.start_tilt_deg = float(state["start_tilt_deg"])
        self.exposures_s = {float(k): float(v) for k, v in state["exposures_s"]}
        table = state.get("calibration")
        self.calibration = None if table is None else {float(k): float(v) for k, v in table}
        self.plane = FocusPlane.from_state(state.get("plane"))
        self.focus0_um = float(state.get("focus0_um", 0.0))
        self.autofocus_scale = float(state.get("autofocus_scale", 1.0))
        self.readings = FocusReadings.from_state(state)
        offset = state.get("stage_offset_um") or (0.0, 0.0)
        self.stage_offset_um = (float(offset[0]), float(offset[1]))
        self.targets = {
            int(key): target_from_state(data, self.predictor_settings)
            for key, data in state["targets"].items()
        }

    def held_images(self) -> dict[str, Image]:
        """The tracking Views the next correlations compare with (no stack holds them)."""
        keys = {r.key for t in self.targets.values() for r in t.view_references.values()}
        return {k: self._images[k] for k in sorted(keys) if k in self._images}

    def reference_keys(self) -> set[str]:
        keys = set()
        for number, t in self.targets.items():
            keys.add(f"img:{number}:start")
            keys |= {r.key for r in t.references.values() if r.key.startswith("img:")}
            keys |= {r.key for r in t.view_references.values()}
        return keys
