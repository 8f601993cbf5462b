"""Ensemble pooling and the select/ensemble reports, through the real CLI and a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.cli.main import main
from codemonkeys.edits import make_diff, patch_hash
from codemonkeys.ensemble import load_predictions
from codemonkeys.ensemble.pool import include_run, pool_submissions, submission_candidate_id
from codemonkeys.generation.state import TrajectoryState, save
from codemonkeys.selection import stored_tests
from codemonkeys.store import RunStore
from codemonkeys.store.records import CallRecord

SUBMISSIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "submissions" / "verified"
NAMES = ["20241213_devlo", "20241221_codestory_midwit_claude-3-5-sonnet_swe-search", "20250110_blackboxai_agent_v1.1"]

P1 = make_diff({"a.py": "x = 1\n"}, {"a.py": "x = 2\n"})
P2 = make_diff({"a.py": "x = 1\n"}, {"a.py": "x = 3\n"})


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def pred(instance_id: str, patch: str | None) -> dict[str, object]:
    return {"instance_id": instance_id, "model_name_or_path": "m", "model_patch": patch}


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="shared data folder absent")
def test_ensemble_report_over_the_real_submissions(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ensemble", "--report"]
    args += [a for name in NAMES for a in ("--submission", str(SUBMISSIONS / name / "all_preds.jsonl"))]
    args += [a for name in NAMES for a in ("--labels", str(SUBMISSIONS / name / "results.json"))]
    main([*args, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["n_instances"] == 500 and report["labelled"]
    assert {m["name"]: m["resolved"] for m in report["members"]} == dict(zip(NAMES, [291, 311, 314], strict=True))
    assert [m["rate"] for m in report["members"]] == [291 / 500, 311 / 500, 314 / 500]
    official = [set(json.loads((SUBMISSIONS / n / "results.json").read_text())["resolved"]) for n in NAMES]
    assert report["oracle_resolved"] == len(set.union(*official)) == 376
    # Random choice, recomputed here from the files: a uniform pick among members with a patch.
    patches = [load_predictions(SUBMISSIONS / n / "all_preds.jsonl").patches for n in NAMES]
    expected = 0.0
    for row in report["instances"]:
        having = [i for i in range(3) if row["instance_id"] in patches[i]]
        if having:
            expected += sum(row["instance_id"] in official[i] for i in having) / len(having)
    assert report["random_expected_resolved"] == pytest.approx(expected)
    assert report["candidates"] == 1434 and report["selected_resolved"] is None

    main(args)  # the tables
    out = capsys.readouterr().out
    assert "oracle (any member resolved)" in out and "75.2%" in out and "Per instance" in out


def test_ensemble_labels_must_pair_with_submissions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = write_jsonl(tmp_path / "a" / "all_preds.jsonl", [pred("i1", P1)])
    with pytest.raises(SystemExit) as failed:
        main(["ensemble", "--report", "--submission", str(sub), "--submission", str(sub),
              "--labels", str(tmp_path / "x.json")])
    assert failed.value.code == 2 and "one --labels per --submission" in capsys.readouterr().err


def test_pooling_skips_and_counts_bad_rows_and_is_idempotent(run_store: RunStore) -> None:
    def predictions(name: str, rows: list[dict[str, object]]):  # type: ignore[no-untyped-def]
        return name, load_predictions(write_jsonl(run_store.path.parent / name / "all_preds.jsonl", rows))

    members = [
        predictions("a", [pred("i1", P1), pred("i2", ""), pred("i3", None), pred("other", P2)]),
        predictions("b", [pred("i1", P1), pred("i2", "--- a/a.py\n+++ b/a.py\n@@ -1,9 +1,9 @@\n-x\n")]),
    ]
    for _ in range(2):
        summary = pool_submissions(run_store, members, ["i1", "i2", "i3"])
    assert (summary.added["a"], summary.no_patch["a"], summary.no_prediction["a"]) == (1, 2, 0)
    assert (summary.added["b"], summary.unparsable["b"], summary.no_prediction["b"]) == (1, 1, 1)
    rows = run_store.candidates("i1")
    assert [(r["candidate_id"], r["source"]) for r in rows] == [
        (submission_candidate_id("i1", "a"), "a"), (submission_candidate_id("i1", "b"), "b")
    ]
    assert rows[0]["data"]["models"] == ["m"] and rows[0]["patch_hash"] == patch_hash(P1)
    assert run_store.candidates("i2") == [] and run_store.candidates("other") == []


def test_include_run_copies_candidates_models_and_tests(tmp_path: Path, run_store: RunStore) -> None:
    with RunStore.open(tmp_path / "other") as other:
        other.add_candidate("i1/generation/0", "i1", "generation", P2, patch_hash(P2), {"trajectory": "i1/editing/0"})
        other.record_call(CallRecord("editing", "i1", "i1/editing/0", "h", "anthropic:claude"))
        other.record_call(CallRecord("testing", "i1", "i1/testing/0", "h", "oracle"))
        save(other, TrajectoryState(instance_id="i1", kind="testing", index=0, system="s", test="t\n"), {})
        assert include_run(run_store, other, "gen", ["i1", "i2"]) == 1
    [row] = run_store.candidates("i1")
    assert row["source"] == "run:gen" and row["data"]["models"] == ["anthropic:claude", "oracle"]
    assert stored_tests(run_store, "i1") == ["t\n"]


def test_select_and_ensemble_reports_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subs = [
        write_jsonl(tmp_path / "a" / "all_preds.jsonl", [pred("i1", P1), pred("i2", P1)]),
        write_jsonl(tmp_path / "b" / "all_preds.jsonl", [pred("i1", P2), pred("i2", P1), pred("i3", "")]),
    ]
    labels = [tmp_path / "a.json", tmp_path / "b.json"]
    labels[0].write_text(json.dumps({"resolved": ["i2"]}))
    labels[1].write_text(json.dumps({"i1": {"status": "resolved"}, "i2": {"status": "resolved"}, "i3": {"status": "unresolved"}}))
    run = tmp_path / "run"
    with RunStore.open(run) as store:
        pool_submissions(store, [("a", load_predictions(subs[0])), ("b", load_predictions(subs[1]))], ["i1", "i2", "i3"])
        b1, a2, b2 = submission_candidate_id("i1", "b"), submission_candidate_id("i2", "a"), submission_candidate_id("i2", "b")
        store.put_selection("i1", b1, "selection_trajectory", {"members": [b1], "ranking": [{"votes": 2}], "tests": 3, "counted_tests": ["t1", "t2"]})
        store.put_selection("i2", a2, "single_candidate", {"members": [a2, b2]})
        store.put_selection("i3", None, "none", {})
    sub_args = [a for path in subs for a in ("--submission", str(path))]
    label_args = [a for path in labels for a in ("--labels", str(path))]

    main(["ensemble", "--report", *sub_args, *label_args, "--run-dir", str(run), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["n_instances"] == 3  # every id the files mention
    assert {m["name"]: m["resolved"] for m in report["members"]} == {"a": 1, "b": 2}
    assert report["oracle_resolved"] == 2
    assert report["random_expected_resolved"] == pytest.approx(1 / 2 + 2 / 2)  # i1: b of a, b; i2: both
    assert report["selected_resolved"] == 2
    assert [(r["instance_id"], r["candidates"], r["distinct"], r["selected"]) for r in report["instances"]] == [
        ("i1", 2, 2, "b"), ("i2", 2, 1, "a"), ("i3", 0, 0, None)
    ]

    main(["select", str(run), "--report", "--labels", str(labels[1]), "--json"])
    selected = json.loads(capsys.readouterr().out)
    assert selected["total"] == {
        "instances": 3, "candidates": 4, "distinct": 3, "selected": 2, "resolved": 2,
        "methods": {"selection_trajectory": 1, "single_candidate": 1, "none": 1},
    }
    assert [(r["instance_id"], r["top_votes"], r["counted_tests"], r["status"]) for r in selected["instances"]] == [
        ("i1", 2, 2, "resolved"), ("i2", None, 0, "resolved"), ("i3", None, 0, None)
    ]
    main(["select", str(run), "--report"])
    assert "selection_trajectory" in capsys.readouterr().out


def test_select_command_without_anything_to_vote_on_then_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One distinct candidate (two copies) and no candidate: no sandbox, no model, no API key."""
    from codemonkeys.swebench.instances import Instance

    run = tmp_path / "run"
    with RunStore.open(run) as store:
        for iid in ("i1", "i2"):
            instance = Instance(
                instance_id=iid, repo="o/r", base_commit="abc1234", version="1", environment_setup_commit="abc1234",
                problem_statement="p", test_patch="", FAIL_TO_PASS=[], PASS_TO_PASS=[],
            )
            store.add_instance(iid, instance.repo, instance.model_dump(mode="json"))
        store.add_candidate("i1/generation/0", "i1", "generation", P1, patch_hash(P1), {})
        store.add_candidate("i1/generation/1", "i1", "generation", P1 + "\n", patch_hash(P1), {})
    main(["select", str(run), "--set", "models.selection.model=scripted:unused", "--json"])  # no SystemExit: success
    results = json.loads(capsys.readouterr().out)
    assert [(r["instance_id"], r["method"], r["candidate_id"]) for r in results] == [
        ("i1", "single_candidate", "i1/generation/0"), ("i2", "none", None)
    ]
    main(["export", str(run), "--output", str(tmp_path / "preds.jsonl")])
    [row] = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert row == {"instance_id": "i1", "model_name_or_path": "codemonkeys", "model_patch": P1}
