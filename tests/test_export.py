"""Export: one SWE-bench prediction per selected instance; oracle work refused unless allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.cli.main import main
from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.errors import DataError, UserError
from codemonkeys.export import export_predictions, predictions
from codemonkeys.store import RunStore
from codemonkeys.store.records import CallRecord

PATCH = make_diff({"a.py": "x = 1\n"}, {"a.py": "x = 2\n"})
# As a submission wrote it: an index line and no trailing newline; exported verbatim.
RAW = PATCH.replace("--- a/a.py", "index 1111111..2222222 100644\n--- a/a.py").rstrip("\n")


def fill(store: RunStore) -> None:
    store.add_candidate("i1/generation/0", "i1", "generation", PATCH, patch_hash(PATCH), {"trajectory": "i1/editing/0"})
    store.put_selection("i1", "i1/generation/0", "single_candidate", {})
    store.add_candidate("i2/submission/s", "i2", "s", RAW, patch_hash(RAW), {"models": ["some-model"]})
    store.put_selection("i2", "i2/submission/s", "selection_trajectory", {"trajectory": "i2/selection/abc"})
    store.put_selection("i3", None, "none", {"reason": "no candidate"})


def test_one_row_per_selected_instance_with_the_candidates_own_patch(run_store: RunStore, tmp_path: Path) -> None:
    fill(run_store)
    output = tmp_path / "out" / "all_preds.jsonl"
    rows = export_predictions(run_store, output, model_name="codemonkeys-test")
    assert [r.instance_id for r in rows] == ["i1", "i2"]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert lines == [
        {"instance_id": "i1", "model_name_or_path": "codemonkeys-test", "model_patch": PATCH},
        {"instance_id": "i2", "model_name_or_path": "codemonkeys-test", "model_patch": RAW},
    ]
    assert list(output.parent.iterdir()) == [output]  # no temporary file left behind


@pytest.mark.parametrize(
    "taint",
    [
        "editing-model",  # the generation trajectory's calls in the ledger
        "testing-model",  # ... or its testing trajectory's
        "selection-model",  # the selection trajectory's
        "candidate-data",  # recorded on the candidate (submissions, included runs)
    ],
)
def test_oracle_work_is_refused_unless_allowed(run_store: RunStore, tmp_path: Path, taint: str) -> None:
    fill(run_store)
    trajectory = {
        "editing-model": "i1/editing/0", "testing-model": "i1/testing/0", "selection-model": "i2/selection/abc",
    }.get(taint)
    if trajectory is not None:
        run_store.record_call(CallRecord("editing", "i1", trajectory, "h", "oracle-noisy:0.5"))
    else:
        run_store.add_candidate("i2/submission/s", "i2", "s", RAW, patch_hash(RAW), {"models": ["oracle"]})
    output = tmp_path / "all_preds.jsonl"
    with pytest.raises(UserError, match="oracle model"):
        export_predictions(run_store, output, model_name="m")
    assert not output.exists()
    rows = export_predictions(run_store, output, model_name="m", allow_oracle=True)
    assert len(rows) == 2 and output.exists()


def test_a_run_whose_only_oracle_was_the_relevance_stage_is_tainted(run_store: RunStore, tmp_path: Path) -> None:
    """Like a mock model's taint: the context came from the gold patch, so every prediction did."""
    fill(run_store)
    run_store.record_call(CallRecord("relevance", "i1", None, "h1", "oracle"))
    run_store.record_call(CallRecord("ranking", "i1", "ranking-0", "h2", "anthropic:claude-sonnet-4-5"))
    output = tmp_path / "all_preds.jsonl"
    with pytest.raises(UserError, match=r"oracle model.*used by relevance \(oracle\).*--allow-oracle"):
        export_predictions(run_store, output, model_name="m")
    assert not output.exists()
    assert len(export_predictions(run_store, output, model_name="m", allow_oracle=True)) == 2


def test_a_selection_of_an_unknown_or_empty_candidate_is_an_error(run_store: RunStore) -> None:
    run_store.put_selection("i1", "ghost", "single_candidate", {})
    with pytest.raises(DataError, match="not in the store"):
        predictions(run_store)
    run_store.add_candidate("ghost", "i1", "generation", "", "h", {})
    with pytest.raises(DataError, match="empty patch"):
        predictions(run_store)


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunStore.open(tmp_path / "run") as store:
        fill(store)
        store.record_call(CallRecord("selection", "i2", "i2/selection/abc", "h", "oracle"))
    output = tmp_path / "preds.jsonl"
    with pytest.raises(SystemExit) as refused:
        main(["export", str(tmp_path / "run"), "--output", str(output)])
    assert refused.value.code == 2 and "--allow-oracle" in capsys.readouterr().err
    main(["export", str(tmp_path / "run"), "--output", str(output), "--allow-oracle"])
    err = capsys.readouterr().err
    assert "wrote 2 prediction(s)" in err and "1 instance(s) had nothing to select" in err
    assert [json.loads(line)["model_name_or_path"] for line in output.read_text().splitlines()] == ["codemonkeys"] * 2
