"""The live view fits the terminal it is drawn in: never taller than the window, never wider, essentials first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from codemonkeys.cli.live import LiveView, _Panel
from codemonkeys.config import load_config
from codemonkeys.store import RunStore
from codemonkeys.store.records import CallRecord, TrajectoryRecord
from rich.console import Console


def _fill(store: RunStore, running: int) -> None:
    for n in range(running + 6):
        iid = f"django__django-{11000 + n}"
        store.add_instance(iid, "django/django", {})
        if n < running:
            store.set_instance_state(iid, "generation", "running")
            for index in range(8):
                store.save_trajectory(TrajectoryRecord(f"{iid}/editing/{index}", iid, "editing", index, "running"))
        elif n < running + 2:
            store.set_instance_state(iid, "done", "done")
        elif n < running + 4:
            store.set_instance_state(iid, "context", "failed", "infra", "clone failed")
        for stage in ("relevance", "ranking", "testing", "editing", "selection"):
            store.record_call(CallRecord(stage, iid, None, f"{stage}-{n}", "claude-sonnet-4", 1000, 100, cost_usd=0.01))
    store.record_call(CallRecord("testing", "x", None, "err", "claude-sonnet-4", error_kind="infra", error="boom"))


def _draw(view: LiveView, width: int, height: int) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, height=height, force_terminal=True, color_system=None, legacy_windows=False)
    console.print(_Panel(view))
    return out.getvalue().rstrip("\n").split("\n")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (80, 12), (200, 50), (60, 6)])
def test_the_panel_fits_the_window(tmp_path: Path, width: int, height: int) -> None:
    config = load_config(None, ["budget.total_usd=5"])
    with RunStore.open(tmp_path) as store:
        _fill(store, running=30)
        view = LiveView(store, config, Console(file=io.StringIO()))
        lines = _draw(view, width, height)
    text = "\n".join(lines)
    assert len(lines) <= height - 1  # a taller panel scrolls away and tears on every refresh
    assert max(len(line) for line in lines) <= width
    # the essentials are on every size: spend against the budget, instances, trajectories, failures
    assert "of $5.00" in text and "trajectories: editing 240 running" in text
    assert "failures: instances 2 infra; failed calls 1 testing" in " ".join(text.split())
    if height >= 12:
        assert "generation" in text and "failed" in text
    if height >= 24:
        assert "spend" in text and "selection" in text
    if height >= 50:
        assert text.count("8 trajectory(ies) running") >= 15  # a wide, tall window lists instances in flight
    if 12 <= height < 50:
        assert "in-flight instance(s)" in text  # says what it left out


def test_log_records_show_in_the_panel_and_are_written_out_after_it(tmp_path: Path) -> None:
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with RunStore.open(tmp_path) as store:
            _fill(store, running=2)
            view = LiveView(store, load_config(None, []), Console(file=io.StringIO(), force_terminal=True), refresh_s=60)
            with view:
                logging.getLogger("codemonkeys.test").warning("budget: $0.12 left affords one trajectory")
                assert stream.getvalue() == ""  # nothing written past the panel while it shows
                assert "warning: budget: $0.12 left" in "\n".join(_draw(view, 80, 24))
            assert "budget: $0.12 left affords one trajectory" in stream.getvalue()  # written out after
        assert handler in root.handlers
    finally:
        root.removeHandler(handler)
