"""Plots as inline SVG, rendered on the server (no JavaScript, nothing fetched from anywhere).

A plot is one or more named series of (x, y) points drawn as lines with markers, on axes with
"nice" ticks, a legend, and axis labels carrying their units. Missing values (``None``) break a
line rather than inventing a point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


@dataclass
class Line:
    """One named series; ``dashed`` for model/prediction curves, ``points_only`` for scatter."""

    name: str
    xs: Sequence[float | None]
    ys: Sequence[float | None]
    dashed: bool = False
    points_only: bool = False


def nice_ticks(low: float, high: float, n: int = 5) -> list[float]:
    """Round tick values covering [low, high].

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        low, high = low - 1.0, high + 1.0
    raw = (high - low) / max(1, n)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def line_plot(
    lines: Sequence[Line],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 460,
    height: int = 260,
    plot_id: str = "",
) -> str:
    """An SVG document fragment with the lines on shared axes."""
    points = [
        (x, y)
        for line in lines
        for x, y in zip(line.xs, line.ys, strict=False)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    left, right, top, bottom = 58, 12, 28, 42
    inner_w, inner_h = width - left - right, height - top - bottom
    ident = f' id="{escape(plot_id)}"' if plot_id else ""
    head = (
        f'<svg class="plot"{ident} xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="{width / 2}" y="16" text-anchor="middle" class="plot-title">'
        f"{escape(title)}</text>"
    )
    if not points:
        return (
            head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            'class="plot-empty">no data yet</text></svg>'
        )
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(ys), max(ys))
    x0, x1 = x_ticks[0], x_ticks[-1]
    y0, y1 = y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0 or 1.0) * inner_w

    def sy(y: float) -> float:
        return top + inner_h - (y - y0) / (y1 - y0 or 1.0) * inner_h

    parts = [head]
    parts.append(
        f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" class="plot-frame"/>'
    )
    for t in x_ticks:
        parts.append(
            f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + inner_h}" '
            f'class="grid"/><text x="{sx(t):.1f}" y="{top + inner_h + 14}" '
            f'text-anchor="middle" class="tick">{_fmt(t)}</text>'
        )
    for t in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + inner_w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
            f'class="grid"/><text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" '
            f'class="tick">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text x="{left + inner_w / 2}" y="{height - 6}" text-anchor="middle" '
        f'class="axis-label">{escape(x_label)}</text>'
        f'<text transform="translate(12 {top + inner_h / 2}) rotate(-90)" '
        f'text-anchor="middle" class="axis-label">{escape(y_label)}</text>'
    )
    for index, line in enumerate(lines):
        colour = PALETTE[index % len(PALETTE)]
        segments: list[list[tuple[float, float]]] = [[]]
        marks = []
        for x, y in zip(line.xs, line.ys, strict=False):
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                segments.append([])
                continue
            segments[-1].append((sx(x), sy(y)))
            marks.append((sx(x), sy(y)))
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        if not line.points_only:
            for segment in segments:
                if len(segment) > 1:
                    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
                    parts.append(
                        f'<polyline points="{path}" fill="none" stroke="{colour}" '
                        f'stroke-width="1.5"{dash} class="series"/>'
                    )
        for px, py in marks:
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}" class="mark"/>'
            )
        lx = left + 8 + (index % 3) * (inner_w / 3)
        ly = top + 12 + (index // 3) * 13
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 8:.1f}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{lx + 14:.1f}" y="{ly - 4:.1f}" class="legend">{escape(line.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
