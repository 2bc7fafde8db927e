"""Measurements the twin performs with the beam: autofocus and eucentricity.

They behave like the instrument routines they stand for, with realistic error and cost: the
autofocus reads the defocus in the Focus area from a beam-tilt pair (two Focus exposures of
dose booked in the ground truth) with a small scale error and noise; the eucentricity routines
find the specimen depth under the beam to within the profile's rough or fine residual and
move stage z by it. The error models are the twin's; callers see only the readings.
"""

from __future__ import annotations

import numpy as np

from tomopilot.instrument.twin.camera import TwinCamera
from tomopilot.instrument.twin.core import STREAM_MEASURE, TwinCore, logged
from tomopilot.instrument.twin.ground_truth import ExposureTruth
from tomopilot.instrument.twin.optics import TwinOptics
from tomopilot.instrument.twin.stage import TwinStage
from tomopilot.instrument.twin.surface import trace_rays
from tomopilot.instrument.types import LowDoseArea


class TwinMeasurements:
    """Autofocus and eucentricity (implements :class:`~tomopilot.instrument.Measurements`)."""

    _part = "measurements"

    def __init__(
        self, core: TwinCore, stage: TwinStage, optics: TwinOptics, camera: TwinCamera
    ) -> None:
        self._core = core
        self._stage = stage
        self._optics = optics
        self._camera = camera
        self._n = 0

    def _rng(self) -> np.random.Generator:
        self._n += 1
        return self._core.rng(STREAM_MEASURE, self._n)

    def _depth_at(self, area: LowDoseArea) -> float:
        """True depth z (along the beam) of the specimen at the centre of ``area``'s field."""
        core = self._core
        field = self._camera.field(area)
        pose = core.stage.pose(core.clock.now_s())
        hits = trace_rays(
            core.specimen, pose, np.array([field.centre_um[0]]), np.array([field.centre_um[1]])
        )
        return float(hits.lab_z_um[0])

    def _book(self, area: LowDoseArea, n: int) -> None:
        """Charge the time and dose of ``n`` unrendered exposures in ``area``."""
        core = self._core
        preset = self._optics.preset(area)
        field = self._camera.field(area)
        cam = core.config.camera
        for _ in range(n):  # single shots: no wait for frames being written (early return)
            core.spend("measurement_overhead", cam.pre_exposure_s)
            core.wait_until("image_shift_settle", core.settled_s)
            now = core.clock.now_s()
            pose = core.stage.pose(now + preset.exposure_s / 2)
            index = core.n_exposures
            core.n_exposures += 1
            core.truth.record(
                ExposureTruth(
                    exposure_id=index,
                    area=area.value,
                    time_s=now,
                    duration_s=preset.exposure_s,
                    dose_e_a2=preset.dose_e_a2 * core.feg_factor(),
                    beam_centre_lab_um=field.centre_um,
                    beam_radius_um=preset.beam_diameter_um / 2,
                    field_shape=field.shape,
                    pixel_size_a=field.pixel_size_a,
                    rotation_deg=field.rotation_deg,
                    pose=pose,
                    stage_reported=tuple(float(v) for v in core.stage.commanded),  # type: ignore[arg-type]
                    image_shift_true_um=self._optics.true_image_shift_um(),
                    focus_um=self._optics.focus_um() + preset.defocus_offset_um,
                    defocus_um=self._optics.focus_um()
                    + preset.defocus_offset_um
                    + self._depth_at(area),
                    defocus_gradient_um_per_px=(0.0, 0.0),
                    specimen_centre_um=(float("nan"),) * 3,
                    transmission_centre=float("nan"),
                    path_centre_nm=float("nan"),
                    rendered=False,
                )
            )
            core.spend("exposure", preset.exposure_s)
            core.spend("readout", cam.readout_s)

    @logged
    def measure_defocus_um(self) -> float:
        core = self._core
        optics_cfg = core.config.optics
        true_defocus = self._optics.focus_um() + self._depth_at(LowDoseArea.FOCUS)
        self._book(LowDoseArea.FOCUS, 2)
        core.spend("autofocus", core.config.housekeeping.autofocus_overhead_s)
        noise = float(self._rng().normal(0.0, optics_cfg.autofocus_sigma_um))
        return true_defocus * (1.0 + optics_cfg.autofocus_scale_error) + noise

    @logged
    def autofocus(self, target_defocus_um: float) -> float:
        measured = self.measure_defocus_um()
        self._optics.set_focus_um(self._optics.focus_um() + (target_defocus_um - measured))
        return measured

    @logged
    def eucentricity(self, *, fine: bool = False) -> float:
        core = self._core
        cfg = core.config.stage
        sigma = cfg.eucentric_fine_sigma_um if fine else cfg.eucentric_rough_sigma_um
        depth = self._depth_at(LowDoseArea.RECORD)
        area = LowDoseArea.TRIAL if fine else LowDoseArea.VIEW
        self._book(area, 4 if fine else 2)
        core.spend(
            "eucentricity",
            core.config.housekeeping.eucentric_fine_s
            if fine
            else core.config.housekeeping.eucentric_rough_s,
        )
        dz = depth + float(self._rng().normal(0.0, sigma))  # raising the stage lifts it
        self._stage.move_by(dz_um=dz)
        return dz
