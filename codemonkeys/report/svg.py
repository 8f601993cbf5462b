"""Inline SVG charts, drawn in Python so the report opens anywhere without fetching a script.

Every mark carries ``data-chart``, ``data-series`` and ``data-value`` (and
``data-row`` or ``data-k``), so a test — or a reader with the inspector — can
find the numbers behind what is drawn. A ``<title>`` in each mark is its
tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

from .passk import PowerLawFit

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)
KIND_COLORS = {"infra": "#e15759", "model": "#f28e2b", "budget": "#b07aa1", "user": "#9c755f"}


def palette(names: Sequence[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A stable color per name: fixed ones first, then the palette in order."""
    fixed = fixed or {}
    free = iter(c for c in PALETTE if c not in fixed.values())
    return {name: fixed.get(name) or next(free, "#888888") for name in names}


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _legend(colors: Mapping[str, str], x: float, y: float, width: float) -> tuple[str, float]:
    """Legend swatches wrapped over lines; returns the markup and the height used."""
    parts, cx, cy = [], x, y
    for name, color in colors.items():
        step = 22 + 7 * len(name)
        if cx + step > x + width and cx > x:
            cx, cy = x, cy + 18
        parts.append(
            f'<rect x="{_num(cx)}" y="{_num(cy)}" width="12" height="12" fill="{color}" class="legend"/>'
            f'<text x="{_num(cx + 16)}" y="{_num(cy + 10)}" class="legend-label">{escape(name)}</text>'
        )
        cx += step
    return "".join(parts), cy - y + 18


def stacked_bars(
    chart_id: str,
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    colors: Mapping[str, str],
    fmt: Callable[[float], str],
    *,
    width: int = 760,
    label_width: int = 200,
    scale_max: float | None = None,
) -> str:
    """Horizontal bars, one per row, stacked by series; the total is printed after each bar.

    Bars are scaled to the largest total, or to ``scale_max`` (1.0 for shares).
    """
    bar_h, gap, top = 20, 8, 8
    plot_w = width - label_width - 90
    largest = scale_max or max((sum(v for _, v in series) for _, series in rows), default=0.0) or 1.0
    legend, legend_h = _legend(colors, label_width, top, plot_w + 80)
    y0 = top + legend_h + 6
    height = y0 + len(rows) * (bar_h + gap) + 8
    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{_attr(chart_id)}" data-chart="{_attr(chart_id)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'),
        legend,
    ]
    for i, (label, series) in enumerate(rows):
        y = y0 + i * (bar_h + gap)
        shown = label if len(label) <= 30 else label[:29] + "…"
        out.append(
            f'<text x="{label_width - 6}" y="{y + bar_h - 6}" text-anchor="end" class="row-label">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )
        x = float(label_width)
        for name, value in series:
            if value <= 0:
                continue
            w = max(plot_w * value / largest, 1.0)
            out.append(
                f'<rect class="bar" x="{_num(x)}" y="{y}" width="{_num(w)}" height="{bar_h}" fill="{colors.get(name, "#888")}" '
                f'data-chart="{_attr(chart_id)}" data-row="{_attr(label)}" data-series="{_attr(name)}" data-value="{value:g}">'
                f"<title>{escape(label)} · {escape(name)}: {escape(fmt(value))}</title></rect>"
            )
            x += w
        total = sum(v for _, v in series)
        out.append(f'<text x="{_num(x + 6)}" y="{y + bar_h - 6}" class="total">{escape(fmt(total))}</text>')
    out.append("</svg>")
    return "".join(out)


def _log_ticks(top: int) -> list[int]:
    ticks, k = [], 1
    while k <= top:
        ticks.append(k)
        k *= 2
    if ticks[-1] != top:
        if top / ticks[-1] < 1.3 and len(ticks) > 1:
            ticks[-1] = top
        else:
            ticks.append(top)
    return ticks


def coverage_chart(
    curve: Sequence[tuple[int, float]],
    fit: PowerLawFit | None,
    selected: tuple[int, float] | None,
    *,
    width: int = 760,
    height: int = 360,
) -> str:
    """Coverage (mean pass@k) against k on a log axis, the fitted exp(a·k^b), and the selection's score at k = n."""
    left, right, top, bottom = 56, 170, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    k_max = max((k for k, _ in curve), default=1)
    span = math.log(k_max) if k_max > 1 else math.log(2)

    def px(k: float) -> float:
        return left + plot_w * math.log(k) / span

    def py(value: float) -> float:
        return top + plot_h * (1.0 - value)

    out = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="coverage" data-chart="coverage" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">')
    ]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = py(tick)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" y2="{_num(y)}" class="grid"/>'
            f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end" class="tick">{tick:.0%}</text>'
        )
    for k in _log_ticks(k_max):
        x = px(k)
        out.append(
            f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{top}" y2="{top + plot_h}" class="grid"/>'
            f'<text x="{_num(x)}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{k}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="axis-label">'
        "trajectories sampled (k, log scale)</text>"
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" class="axis-label" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">coverage</text>'
    )
    if fit is not None and curve:
        steps = 60
        points = [1 + (k_max - 1) * i / steps for i in range(steps + 1)]
        d = " ".join(f"{'M' if i == 0 else 'L'}{_num(px(k))},{_num(py(fit.predict(k)))}" for i, k in enumerate(points))
        out.append(
            f'<path d="{d}" class="fit-line" data-chart="coverage" data-series="fit" '
            f'data-a="{fit.a:.6g}" data-b="{fit.b:.6g}"><title>fit: exp({fit.a:.3f}·k^{fit.b:.3f})</title></path>'
        )
    if curve:
        d = " ".join(f"{'M' if i == 0 else 'L'}{_num(px(k))},{_num(py(c))}" for i, (k, c) in enumerate(curve))
        out.append(f'<path d="{d}" class="coverage-line" data-chart="coverage" data-series="coverage-line"/>')
        for k, c in curve:
            out.append(
                f'<circle cx="{_num(px(k))}" cy="{_num(py(c))}" r="3.5" class="point" data-chart="coverage" '
                f'data-series="coverage" data-k="{k}" data-value="{c:.6g}"><title>k={k}: {c:.1%}</title></circle>'
            )
    if selected is not None:
        k, value = selected
        x, y = px(max(k, 1)), py(value)
        out.append(
            f'<path d="M{_num(x)},{_num(y - 7)} L{_num(x + 7)},{_num(y)} L{_num(x)},{_num(y + 7)} L{_num(x - 7)},{_num(y)} Z" '
            f'class="selected-mark" data-chart="coverage" data-series="selected" data-k="{k}" data-value="{value:.6g}">'
            f"<title>selected patch resolves {value:.1%}</title></path>"
        )
    lx = left + plot_w + 14
    out.append(
        f'<line x1="{lx}" x2="{lx + 22}" y1="{top + 10}" y2="{top + 10}" class="coverage-line"/>'
        f'<text x="{lx + 28}" y="{top + 14}" class="legend-label">coverage (pass@k)</text>'
    )
    if fit is not None:
        out.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{top + 30}" y2="{top + 30}" class="fit-line"/>'
            f'<text x="{lx + 28}" y="{top + 34}" class="legend-label">exp(a·k^b) fit</text>'
        )
    if selected is not None:
        out.append(
            f'<path d="M{lx + 11},{top + 43} L{lx + 18},{top + 50} L{lx + 11},{top + 57} L{lx + 4},{top + 50} Z" class="selected-mark"/>'
            f'<text x="{lx + 28}" y="{top + 54}" class="legend-label">selected</text>'
        )
    out.append("</svg>")
    return "".join(out)
