"""Report data gathered from a real run store; candidate grades exported and read back; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_support import CONTEXT_FAILED, GOOD, RUN, SELECTED, fill_run, wrong_patch

from codemonkeys.cli.main import main
from codemonkeys.edits import patch_hash
from codemonkeys.ensemble.load import LabelStatus, labels_from_data
from codemonkeys.errors import DataError, UserError
from codemonkeys.report.data import gather
from codemonkeys.report.grades import (
    CandidateGrades,
    export_candidate_files,
    load_candidate_grades,
    report_path,
)
from codemonkeys.report.html import render
from codemonkeys.report.passk import Sampled, coverage_curve
from codemonkeys.store import RunStore


def grades_of(labels: dict[str, str]) -> CandidateGrades:
    return CandidateGrades(by_candidate={k: LabelStatus(v) for k, v in labels.items()}, sources=["test"])


def test_spend_tokens_failures_and_budget_cuts(run_store: RunStore) -> None:
    fill_run(run_store)
    data = gather(run_store, "run")
    assert [s.stage for s in data.spend_by_stage] == ["relevance", "ranking", "testing", "editing", "selection"]
    assert {(s.stage, s.model) for s in data.spend} == {
        ("relevance", "gpt-4o-mini"), ("ranking", "claude-sonnet-4"), ("testing", "claude-sonnet-4"),
        ("editing", "claude-sonnet-4"), ("selection", "claude-sonnet-4"),
    }
    trajectories = sum(runs for runs, _, _ in RUN.values())
    editing = next(s for s in data.spend_by_stage if s.stage == "editing")
    assert editing.cost_usd == pytest.approx(0.02 * trajectories)
    assert editing.cache_read_tokens == 30_000 * trajectories
    assert editing.cache_read_share == pytest.approx(30_000 / 33_000)
    assert data.total.cost_usd == pytest.approx(sum(s.cost_usd for s in data.spend))
    assert data.oracle_models == []
    assert [(c.instance_id, c.trajectories, c.configured_trajectories) for c in data.budget_cuts] == [("demo__proj-4", 4, 8)]
    assert "affords 4 of 8" in data.budget_cuts[0].reason
    assert data.plans == len(RUN)
    assert data.failures == {
        ("calls", "editing"): {"infra": 2},
        ("calls", "relevance"): {"infra": 1},
        ("instances", "context"): {"infra": 1},
        ("trajectories", "editing"): {"infra": 2, "model": 2},
    }
    assert data.trajectory_statuses["editing"] == {"done": trajectories - 4, "failed": 4}
    assert data.grading is None
    by_id = {o.instance_id: o for o in data.outcomes}
    assert by_id["demo__proj-4"].trajectories == 4
    assert by_id[CONTEXT_FAILED].status == "failed" and by_id[CONTEXT_FAILED].trajectories == 0
    assert data.instance_counts == {"done": 5, "context failed": 1}


def test_coverage_and_selection_from_candidate_grades(run_store: RunStore) -> None:
    info = fill_run(run_store)
    data = gather(run_store, "run", grades=grades_of(info["labels"]))
    grading = data.grading
    assert grading is not None
    samples = [Sampled(n, c) for n, c in info["expected"].values()]
    expected = coverage_curve(samples)
    assert [k for k, _ in grading.curve] == [k for k, _ in expected] == list(range(1, 9))
    assert [c for _, c in grading.curve] == pytest.approx([c for _, c in expected])
    assert grading.curve[0][1] == pytest.approx((3 / 8 + 1 / 8 + 0 + 3 / 4 + 1 + 0) / 6)
    assert grading.curve[-1] == (8, pytest.approx(4 / 6))  # proj-1, 2, 4, 5 have a resolving trajectory
    assert grading.fit is not None and grading.fit.a < 0 and grading.fit.b < 0
    resolved = {iid for iid, index in SELECTED.items() if index in RUN[iid][1]}
    assert resolved == {"demo__proj-1", "demo__proj-4", "demo__proj-5"}
    assert grading.resolved == 3 and grading.instances == 6
    assert grading.cost_per_resolved == pytest.approx(data.total.cost_usd / 3)
    sel = grading.selection
    assert sel is not None
    assert (sel.instances, sel.covered, sel.selected_resolved) == (6, 4, 3)
    assert grading.by_method == {"no selection": (1, 0), "test_voting": (5, 3)}
    assert (grading.graded_instances, grading.ungraded_instances) == (6, 0)


def test_selection_labels_alone_give_the_score_but_no_coverage(run_store: RunStore) -> None:
    fill_run(run_store)
    report = {"demo__proj-1": {"status": "resolved"}, "demo__proj-2": {"status": "unresolved"},
              "demo__proj-4": {"status": "error"}}
    data = gather(run_store, "run", labels=labels_from_data(report, "eval.json"))
    grading = data.grading
    assert grading is not None
    assert grading.resolved == 1 and grading.selection is None and grading.curve == []
    by_id = {o.instance_id: o.selected_status for o in data.outcomes}
    assert by_id == {"demo__proj-1": "resolved", "demo__proj-2": "unresolved", "demo__proj-3": "unresolved",
                     "demo__proj-4": "error", "demo__proj-5": "unresolved", CONTEXT_FAILED: "unresolved"}
    assert any("2 selected patch(es) are not in eval.json" in note for note in data.notes)


def test_an_oracle_model_in_the_ledger_is_flagged(run_store: RunStore) -> None:
    fill_run(run_store, editing_model="oracle-noisy:0.3")
    data = gather(run_store, "run")
    assert data.oracle_models == ["oracle-noisy:0.3"]
    page = render(data)
    assert 'id="oracle-banner"' in page and "ORACLE RUN" in page
    assert 'id="oracle-banner"' not in render(gather(_plain(run_store), "run"))


def _plain(store: RunStore) -> RunStore:
    other = RunStore.open(store.path.parent.parent / "plain")
    fill_run(other)
    return other


def test_export_candidates_grade_each_file_and_read_it_back(run_store: RunStore, tmp_path: Path) -> None:
    info = fill_run(run_store)
    files = export_candidate_files(run_store, tmp_path / "cands")
    rows = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    # proj-1: 3 identical resolving patches + 5 distinct wrong ones; proj-5: 8 identical resolving ones
    per_instance = {iid: sum(1 for r in rows if r["instance_id"] == iid) for iid in RUN}
    assert per_instance == {"demo__proj-1": 6, "demo__proj-2": 6, "demo__proj-3": 7, "demo__proj-4": 1, "demo__proj-5": 1}
    assert len(files) == 7 and files[0].name == "candidates-0.jsonl"
    assert sum(len(r["candidate_ids"]) for r in rows) == len(info["labels"])
    # what `codemonkeys evaluate FILE` writes beside each file: {instance_id: {"status": ...}}
    for path in files:
        report = {}
        for line in path.read_text().splitlines():
            row = json.loads(line)
            status = {info["labels"][cid] for cid in row["candidate_ids"]}
            assert len(status) == 1  # identical patches have one grade
            report[row["instance_id"]] = {"status": status.pop(), "repo": "demo/proj"}
        report_path(path).write_text(json.dumps(report))
    grades = load_candidate_grades(tmp_path / "cands")
    from_files = gather(run_store, "run", grades=grades)
    from_mapping = gather(run_store, "run", grades=grades_of(info["labels"]))
    assert from_files.grading is not None and from_mapping.grading is not None
    assert from_files.grading.curve == from_mapping.grading.curve
    assert from_files.grading.selection == from_mapping.grading.selection

    assert export_candidate_files(run_store, tmp_path / "cands") == files  # the same export again: nothing changes
    report_path(files[-1]).unlink()  # one file not graded: its instance (proj-3) is left out, and said so
    partial = gather(run_store, "run", grades=load_candidate_grades(tmp_path / "cands"))
    assert partial.grading is not None
    assert (partial.grading.graded_instances, partial.grading.ungraded_instances) == (5, 1)
    assert any("left out of coverage" in note for note in partial.notes)

    extra = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    run_store.add_candidate("demo__proj-5/submission/s", "demo__proj-5", "s", extra, patch_hash(extra), {})
    with pytest.raises(UserError, match="new directory"):  # its report would grade the wrong patch
        export_candidate_files(run_store, tmp_path / "cands")
    second = [json.loads(line) for line in export_candidate_files(run_store, tmp_path / "cands2")[1].read_text().splitlines()]
    assert ("demo__proj-5", ["demo__proj-5/submission/s"]) in [(r["instance_id"], r["candidate_ids"]) for r in second]


def test_bad_candidate_labels_are_data_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x/generation/0": "maybe"}))
    with pytest.raises(DataError, match="maybe"):
        load_candidate_grades(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="candidates-"):
        load_candidate_grades(tmp_path / "empty")
    (tmp_path / "ungraded").mkdir()
    (tmp_path / "ungraded" / "candidates-0.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="evaluate"):
        load_candidate_grades(tmp_path / "ungraded")
    with pytest.raises(DataError, match="neither"):
        load_candidate_grades(tmp_path / "missing.json")


def test_cli_writes_the_page_and_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunStore.open(tmp_path / "run") as store:
        info = fill_run(store, editing_model="oracle")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(info["labels"]))
    out, data_json = tmp_path / "out" / "report.html", tmp_path / "data.json"
    main(["report", str(tmp_path / "run"), "--candidate-labels", str(labels), "-o", str(out), "--json", str(data_json)])
    page = out.read_text()
    assert page.count('data-series="coverage"') == 8 and "ORACLE RUN" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch
    assert "<script src" not in page and "<link" not in page  # the one script (the list's filter) is inline
    pages = sorted((out.parent / "report.instances").iterdir())
    assert len(pages) == 6 and page.count('href="report.instances/') == 6
    one = (out.parent / "report.instances" / "demo__proj-2.html").read_text()
    assert "<script" not in one and "<link" not in one and 'href="../report.html"' in one
    assert "demo__proj-2/generation/0" in one and "test_voting" in one
    data = json.loads(data_json.read_text())
    assert data["grading"]["resolved"] == 3 and data["failures"]["instances: context"] == {"infra": 1}
    assert "ORACLE" in capsys.readouterr().err

    main(["report", str(tmp_path / "run"), "--export-candidates", str(tmp_path / "cands")])
    assert min(p.name for p in (tmp_path / "cands").iterdir()) == "candidates-0.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "run")])  # nothing to write
    assert exit_info.value.code == 2


def test_a_pool_of_submissions_has_selection_against_coverage_but_no_curve(run_store: RunStore) -> None:
    """An ensemble run: candidates come from submissions, not trajectories."""
    for iid, sources in {"e__1": {"subA": True, "subB": False}, "e__2": {"subA": False, "subB": False}}.items():
        run_store.add_instance(iid, "e/e", {})
        for name, good in sources.items():
            patch = GOOD if good else wrong_patch(iid, len(name))
            run_store.add_candidate(f"{iid}/submission/{name}", iid, name, patch, patch_hash(patch), {"models": ["m"]})
        run_store.put_selection(iid, f"{iid}/submission/subB", "test_voting", {})
    grades = {"e__1/submission/subA": "resolved", "e__1/submission/subB": "unresolved",
              "e__2/submission/subA": "unresolved", "e__2/submission/subB": "unresolved"}
    data = gather(run_store, "run", grades=grades_of(grades))
    grading = data.grading
    assert grading is not None and grading.curve == [] and grading.fit is None
    assert grading.selection is not None
    assert (grading.selection.covered, grading.selection.selected_resolved) == (1, 0)
    assert grading.selection.random_accuracy == pytest.approx(0.25)
    assert grading.cost_per_resolved is None  # nothing resolved: no division by zero
    page = render(data)
    assert "No generation trajectory to draw a coverage curve from" in page and 'id="selection"' in page


def test_an_empty_run_renders(run_store: RunStore) -> None:
    page = render(gather(run_store, "run"))
    assert "The ledger is empty" in page and "<svg" not in page
