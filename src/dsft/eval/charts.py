"""Loss curves of a run, read from its ``metrics.jsonl`` and drawn as inline SVG (no image files, no JS).

The report must open anywhere as one file, so the chart is plain SVG text: a polyline per series
(training ``loss``, validation ``eval_loss``), axes with the step and loss ranges, and a legend.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

Curve = list[tuple[float, float]]
SERIES = (("loss", "train loss", "#1f77b4"), ("eval_loss", "eval loss", "#d62728"))


def read_loss_curves(metrics_file: str | Path) -> dict[str, Curve]:
    """``{"loss": [(step, value)...], "eval_loss": [...]}`` from a metrics.jsonl; unreadable lines skipped."""
    curves: dict[str, Curve] = {key: [] for key, _, _ in SERIES}
    path = Path(metrics_file)
    if not path.is_file():
        return curves
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            continue
        for key in curves:
            value = row.get(key)
            if isinstance(value, (int, float)) and value == value:  # drop NaN
                curves[key].append((float(row["step"]), float(value)))
    return curves


def loss_summary(curves: dict[str, Curve]) -> dict[str, float | None]:
    """First, last and best (lowest) values of each curve: ``loss_first``, ``eval_loss_best``, ..."""
    summary: dict[str, float | None] = {}
    for key, points in curves.items():
        values = [v for _, v in points]
        summary[f"{key}_first"] = values[0] if values else None
        summary[f"{key}_last"] = values[-1] if values else None
        summary[f"{key}_best"] = min(values) if values else None
    return summary


def loss_chart_svg(curves: dict[str, Curve], width: int = 640, height: int = 300) -> str:
    """An SVG line chart of the curves; a short note instead when there is nothing to draw."""
    points = [p for key, _, _ in SERIES for p in curves.get(key, [])]
    if not points:
        return "<p>No loss values in metrics.jsonl.</p>"
    left, right, top, bottom = 60, 20, 20, 40  # margins in pixels, room for the axis labels
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    s_min, s_max = min(steps), max(steps)
    v_min, v_max = min(values), max(values)
    s_span, v_span = (s_max - s_min) or 1.0, (v_max - v_min) or 1.0

    def xy(step: float, value: float) -> str:
        x = left + (step - s_min) / s_span * (width - left - right)
        y = top + (v_max - value) / v_span * (height - top - bottom)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="loss curves" style="font: 12px sans-serif">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#999"/>',
        f'<text x="{left}" y="{height - 22}">{s_min:g}</text>',
        f'<text x="{width - right}" y="{height - 22}" text-anchor="end">{s_max:g}</text>',
        f'<text x="{(width + left) / 2}" y="{height - 6}" text-anchor="middle">step</text>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{v_max:.3g}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{v_min:.3g}</text>',
    ]
    for index, (key, label, colour) in enumerate(SERIES):
        series = curves.get(key, [])
        if not series:
            continue
        coords = " ".join(xy(s, v) for s, v in series)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        if len(series) == 1:  # a single eval point is invisible as a line
            parts.append(f'<circle cx="{xy(*series[0]).split(",")[0]}" cy="{xy(*series[0]).split(",")[1]}" '
                         f'r="3" fill="{colour}"/>')
        legend_y = top + 16 + 16 * index
        parts.append(f'<text x="{width - right - 8}" y="{legend_y}" text-anchor="end" fill="{colour}">'
                     f"{escape(label)}</text>")
    parts.append("</svg>")
    return "\n".join(parts)
