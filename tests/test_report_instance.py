"""The inspector's data layer on hand-written store rows: the grid (exact, flaky, rebuilt from votes), grades, context."""

from __future__ import annotations

from pathlib import Path

from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.report.html import render_instance
from codemonkeys.report.instance import GRADE_STAGE, instance_view
from codemonkeys.report.terminal import instance_renderables
from codemonkeys.store import RunStore
from rich.console import Console

IID = "demo__proj-1"
A = make_diff({"m.py": "x = 1\n"}, {"m.py": "x = 2\n"})
B = make_diff({"m.py": "x = 1\n"}, {"m.py": "x = 3\n"})
KA, KB = patch_hash(A), patch_hash(B)


def _store(path: Path, *, exact: bool) -> RunStore:
    store = RunStore.open(path)
    store.add_instance(IID, "demo/proj", {})
    store.set_instance_state(IID, "done", "done")
    for n, patch in enumerate((A, A, B)):
        store.add_candidate(f"{IID}/generation/{n}", IID, "generation", patch, patch_hash(patch), {})
    data = {
        "key": KA, "reason": "", "trajectory": None, "top_k": [KA, KB], "counted_tests": ["t1", "t2"],
        "ranking": [
            {"key": KA, "votes": 2, "changed_lines": 2, "members": [], "passing_tests": ["t1", "t2"]},
            {"key": KB, "votes": 0, "changed_lines": 2, "members": [], "passing_tests": []},
        ],
        "flaky": [{"test": "t2", "column": KB, "outcomes": ["fixed", "not_fixed", "not_fixed"]}],
    }
    if exact:
        data["outcomes"] = {
            "t1": {"original": "not_fixed", KA: "fixed", KB: "crashed"},
            "t2": {"original": "not_fixed", KA: "fixed", KB: "not_fixed"},
        }
    store.put_selection(IID, f"{IID}/generation/0", "top_vote", data)
    store.put_result(IID, GRADE_STAGE, KA, {"status": "resolved"})
    return store


def test_the_grid_has_every_cell_marks_flaky_ones_and_groups_carry_votes_and_grades(tmp_path: Path) -> None:
    with _store(tmp_path, exact=True) as store:
        view = instance_view(store, IID)
    assert [g.key for g in view.groups] == [KA, KB]
    assert [len(g.members) for g in view.groups] == [2, 1] and [g.votes for g in view.groups] == [2, 0]
    assert [g.selected for g in view.groups] == [True, False]
    assert [g.grade for g in view.groups] == ["resolved", None] and view.graded
    grid = view.grid
    assert grid is not None and grid.exact and grid.columns == ["original", KA, KB]
    assert grid.cells["t1"][KB] == "crashed" and grid.flaky == [("t2", KB)]
    page = render_instance(view, "../report.html")
    assert page.count('class="cell fixed"') == 2 and 'class="cell not_fixed flaky"' in page
    assert 'class="cell crashed"' in page
    console = Console(record=True, width=80, file=open("/dev/null", "w"))
    for part in instance_renderables(view, False):
        console.print(part)
    text = console.export_text()
    assert "✗~" in text and "!" in text and "resolved" in text and "◀ selected" in text
    assert "the context stage has not run" in text


def test_an_older_selection_record_rebuilds_the_grid_from_the_votes(tmp_path: Path) -> None:
    with _store(tmp_path, exact=False) as store:
        view = instance_view(store, IID)
    grid = view.grid
    assert grid is not None and not grid.exact and grid.columns == [KA, KB]
    assert grid.cells == {"t1": {KA: "pass", KB: "not pass"}, "t2": {KA: "pass", KB: "not pass"}}
