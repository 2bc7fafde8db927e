"""Default magnitudes of the twin's stage profiles, with where each number comes from.

Sources are the keys of ``reference/twin_magnitudes.md`` (SEM-P: SerialEM properties help;
SEM-H: SerialEM help pages; PACE: PACEtomo README/paper; PACE23: a real PACEtomo mdoc analysed
here; MED: Medalia-lab protocols; LEG: Leginon defaults; CHENG18: beam-image-shift targeting
paper). "est." marks our own estimate where no source gave a number.
"""

from __future__ import annotations

from typing import Any

AUTOLOADER: dict[str, Any] = {
    "tilt_limit_deg": 69.9,
    "xy_limit_um": 990.0,
    "z_limit_um": 300.0,
    "tilt_speed_deg_s": 30.0,
    "tilt_settle_s": 0.3,
    "xy_speed_um_s": 50.0,
    "xy_settle_s": 2.8,
    "tilt_axis_offset_um": 1.0,
    "tilt_axis_branch_delta_um": 0.0,
    "tilt_axis_calibration_residual_um": 0.15,
    "initial_height_sigma_um": 4.0,
    "eucentric_rough_sigma_um": 0.5,
    "eucentric_fine_sigma_um": 0.1,
    "runout_x_um": 0.15,
    "runout_y_um": 0.3,
    "runout_z_um": 0.3,
    "step_error_sigma_um": 0.03,
    "runaway_probability": 0.1,
    "runaway_rate_um_per_step": (0.5, 2.5),
    "runaway_onset_deg": 40.0,
    "branch_start_jump_um": 0.2,
    "tilt_reversal_play_um": 0.05,
    "tilt_backlash_deg": 0.1,
    "xy_backlash_um": 0.1,
    "xy_periodic_error_um": 1.0,
    "xy_error_period_um": (62.0, 41.0),
    "drift_nm_s": 0.5,
    "drift_tau_s": 45.0,
    "drift_floor_nm_s": 0.1,
    "jump_probability": 0.01,
    "jump_um": (0.1, 0.5),
}

SIDE_ENTRY: dict[str, Any] = {
    **AUTOLOADER,
    "tilt_limit_deg": 60.0,
    "tilt_settle_s": 1.0,
    "xy_settle_s": 2.8,
    "tilt_axis_offset_um": 2.0,
    "tilt_axis_branch_delta_um": 0.5,
    "tilt_axis_calibration_residual_um": 0.3,
    "initial_height_sigma_um": 6.0,
    "eucentric_rough_sigma_um": 1.0,
    "eucentric_fine_sigma_um": 0.2,
    "runout_x_um": 0.5,
    "runout_y_um": 1.0,
    "runout_z_um": 1.0,
    "step_error_sigma_um": 0.1,
    "runaway_probability": 0.2,
    "branch_start_jump_um": 1.0,
    "tilt_reversal_play_um": 0.2,
    "tilt_backlash_deg": 0.3,
    "xy_backlash_um": 0.2,
    "xy_periodic_error_um": 1.5,
    "drift_nm_s": 1.5,
    "drift_tau_s": 90.0,
    "drift_floor_nm_s": 0.3,
}

STAGE_PROFILES: dict[str, dict[str, Any]] = {
    "autoloader": AUTOLOADER,
    "side-entry": SIDE_ENTRY,
}

# Where each default comes from (shown by `tomopilot twin describe`).
SOURCES: dict[str, dict[str, str]] = {
    "autoloader": {
        "tilt_limit_deg": "SEM-P MaximumTiltAngle on a Krios",
        "xy_limit_um": "SEM-P default stage XY range",
        "z_limit_um": "est.",
        "tilt_speed_deg_s": "LEG: TFS alpha top speed 29.78 °/s",
        "tilt_settle_s": "PACE delayTilt 0.3 s",
        "xy_speed_um_s": "est.: ~1–3 s for ≤ 100 µm",
        "xy_settle_s": "SEM-P: 2.0 s + 0.8 s built in after an XY move",
        "tilt_axis_offset_um": "twin_magnitudes §7 (SEM-H, PACE)",
        "tilt_axis_branch_delta_um": "autoloader branches agree",
        "tilt_axis_calibration_residual_um": "§7: calibrated residual σ 0.15 µm",
        "initial_height_sigma_um": "est.: SEM-H rough routine starts from ≤ 5–10 µm off",
        "eucentric_rough_sigma_um": "SEM-H: rough eucentricity lands within ~0.5 µm",
        "eucentric_fine_sigma_um": "est. from PACE measureOffset (0.1–0.2 µm)",
        "runout_x_um": "est.: tenths of µm on an autoloader (EMBL15: corrections ≤ 0.45×0.7 µm)",
        "runout_y_um": "est., same basis",
        "runout_z_um": "est., same basis",
        "step_error_sigma_um": (
            "PACE23: − branch median 0.05 µm per 3° step unpredicted by PACEtomo; "
            "the random part is smaller"
        ),
        "runaway_probability": "§7: 10 % of branches (PACE23)",
        "runaway_rate_um_per_step": "PACE23: 0.6–2.5 µm per step beyond 40°",
        "runaway_onset_deg": "PACE23",
        "branch_start_jump_um": "§7 (est., HAGEN Fig. 1)",
        "tilt_reversal_play_um": "est.",
        "tilt_backlash_deg": "est.",
        "xy_backlash_um": 'est.; SEM-P "same position" tolerance 0.1 µm',
        "xy_periodic_error_um": "SEM-H (Pulokas 1999): ≤ 15 % of the move, cycle 41–62 µm",
        "xy_error_period_um": "SEM-H",
        "drift_nm_s": (
            "est.: §7 suggests 2 nm/s, but then a Record right after a tilt smears ~20 Å, "
            "while real series move 2–9 Å per tilt (RELTUT)"
        ),
        "drift_tau_s": "§7 est.",
        "drift_floor_nm_s": "est.",
        "jump_probability": "§1 est.: about 1 per 100 moves",
        "jump_um": "§1 est.",
    },
    "side-entry": {
        "tilt_limit_deg": "G626 (±60° holder version)",
        "xy_limit_um": "SEM-P default stage XY range",
        "z_limit_um": "est.",
        "tilt_speed_deg_s": "LEG: TFS alpha top speed 29.78 °/s",
        "tilt_settle_s": "§7",
        "xy_speed_um_s": "est.: ~1–3 s for ≤ 100 µm",
        "xy_settle_s": "SEM-P: 2.0 s + 0.8 s built in after an XY move",
        "tilt_axis_offset_um": "§7",
        "tilt_axis_branch_delta_um": "§7: branches differ by 0.5 µm (PACE Fig. 3)",
        "tilt_axis_calibration_residual_um": "est.",
        "initial_height_sigma_um": "est.",
        "eucentric_rough_sigma_um": "§7: z0 σ 1 µm",
        "eucentric_fine_sigma_um": "est.",
        "runout_x_um": "est.: µm-scale on a side-entry holder",
        "runout_y_um": "est.",
        "runout_z_um": "est.",
        "step_error_sigma_um": "§7 (0.15) scaled like the autoloader value",
        "runaway_probability": "§7",
        "runaway_rate_um_per_step": "PACE23: 0.6–2.5 µm per step beyond 40°",
        "runaway_onset_deg": "PACE23",
        "branch_start_jump_um": "§7 (HAGEN)",
        "tilt_reversal_play_um": "est.",
        "tilt_backlash_deg": "est.",
        "xy_backlash_um": "est.; SEM-P JEOL-like tolerance 0.2 µm",
        "xy_periodic_error_um": "§7: ×1.5",
        "xy_error_period_um": "SEM-H",
        "drift_nm_s": "est.: 3× the autoloader, as §7's ratio (4 vs 2 nm/s)",
        "drift_tau_s": "§7",
        "drift_floor_nm_s": "est.",
        "jump_probability": "§1 est.: about 1 per 100 moves",
        "jump_um": "§1 est.",
    },
}
