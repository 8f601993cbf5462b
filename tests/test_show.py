"""``codemonkeys show`` on a stored pipeline run: what the terminal shows, --json, one trajectory, errors.

The run is real (oracle models, containers); a few records are added to its
store for what an oracle never produces (an unreadable relevance answer,
edits that did not apply), so the inspector's handling of them is seen too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codemonkeys.cli.main import run as cli
from codemonkeys.report.instance import instance_view
from codemonkeys.store import RunStore
from codemonkeys.store.records import ContextDecision, TrajectoryRecord, TurnRecord
from inspect_support import stored_run  # noqa: F401
from pipeline_support import shapes  # noqa: F401
from sandbox_support import docker_client  # noqa: F401

pytestmark = pytest.mark.docker

REJECTED = "search text not found in shapes.py: 'return width ** 2'"


@pytest.fixture(scope="module")
def run(stored_run):  # type: ignore[no-untyped-def]
    run_dir, ids = stored_run
    iid = ids[0]
    with RunStore.open_existing(run_dir) as store:
        result = store.get_result(iid, "context", "result")
        store.put_context_decision(ContextDecision(
            iid, "README.md", "h", result["relevance_model"], result["relevance_prompt"], "parse_failure",
            detail="I think maybe? <relevance>perhaps</relevance>",
        ))
        state = {"instance_id": iid, "kind": "editing", "index": 9, "system": "s", "status": "limit", "calls": 1,
                 "messages": [{"role": "user", "content": "fix it"},
                              {"role": "assistant", "content": "<edit>shapes.py search/replace</edit>"},
                              {"role": "user", "content": "Your edits were not applied"}]}
        record = TrajectoryRecord(f"{iid}/editing/9", iid, "editing", 9, "limit", state=json.dumps(state))
        store.save_turn(TurnRecord(record.trajectory_id, 1, json.dumps({
            "action": "edit", "applied": False, "edits": 1, "error": REJECTED, "test": "print(1)",
            "original": {"exit_code": 2, "outcome": "not fixed", "output": "AssertionError: 4 != 6"},
            "edited": {"exit_code": 2, "outcome": "not fixed", "output": "AssertionError: 4 != 6"},
        })), record)
    return run_dir, ids


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli(["show", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_prints_context_trajectories_grid_and_selection(run, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run_dir, ids = run
    monkeypatch.setenv("COLUMNS", "80")
    before = sorted(os.listdir(run_dir))
    code, out, _ = _show(capsys, run_dir, ids[0])
    assert code == 0
    assert sorted(os.listdir(run_dir)) == before  # read-only: no files created
    assert max(len(line) for line in out.splitlines()) <= 80
    # context: the decision with its summary, the unreadable answer with the raw text, packing with tokens
    assert "shapes.py" in out and "relevant" in out and "The gold patch edits shapes.py." in out
    assert "parse failure" in out and "raw answer: I think maybe?" in out
    assert "packed" in out and "merged order: shapes.py" in out
    # candidates: two groups, the grid with the original column, a fixed and a not-fixed mark
    with RunStore.open_read_only(run_dir) as store:
        view = instance_view(store, ids[0])
    assert len(view.groups) == 2 and view.grid is not None and view.grid.exact
    assert "test x candidate" in out and "orig" in out and "✓" in out and "✗" in out
    assert sum(g.selected for g in view.groups) == 1 and "◀ selected" in out
    # selection: method and why it fell back, when it did
    assert f"method: {view.selection.method}" in out  # type: ignore[union-attr]
    if view.selection.reason:  # type: ignore[union-attr]
        assert "why:" in out
    # trajectories turn by turn: the model's text, the runs with exit code and outcome, how it ended, spend
    assert "turn 1: test" in out and "original code: exit 2 (not fixed)" in out
    assert "edited code: exit 0 (fixed)" in out
    assert "ended: done" in out and "call(s)" in out
    # the rejected edits and why
    assert "edits NOT applied" in out and REJECTED in " ".join(out.split())
    assert "--full shows all" in out


def test_show_one_trajectory_full_and_json(run, capsys) -> None:  # type: ignore[no-untyped-def]
    run_dir, ids = run
    code, out, _ = _show(capsys, run_dir, ids[0], "editing/0")
    assert code == 0
    assert "editing 0:" in out and "testing 0:" not in out and "candidate patch" in out
    assert "--full shows all" not in out  # one trajectory is shown in full

    code, out, _ = _show(capsys, run_dir, ids[0], "--json")
    data = json.loads(out)
    assert code == 0 and data["instance_id"] == ids[0]
    kinds = {t["kind"] for t in data["trajectories"]}
    assert {"testing", "editing"} <= kinds
    editing = next(t for t in data["trajectories"] if t["trajectory_id"] == f"{ids[0]}/editing/0")
    runs = [r for turn in editing["turns"] for r in turn["runs"]]
    assert {r["label"] for r in runs} == {"original code", "edited code"}
    assert all(isinstance(r["exit_code"], int) for r in runs)
    assert data["grid"]["cells"] and data["context"]["packed"][0]["path"] == "shapes.py"

    code, out, _ = _show(capsys, run_dir, ids[0], "testing/1", "--json")
    assert code == 0 and json.loads(out)["trajectory"]["kind"] == "testing"


def test_show_user_errors_are_one_line(run, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir, ids = run
    code, _, err = _show(capsys, run_dir, "nope__nope-1")
    assert code == 2 and "has no instance 'nope__nope-1'" in err and len(err.strip().splitlines()) == 1
    code, _, err = _show(capsys, run_dir, ids[0], "editing/77")
    assert code == 2 and "no trajectory 'editing/77'" in err and "editing/0" in err
    code, _, err = _show(capsys, tmp_path / "missing", ids[0])
    assert code == 2 and "not a run directory" in err
