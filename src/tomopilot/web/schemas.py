"""What the JSON API returns (pydantic models; they also document the OpenAPI page)."""

from __future__ import annotations

from pydantic import BaseModel


class ExposureOut(BaseModel):
    """One Record of a tilt series (µm, e⁻/Å², microscope seconds)."""

    ordinal: int
    section: int
    tilt_deg: float
    branch: str
    image_shift_x_um: float | None
    image_shift_y_um: float | None
    stage_x_um: float | None
    stage_y_um: float | None
    stage_z_um: float | None
    target_defocus_um: float | None
    predicted_defocus_um: float | None
    measured_defocus_um: float | None
    predicted_x_um: float | None
    predicted_y_um: float | None
    predicted_z_um: float | None
    measured_x_um: float | None
    measured_y_um: float | None
    tracking_error_x_um: float | None
    tracking_error_y_um: float | None
    dose_e_a2: float | None
    prior_dose_e_a2: float | None
    mean_counts: float | None
    exposure_s: float | None
    time_s: float | None
    datetime: str
    true_error_x_nm: float | None = None
    true_error_y_nm: float | None = None
    true_defocus_um: float | None = None


class TiltSeriesOut(BaseModel):
    """A tilt series and its progress."""

    id: int
    session_id: int
    name: str
    number: int
    status: str
    n_exposures: int
    n_planned: int
    pixel_size_a: float | None
    tracking_rms_nm: float | None
    true_tracking_rms_nm: float | None
    last_tilt_deg: float | None


class TiltSeriesDetail(TiltSeriesOut):
    """A tilt series with every exposure."""

    exposures: list[ExposureOut]


class TargetOut(BaseModel):
    """A target of an area."""

    number: int
    ss_x_um: float
    ss_y_um: float
    status: str
    detail: str
    tilt_series_id: int | None


class AreaOut(BaseModel):
    """An area (lamella or grid square) and its targets."""

    id: int
    session_id: int
    name: str
    pretilt_deg: float | None
    rotation_deg: float | None
    beam_diameter_um: float | None
    current_tilt_deg: float | None
    targets: list[TargetOut]


class HousekeepingOut(BaseModel):
    """A housekeeping duty."""

    time_s: float
    task: str
    duration_s: float
    detail: str


class EventOut(BaseModel):
    """A recorded event, for the timeline."""

    kind: str
    time_s: float
    summary: str


class SessionOut(BaseModel):
    """A session in the list."""

    id: int
    name: str
    run_dir: str
    source: str
    strategy: str
    status: str
    n_tilt_series: int
    n_exposures: int
    n_planned: int
    microscope_minutes: float | None
    is_twin: bool


class SessionDetail(SessionOut):
    """A session's progress, time and dose."""

    start_s: float | None
    elapsed_s: float | None
    eta_s: float | None
    dose_rate_e_a2_s: float | None
    n_lost: int
    areas: list[int]
    tilt_series: list[TiltSeriesOut]
    housekeeping: list[HousekeepingOut]
    timeline: list[EventOut]
    revision: int
    """Grows with every recorded event (a cheap 'has anything changed' for pollers)."""
