"""The plots of the pages: Leginon's tilt-series graphs, the session's dose and time, the map."""

from __future__ import annotations

import math
from html import escape

from tomopilot.geometry.footprints import ellipse_outline_um
from tomopilot.store.models import ExposureRow
from tomopilot.web.schemas import AreaOut, EventOut, ExposureOut, TiltSeriesDetail
from tomopilot.web.svg import Line, line_plot


def _by_tilt(exposures: list[ExposureOut]) -> list[ExposureOut]:
    return sorted(exposures, key=lambda e: e.tilt_deg)


def _nm(value: float | None) -> float | None:
    return None if value is None else 1000.0 * value


def series_plots(series: TiltSeriesDetail) -> dict[str, str]:
    """Every plot of a tilt-series page, by id, in page order."""
    exposures = _by_tilt(series.exposures)
    tilts = [e.tilt_deg for e in exposures]
    has_truth = any(e.true_error_x_nm is not None for e in exposures)
    plots = {}
    for axis in ("x", "y"):
        plots[f"plot-{axis}"] = line_plot(
            [
                Line(
                    "predicted",
                    tilts,
                    [getattr(e, f"predicted_{axis}_um") for e in exposures],
                    dashed=True,
                ),
                Line("measured", tilts, [getattr(e, f"measured_{axis}_um") for e in exposures]),
            ],
            title=f"{axis} position: predicted (shift applied) and measured",
            x_label="tilt (°)",
            y_label=f"{axis} (µm)",
            plot_id=f"plot-{axis}",
        )
    error_lines = [
        Line("error x", tilts, [_nm(e.tracking_error_x_um) for e in exposures]),
        Line("error y", tilts, [_nm(e.tracking_error_y_um) for e in exposures]),
    ]
    if has_truth:
        error_lines += [
            Line("true x (twin)", tilts, [e.true_error_x_nm for e in exposures], dashed=True),
            Line("true y (twin)", tilts, [e.true_error_y_nm for e in exposures], dashed=True),
        ]
    plots["plot-error"] = line_plot(
        error_lines,
        title="tracking error (found in the Record)" + (" and true error" if has_truth else ""),
        x_label="tilt (°)",
        y_label="error (nm)",
        plot_id="plot-error",
    )
    plots["plot-z"] = line_plot(
        [
            Line("predicted Δz", tilts, [e.predicted_z_um for e in exposures], dashed=True),
            Line(
                "measured defocus − target",
                tilts,
                [
                    None
                    if e.measured_defocus_um is None or e.target_defocus_um is None
                    else e.measured_defocus_um - e.target_defocus_um
                    for e in exposures
                ],
            ),
        ],
        title="predicted height change and measured defocus",
        x_label="tilt (°)",
        y_label="µm",
        plot_id="plot-z",
    )
    defocus_lines = [
        Line("target", tilts, [e.target_defocus_um for e in exposures], dashed=True),
        Line("applied", tilts, [e.predicted_defocus_um for e in exposures]),
        Line("measured (CTF)", tilts, [e.measured_defocus_um for e in exposures], points_only=True),
    ]
    if has_truth:
        defocus_lines.append(Line("true (twin)", tilts, [e.true_defocus_um for e in exposures]))
    plots["plot-defocus"] = line_plot(
        defocus_lines,
        title="defocus",
        x_label="tilt (°)",
        y_label="defocus (µm)",
        plot_id="plot-defocus",
    )
    plots["plot-counts"] = line_plot(
        [Line("mean counts", tilts, [e.mean_counts for e in exposures])],
        title="image mean",
        x_label="tilt (°)",
        y_label="counts per pixel",
        plot_id="plot-counts",
    )
    plots["plot-dose"] = line_plot(
        [
            Line("dose", tilts, [e.dose_e_a2 for e in exposures]),
            Line("prior dose", tilts, [e.prior_dose_e_a2 for e in exposures], points_only=True),
        ],
        title="dose per Record and dose before it",
        x_label="tilt (°)",
        y_label="e⁻/Å²",
        plot_id="plot-dose",
    )
    return plots


def session_plots(exposures: list[ExposureRow], start_s: float | None) -> dict[str, str]:
    """Dose rate and mean counts over the session's microscope time."""
    t0 = start_s if start_s is not None else min((e.time_s or 0.0 for e in exposures), default=0)
    minutes = [None if e.time_s is None else (e.time_s - t0) / 60.0 for e in exposures]
    rate = [e.dose_e_a2 / e.exposure_s if e.dose_e_a2 and e.exposure_s else None for e in exposures]
    return {
        "plot-dose-rate": line_plot(
            [Line("dose rate", minutes, rate, points_only=True)],
            title="dose rate",
            x_label="microscope time (min)",
            y_label="e⁻/Å²/s",
            plot_id="plot-dose-rate",
        ),
        "plot-session-counts": line_plot(
            [Line("mean counts", minutes, [e.mean_counts for e in exposures], points_only=True)],
            title="image mean over the session",
            x_label="microscope time (min)",
            y_label="counts per pixel",
            plot_id="plot-session-counts",
        ),
    }


def timeline_svg(events: list[EventOut], start_s: float | None, end_s: float | None) -> str:
    """Events as ticks along the session's microscope time, named on hover."""
    width, height, left, right = 920, 70, 20, 20
    if not events:
        return '<svg class="timeline" width="920" height="30"><text x="20" y="20">none</text></svg>'
    t0 = start_s if start_s is not None else events[0].time_s
    t1 = max(end_s or t0, events[-1].time_s, t0 + 1.0)

    def sx(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (width - left - right)

    colours = {"HousekeepingDone": "#2ca02c", "SetupStep": "#1f77b4", "RunFinished": "#000"}
    parts = [
        f'<svg class="timeline" id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<line x1="{left}" x2="{width - right}" y1="35" y2="35" stroke="#999"/>'
    ]
    for event in events:
        colour = colours.get(event.kind, "#d62728")
        x = sx(event.time_s)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="22" y2="48" stroke="{colour}" stroke-width="2">'
            f"<title>{(event.time_s - t0) / 60:.1f} min: {escape(event.summary)}</title></line>"
        )
    parts.append(
        f'<text x="{left}" y="64" class="tick">0 min</text>'
        f'<text x="{width - right}" y="64" text-anchor="end" class="tick">'
        f"{(t1 - t0) / 60:.1f} min</text></svg>"
    )
    return "".join(parts)


STATUS_COLOURS = {
    "pending": "#bbbbbb",
    "acquiring": "#1f77b4",
    "done": "#2ca02c",
    "finished": "#2ca02c",
    "skipped": "#7f7f7f",
    "aborted": "#d62728",
}


def target_map_svg(area: AreaOut, size_px: int = 520) -> str:
    """Targets at their specimen shifts with the beam's footprint at the current tilt.

    The footprint is a circle of the beam's diameter stretched by 1/cos θ across the tilt axis
    (x is the tilt axis), as PACEtomo draws it; targets are coloured by status.
    """
    radius = (area.beam_diameter_um or 1.5) / 2.0
    tilt = area.current_tilt_deg or 0.0
    stretch = 1.0 / max(0.05, math.cos(math.radians(tilt)))
    if not area.targets:
        return (
            '<svg class="map" width="300" height="40"><text x="10" y="20">no targets</text></svg>'
        )
    xs = [t.ss_x_um for t in area.targets]
    ys = [t.ss_y_um for t in area.targets]
    half = max(
        max(abs(v) for v in xs) + radius,
        max(abs(v) for v in ys) + radius * stretch,
        2 * radius,
    )
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    scale = (size_px - 40) / (2 * half + 1e-9)

    def px(x: float, y: float) -> tuple[float, float]:
        return (size_px / 2 + (x - cx) * scale, size_px / 2 - (y - cy) * scale)

    axis_y = px(0.0, 0.0)[1]
    parts = [
        f'<svg class="map" id="target-map" xmlns="http://www.w3.org/2000/svg" width="{size_px}" '
        f'height="{size_px}" viewBox="0 0 {size_px} {size_px}" role="img" '
        f'aria-label="target map at {tilt:.0f}°"><title>targets and beam footprints at '
        f"{tilt:.1f}°</title>"
        f'<line x1="10" x2="{size_px - 10}" y1="{axis_y:.1f}" y2="{axis_y:.1f}" '
        'stroke="#ccc" stroke-dasharray="4 4"/>'
        f'<text x="12" y="{axis_y - 4:.1f}" class="tick">tilt axis (x) through target 1</text>'
    ]
    for target in area.targets:
        outline = ellipse_outline_um(
            (target.ss_x_um, target.ss_y_um), beam_radius_um=radius, max_tilt_deg=tilt
        )
        points = " ".join("{:.1f},{:.1f}".format(*px(x, y)) for x, y in outline)
        colour = STATUS_COLOURS.get(target.status, "#9467bd")
        x0, y0 = px(target.ss_x_um, target.ss_y_um)
        link = f"/series/{target.tilt_series_id}" if target.tilt_series_id else None
        body = (
            f'<polygon points="{points}" fill="{colour}" fill-opacity="0.25" stroke="{colour}" '
            f'class="footprint" data-status="{escape(target.status)}"/>'
            f'<circle cx="{x0:.1f}" cy="{y0:.1f}" r="3" fill="{colour}"/>'
            f'<text x="{x0 + 5:.1f}" y="{y0 - 5:.1f}" class="label">{target.number}</text>'
            f"<title>target {target.number}: {escape(target.status)} {escape(target.detail)}"
            "</title>"
        )
        parts.append(f'<a href="{link}">{body}</a>' if link else f"<g>{body}</g>")
    parts.append("</svg>")
    return "".join(parts)
