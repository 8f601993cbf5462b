"""Render the report: an index page from :class:`ReportData` and one page per instance from :class:`InstanceView`.

Every page is self-contained (inline CSS and SVG, no fetches); the index's
only script filters the instance list. Instance pages sit beside the index in
``<name>.instances/``, one small file each, so a 500-instance run opens fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .data import ReportData
from .instance import OUTCOME_MARKS, InstanceView, column_letter
from .svg import KIND_COLORS, coverage_chart, palette, stacked_bars

TEMPLATE = "template.html.j2"
INSTANCE_TEMPLATE = "instance.html.j2"
TOKEN_SERIES = ("input", "cache read", "cache write", "output")


def money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:.4f}"


def tokens(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(money=money, tokens=tokens, pct=pct)
    return env


def charts(data: ReportData) -> dict[str, Markup]:
    """The SVG charts the data supports, by name."""
    out: dict[str, Markup] = {}
    if data.spend:
        stages = list(dict.fromkeys(s.stage for s in data.spend))
        models = sorted({s.model for s in data.spend})
        rows = [(stage, [(s.model, s.cost_usd) for s in data.spend if s.stage == stage]) for stage in stages]
        out["cost"] = Markup(stacked_bars("cost", rows, palette(models), money))
        token_rows = [
            (s.stage, list(zip(TOKEN_SERIES, (s.input_tokens, s.cache_read_tokens, s.cache_write_tokens, s.output_tokens))))
            for s in data.spend_by_stage
        ]
        out["tokens"] = Markup(stacked_bars("tokens", token_rows, palette(TOKEN_SERIES), tokens))
    if data.failures:
        kinds = sorted({kind for counts in data.failures.values() for kind in counts})
        rows = [(f"{what}: {stage}", sorted(counts.items())) for (what, stage), counts in data.failures.items()]
        out["failures"] = Markup(stacked_bars("failures", rows, palette(kinds, KIND_COLORS), lambda v: f"{v:.0f}"))
    grading = data.grading
    if grading is not None and grading.selection is not None and grading.selection.instances:
        sel = grading.selection
        if grading.curve:
            k_max = grading.curve[-1][0]
            out["coverage"] = Markup(coverage_chart(grading.curve, grading.fit, (k_max, sel.accuracy)))
        rows = [
            ("random pick (pass@1)", [("resolved", sel.random_accuracy)]),
            ("selected patch", [("resolved", sel.accuracy)]),
            ("coverage (any candidate)", [("resolved", sel.coverage)]),
        ]
        out["selection"] = Markup(stacked_bars("selection", rows, {"resolved": "#59a14f"}, pct, scale_max=1.0))
    return out


def render(data: ReportData, pages: dict[str, str] | None = None) -> str:
    """The index page as a string; ``pages`` maps instance ids to their page's relative link."""
    created = dt.datetime.fromtimestamp(data.created).strftime("%Y-%m-%d %H:%M")
    context: dict[str, Any] = {"d": data, "charts": charts(data), "created": created, "pages": pages or {}}
    return _environment().get_template(TEMPLATE).render(**context)


def render_instance(view: InstanceView, index: str) -> str:
    """One instance's page; ``index`` is the relative link back to the index."""
    context: dict[str, Any] = {
        "v": view, "index": index, "marks": OUTCOME_MARKS,
        "letters": {g.key: column_letter(i) for i, g in enumerate(view.groups)},
        "flaky": set(view.grid.flaky) if view.grid else set(),
    }
    return _environment().get_template(INSTANCE_TEMPLATE).render(**context)


def page_name(instance_id: str) -> str:
    """A file name for an instance id (ids are ``owner__repo-N``; anything unusual becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", instance_id) + ".html"


def instance_dir(path: Path) -> Path:
    """Where the instance pages of the index ``path`` go."""
    return path.with_name(f"{path.stem}.instances")


def _atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write(data: ReportData, path: Path, views: Iterable[InstanceView] = ()) -> Path:
    """Write each instance's page (streamed: one view in memory at a time), then the index; returns the index."""
    path = Path(path)
    folder = instance_dir(path)
    pages: dict[str, str] = {}
    for view in views:
        name = page_name(view.instance_id)
        _atomic(folder / name, render_instance(view, f"../{path.name}"))
        pages[view.instance_id] = f"{folder.name}/{name}"
    return _atomic(path, render(data, pages))
