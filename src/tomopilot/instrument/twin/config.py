"""Configuration of the digital twin: stage profile, optics, camera, presets, specimen, faults.

Every part has realistic defaults (``reference/twin_magnitudes.md``), so ``TwinConfig()`` is a
300 kV Krios-like microscope with an autoloader stage, a counting camera and a lamella. A YAML
file overrides any subset; the stage ``profile`` picks a whole set of defaults first
(``autoloader`` or ``side-entry``) and the other stage keys override those.

Examples
--------
>>> config = TwinConfig.model_validate({"stage": {"profile": "side-entry"}})
>>> config.stage.tilt_limit_deg, config.stage.branch_start_jump_um
(60.0, 1.0)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from tomopilot.core.config import ConfigModel
from tomopilot.instrument.twin.profiles import STAGE_PROFILES
from tomopilot.instrument.twin.specimen.config import LamellaConfig, SpecimenConfig
from tomopilot.instrument.types import AreaPreset, LowDoseArea


class StageProfile(StrEnum):
    """Named sets of stage magnitudes."""

    AUTOLOADER = "autoloader"
    SIDE_ENTRY = "side-entry"


class StageConfig(ConfigModel):
    """Goniometer mechanics; defaults come from the chosen ``profile`` (see profiles.py)."""

    profile: StageProfile = StageProfile.AUTOLOADER
    tilt_limit_deg: float = Field(gt=0, le=90)
    xy_limit_um: float = Field(gt=0)
    z_limit_um: float = Field(gt=0)
    tilt_speed_deg_s: float = Field(gt=0)
    tilt_settle_s: float = Field(ge=0)
    xy_speed_um_s: float = Field(gt=0)
    xy_settle_s: float = Field(ge=0)
    tilt_axis_offset_um: float
    tilt_axis_branch_delta_um: float
    tilt_axis_calibration_residual_um: float = Field(ge=0)
    initial_height_sigma_um: float = Field(ge=0)
    eucentric_rough_sigma_um: float = Field(ge=0)
    eucentric_fine_sigma_um: float = Field(ge=0)
    runout_x_um: float = Field(ge=0)
    runout_y_um: float = Field(ge=0)
    runout_z_um: float = Field(ge=0)
    step_error_sigma_um: float = Field(ge=0)
    runaway_probability: float = Field(ge=0, le=1)
    runaway_rate_um_per_step: tuple[float, float]
    runaway_onset_deg: float = Field(ge=0, le=90)
    branch_start_jump_um: float = Field(ge=0)
    tilt_reversal_play_um: float = Field(ge=0)
    tilt_backlash_deg: float = Field(ge=0)
    xy_backlash_um: float = Field(ge=0)
    xy_periodic_error_um: float = Field(ge=0)
    xy_error_period_um: tuple[float, float]
    drift_nm_s: float = Field(ge=0)
    drift_tau_s: float = Field(gt=0)
    drift_floor_nm_s: float = Field(ge=0)
    jump_probability: float = Field(ge=0, le=1)
    jump_um: tuple[float, float]

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            name = str(data.get("profile", StageProfile.AUTOLOADER.value))
            if name not in STAGE_PROFILES:
                return data  # the enum check names the field
            return {**STAGE_PROFILES[name], **data}
        return data


class OpticsConfig(ConfigModel):
    """Electron optics, energy filter and image-shift calibration."""

    voltage_kv: float = Field(default=300.0, gt=0, le=1000)
    cs_mm: float = Field(default=2.7, ge=0)
    cc_mm: float = Field(default=2.7, ge=0)
    amplitude_contrast: float = Field(default=0.1, ge=0, lt=1)
    energy_spread_ev: float = Field(default=0.8, ge=0)
    illumination_semiangle_mrad: float = Field(default=0.01, ge=0)
    astigmatism_um: float = Field(default=0.025, ge=0, description="residual astigmatism")
    astigmatism_angle_deg: float = 30.0
    image_shift_limit_um: float = Field(default=15.0, gt=0)
    is_scale_error: float = Field(default=0.01, ge=-0.2, le=0.2)
    is_rotation_error_deg: float = Field(default=0.3, ge=-10, le=10)
    is_settle_s: float = Field(
        default=0.5,
        ge=0,
        description=(
            "the IS delay table's longest delay (Thermo's newer table, ≥ 0.5 µm); the table is "
            "scaled by is_settle_s / 0.5 (SerialEM's ISdelayScaleFactor)"
        ),
    )
    is_settle_startup_s: float = Field(
        default=0.25,
        ge=0,
        description=(
            "camera start-up taken as built into the IS delay table: the beam comes on no "
            "earlier than this after the table's delay (SerialEM's StartupForISDelays, 0.25 s "
            "with Thermo's newer table)"
        ),
    )
    is_delay_per_mag_doubling_s: float = Field(
        default=0.1,
        ge=0,
        description=(
            "extra settling per halving of the Record pixel below 1 nm (SerialEM's "
            "DelayPerMagDoubling, capped at 0.1 s on Thermo scopes with the newer table)"
        ),
    )
    is_settle_tau_s: float = Field(
        default=0.36,
        gt=0,
        description=(
            "time constant of the image's residual motion after an image shift: the IS table's "
            "0.1 µm 0 s / 0.3 µm 0.4 s gives 0.4 / ln 3, SerialEM's older DelayPerMagDoubling "
            "(0.25 s per halving) 0.25 / ln 2; scaled by is_settle_s / 0.5 "
            "(image_shift_settling.py)"
        ),
    )
    is_settle_lag_fraction: float = Field(
        default=0.005,
        ge=0,
        le=0.1,
        description=(
            "est.: the image lags an image shift by this fraction of the move at the shift "
            "(0.1 µm, which the IS table lets go unwaited, lags 0.5 nm: half a 1 nm pixel)"
        ),
    )
    tilt_axis_angle_deg: float = Field(
        default=85.3, description="tilt axis on the camera, IMOD/RELION convention (from Y, CCW)"
    )
    ice_mfp_nm: float = Field(default=350.0, gt=0, description="inelastic mean free path")
    carbon_mfp_nm: float = Field(default=180.0, gt=0)
    slit_width_ev: float = Field(default=20.0, ge=0, description="0 = no energy filter")
    zlp_fwhm_ev: float = Field(default=1.0, gt=0)
    zlp_drift_ev_per_h: float = Field(default=2.0, ge=0)
    autofocus_sigma_um: float = Field(default=0.04, ge=0)
    autofocus_scale_error: float = Field(default=0.02, ge=-0.2, le=0.2)


class CameraConfig(ConfigModel):
    """A counting direct detector (Falcon-4/K3-like)."""

    name: str = "twin counting camera"
    size_px: tuple[int, int] = (4096, 4096)
    index: int = Field(default=0, ge=0, description="SerialEM's camera number (CameraIndex)")
    operating_mode: int = Field(
        default=1, ge=0, le=2, description="0 linear, 1 counting, 2 super-resolution"
    )
    correlated_double_sampling: bool = Field(default=False, description="UsingCDS (K3)")
    counts_per_electron: float = Field(default=1.0, gt=0)
    gain_nonuniformity: float = Field(default=0.005, ge=0, le=0.5)
    hot_pixel_fraction: float = Field(default=2e-6, ge=0, le=0.01)
    dead_columns: int = Field(default=1, ge=0)
    frames_gain_normalized: bool = Field(
        default=False, description="save frames divided by the gain (else raw, as counted)"
    )
    render: bool = Field(
        default=True,
        description=(
            "form images; False gives flat images at the true mean counts, for runs that only "
            "need the ground truth and the timing (a strategy that never looks at pixels)"
        ),
    )
    pre_exposure_s: float = Field(
        default=0.4,
        ge=0,
        description=(
            "from the program's request to the beam reaching the detector: the program's own "
            "call (~0.1 s) and the camera's start-up (~0.3 s); K3T's SerialEM and DM logs"
        ),
    )
    readout_s: float = Field(
        default=0.4,
        ge=0,
        description=(
            "from the end of the exposure to the image in the program, frame writing aside "
            "(last frame ~0.2 s late, hand-over and transfer ~0.2 s; K3T); the frames add "
            "their own writing time"
        ),
    )
    sum_return_s: float = Field(
        default=0.3,
        ge=0,
        description=(
            "with early return on: time after the exposure until the summed image is handed "
            "back; the rest of the read-out and the frame writing go on in the background"
        ),
    )


def _default_presets() -> dict[str, dict[str, Any]]:
    # Record: Falcon-4-like 2.0 Å/px, 3 e/Å² per tilt (RELTUT, MED); View at 6500×, 14 Å/px
    # and −50 µm (PACE, XU), a 5.7 µm field.
    record = {
        "magnification": 53000,
        "unbinned_pixel_size_a": 2.0,
        "binning": 1,
        "exposure_s": 1.0,
        "dose_rate_e_px_s": 12.0,
        "frame_time_s": 0.1,
        "beam_diameter_um": 1.5,
    }
    return {
        "record": record,
        "preview": {**record, "binning": 2, "exposure_s": 0.5},
        "trial": {**record, "binning": 4, "exposure_s": 0.3, "offset_along_axis_um": 3.0},
        "focus": {**record, "binning": 4, "exposure_s": 0.3, "offset_along_axis_um": 3.0},
        "view": {
            "magnification": 6500,
            "unbinned_pixel_size_a": 14.0,
            "binning": 2,
            "defocus_offset_um": -50.0,
            "exposure_s": 1.0,
            "dose_rate_e_px_s": 6.0,
            "beam_diameter_um": 12.0,
        },
        "search": {
            "magnification": 2250,
            "unbinned_pixel_size_a": 48.0,
            "binning": 4,
            "defocus_offset_um": -100.0,
            "exposure_s": 1.0,
            "dose_rate_e_px_s": 6.0,
            "beam_diameter_um": 40.0,
        },
    }


class TwinPresets(ConfigModel):
    """The six low-dose areas; a partial mapping in YAML overrides only the keys given."""

    search: AreaPreset
    view: AreaPreset
    focus: AreaPreset
    trial: AreaPreset
    record: AreaPreset
    preview: AreaPreset

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        defaults = _default_presets()
        if data is None:
            return defaults
        if isinstance(data, dict):
            merged: dict[str, Any] = {}
            for name, base in defaults.items():
                given = data.get(name)
                if isinstance(given, AreaPreset):
                    merged[name] = given
                elif isinstance(given, dict):
                    merged[name] = {**base, **given}
                else:
                    merged[name] = base if given is None else given
            unknown = set(data) - set(defaults)
            for name in unknown:
                merged[name] = data[name]  # refused as an unknown key with its name
            return merged
        return data

    def get(self, area: LowDoseArea) -> AreaPreset:
        """The preset of a low-dose area."""
        preset: AreaPreset = getattr(self, area.value.lower())
        return preset


class MovieConfig(ConfigModel):
    """Beam-induced motion of movie frames (RELTUT: 2–9 Å per tilt, median 4.4 Å)."""

    global_motion_a: float = Field(default=4.0, ge=0, description="median total motion at 0°")
    motion_spread: float = Field(default=0.3, ge=0, description="log-normal spread of the total")
    early_time_constant_s: float = Field(default=0.25, gt=0)
    local_motion_a: float = Field(default=1.5, ge=0, description="local residual after global")
    local_grid: tuple[int, int] = (4, 4)


class HousekeepingConfig(ConfigModel):
    """Slow duties and their time costs (twin_magnitudes §5)."""

    dewar_refill_interval_s: float = Field(default=4 * 3600.0, gt=0)
    dewar_refill_duration_s: float = Field(default=15 * 60.0, ge=0)
    dewar_first_fill_s: float | None = Field(
        default=None, description="time of the first fill; None = a random phase"
    )
    feg_flash_interval_s: float = Field(default=6 * 3600.0, gt=0)
    feg_flash_duration_s: float = Field(default=60.0, ge=0)
    feg_decay_per_h: float = Field(default=0.03, ge=0, le=1)
    zlp_refine_duration_s: float = Field(default=15.0, ge=0)
    autofocus_overhead_s: float = Field(default=2.0, ge=0)
    eucentric_rough_s: float = Field(default=30.0, ge=0)
    eucentric_fine_s: float = Field(default=90.0, ge=0)


FaultKind = Literal[
    "dark_image", "camera_timeout", "stage_error", "stage_jump", "dewar_refill", "no_beam"
]


class FaultSpec(ConfigModel):
    """A fault to inject: fires at an exposure index, a move index or a time, ``count`` times."""

    kind: FaultKind
    at_exposure: int | None = Field(default=None, ge=0)
    at_move: int | None = Field(default=None, ge=0)
    at_time_s: float | None = Field(default=None, ge=0)
    count: int = Field(default=1, ge=1)
    magnitude_um: float = Field(default=0.3, ge=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> FaultSpec:
        triggers = [self.at_exposure, self.at_move, self.at_time_s]
        if sum(t is not None for t in triggers) != 1:
            raise ValueError("give exactly one of at_exposure, at_move, at_time_s")
        return self


class TwinConfig(ConfigModel):
    """Everything the twin needs; all of it seeded and deterministic."""

    seed: int = Field(default=0, ge=0)
    name: str = "tomopilot twin"
    stage: StageConfig = Field(default_factory=lambda: StageConfig.model_validate({}))
    optics: OpticsConfig = OpticsConfig()
    camera: CameraConfig = CameraConfig()
    presets: TwinPresets = Field(default_factory=lambda: TwinPresets.model_validate({}))
    specimen: SpecimenConfig = Field(default_factory=LamellaConfig)
    movie: MovieConfig = MovieConfig()
    housekeeping: HousekeepingConfig = HousekeepingConfig()
    faults: list[FaultSpec] = Field(default_factory=list)
    center_image_shift_on_tilt_axis: bool = True
    microscope_s_per_wall_s: float | None = Field(default=None, gt=0)
    """Play the session at this speed (1.0 = real time); None runs as fast as the computer can.

    Only the wall clock changes: every image, time and ground-truth value is the same."""

    @model_validator(mode="after")
    def _check_presets_fit_camera(self) -> TwinConfig:
        width, height = self.camera.size_px
        for area in LowDoseArea:
            preset = self.presets.get(area)
            if preset.camera_area_px is not None:
                w, h = preset.camera_area_px
                if w > width or h > height:
                    raise ValueError(
                        f"presets.{area.value.lower()}.camera_area_px {w}×{h} is larger than "
                        f"the {width}×{height} camera"
                    )
        return self
