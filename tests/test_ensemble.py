"""Ensembles of SWE-bench submissions: loading predictions and labels, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.edits import make_diff
from codemonkeys.ensemble import (
    EnsembleMember,
    LabelStatus,
    ensemble_report,
    instance_table,
    instance_universe,
    load_labels,
    load_predictions,
    load_submission,
    report_table,
    table_text,
)
from codemonkeys.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SUBMISSIONS = SHARED / "submissions" / "verified"

PATCH_A = make_diff({"a.py": "x = 1\n"}, {"a.py": "x = 2\n"})
PATCH_A_GIT = PATCH_A.replace("--- a/a.py", "index 1111111..2222222 100644\n--- a/a.py")
PATCH_B = make_diff({"a.py": "x = 1\n"}, {"a.py": "x = 3\n"})


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def row(instance_id: str, patch: str | None, **extra: object) -> dict[str, object]:
    return {"instance_id": instance_id, "model_name_or_path": "m", "model_patch": patch, **extra}


# --- loading predictions ---------------------------------------------------------------


def test_load_jsonl_skips_and_counts_missing_and_empty(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "all_preds.jsonl",
        [
            row("i1", PATCH_A),
            row("i2", ""),
            row("i3", None),
            {"instance_id": "i4"},
            row("i5", "  \n"),
            {"instance_id": "i6", "model_name_or_patch": "typo", "model_patch": PATCH_B},
        ],
    )
    preds = load_predictions(path)
    assert preds.patches == {"i1": PATCH_A, "i6": PATCH_B}
    assert (preds.skipped_empty, preds.skipped_missing) == (2, 2)
    assert preds.all_ids == {"i1", "i2", "i3", "i4", "i5", "i6"}
    assert preds.model_names == ("m",)


def test_load_json_list_and_dict(tmp_path: Path) -> None:
    listed = tmp_path / "preds.json"
    listed.write_text(json.dumps([row("i1", PATCH_A), row("i2", PATCH_B)]))
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"i1": {"model_patch": PATCH_A}, "i2": {"model_patch": ""}}))
    assert load_predictions(listed).patches == {"i1": PATCH_A, "i2": PATCH_B}
    keyed_preds = load_predictions(keyed)
    assert keyed_preds.patches == {"i1": PATCH_A} and keyed_preds.skipped_empty == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"instance_id": "i1", "model_patch": ""}\nnot json\n', r"preds.jsonl:2: not valid JSON"),
        (
            '{"instance_id": "i1", "model_patch": ""}\n\n[1, 2]\n',
            r"preds.jsonl:3: expected a JSON object",
        ),
        ('{"model_patch": "x"}\n', r"preds.jsonl:1: missing or invalid 'instance_id'"),
        (
            '{"instance_id": "i1", "model_patch": 5}\n',
            r"preds.jsonl:1: 'model_patch' must be a string",
        ),
        (
            '{"instance_id": "i1", "model_patch": ""}\n{"instance_id": "i1", "model_patch": ""}\n',
            r"preds.jsonl:2: instance 'i1' already appeared at .*preds.jsonl:1",
        ),
    ],
)
def test_malformed_prediction_rows_name_file_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_predictions(path)


def test_missing_prediction_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        load_predictions(tmp_path / "nope.jsonl")


# --- loading labels ---------------------------------------------------------------------


def test_labels_results_json(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"resolved": ["i1"], "no_generation": ["i2"], "no_logs": ["i3"]}))
    labels = load_labels(path)
    assert labels.resolved == {"i1"}
    assert [labels.status(i) for i in ("i1", "i2", "i3", "unknown")] == [
        LabelStatus.RESOLVED,
        LabelStatus.UNRESOLVED,
        LabelStatus.ERROR,
        LabelStatus.UNRESOLVED,
    ]
    assert labels.mentioned == {"i1", "i2", "i3"}


def test_labels_harness_report_and_own_format(tmp_path: Path) -> None:
    harness = tmp_path / "report.json"
    harness.write_text(
        json.dumps(
            {
                "total_instances": 3,
                "resolved_ids": ["i1"],
                "unresolved_ids": ["i2"],
                "error_ids": ["i3"],
            }
        )
    )
    own = tmp_path / "eval.json"
    own.write_text(
        json.dumps(
            {
                "i1": {"status": "resolved", "tests": {}},
                "i2": {"status": "unresolved"},
                "i3": {"status": "error"},
            }
        )
    )
    for path in (harness, own):
        labels = load_labels(path)
        assert [labels.status(i) for i in ("i1", "i2", "i3")] == [
            LabelStatus.RESOLVED,
            LabelStatus.UNRESOLVED,
            LabelStatus.ERROR,
        ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1]", "must be a JSON object"),
        ('{"i1": {"status": "great"}}', "entry 'i1' must be an object"),
        ('{"resolved": ["i1", 3]}', "'resolved' must be a list of instance ids"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_label_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_labels(path)


# --- the report --------------------------------------------------------------------------


def member(
    tmp_path: Path, name: str, patches: dict[str, str], resolved: list[str]
) -> EnsembleMember:
    folder = tmp_path / name
    folder.mkdir()
    write_jsonl(folder / "all_preds.jsonl", [row(i, p) for i, p in patches.items()])
    (folder / "results.json").write_text(json.dumps({"resolved": resolved}))
    return load_submission(folder)


def test_report_counts(tmp_path: Path) -> None:
    members = [
        member(
            tmp_path,
            "m1",
            {"i1": PATCH_A, "i2": PATCH_A, "i3": PATCH_A, "x9": PATCH_A},
            ["i1", "x9"],
        ),
        member(tmp_path, "m2", {"i1": PATCH_A_GIT, "i2": PATCH_B}, ["i1", "i2"]),
        member(
            tmp_path, "m3", {"i1": PATCH_B, "i3": ""}, ["i4"]
        ),  # resolved without a patch: inconsistent data
    ]
    universe = ["i1", "i2", "i3", "i4", "i5"]
    report = ensemble_report(members, universe, selection={"i1": "m3", "i2": "m2", "i3": "m1"})
    rows = {r.instance_id: r for r in report.instances}
    assert (rows["i1"].candidates, rows["i1"].distinct) == (3, 2)  # m1 and m2 are the same patch
    assert rows["i1"].random_expectation == pytest.approx(2 / 3)
    assert rows["i2"].random_expectation == pytest.approx(1 / 2)
    assert (rows["i3"].candidates, rows["i3"].random_expectation, rows["i3"].oracle) == (
        1,
        0.0,
        False,
    )
    assert (rows["i4"].candidates, rows["i4"].random_expectation, rows["i4"].oracle) == (
        0,
        0.0,
        True,
    )
    assert (rows["i5"].candidates, rows["i5"].oracle) == (0, False)
    assert [
        (m.name, m.patches, m.resolved, m.rate, m.resolved_without_patch) for m in report.members
    ] == [("m1", 3, 1, 0.2, 0), ("m2", 2, 2, 0.4, 0), ("m3", 1, 1, 0.2, 1)]
    assert (report.n_instances, report.candidates, report.distinct) == (5, 6, 5)
    assert (report.oracle_resolved, report.oracle_rate) == (3, 0.6)
    assert report.random_expected_resolved == pytest.approx(2 / 3 + 1 / 2)
    assert [rows[i].selected_status for i in ("i1", "i2", "i3", "i4")] == [
        LabelStatus.UNRESOLVED,
        LabelStatus.RESOLVED,
        LabelStatus.UNRESOLVED,
        None,
    ]
    assert (report.selected_resolved, report.selected_rate) == (1, 0.2)
    text = table_text(report_table(report))
    assert "oracle (any member resolved)" in text and "60.0%" in text and "selection" in text
    assert "i4" in table_text(instance_table(report))


def test_report_input_errors(tmp_path: Path) -> None:
    m1 = member(tmp_path, "m1", {"i1": PATCH_A}, [])
    with pytest.raises(DataError, match="empty"):
        ensemble_report([m1], [])
    with pytest.raises(DataError, match="unique"):
        ensemble_report([m1, m1], ["i1"])
    with pytest.raises(DataError, match="unknown members"):
        ensemble_report([m1], ["i1"], selection={"i1": "m2"})
    assert ensemble_report([m1], ["i1"]).selected_resolved is None


def test_unparsable_patches_are_counted_not_fatal(tmp_path: Path) -> None:
    broken = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1,3 +1,3 @@\n a\ngarbage\n"
    m1 = member(tmp_path, "m1", {"i1": broken}, [])
    m2 = member(tmp_path, "m2", {"i1": broken + "\n"}, [])
    report = ensemble_report([m1, m2], ["i1"])
    assert (report.unparsable_patches, report.distinct) == (2, 1)


# --- the real submissions --------------------------------------------------------------------


def _official(folder: Path) -> tuple[set[str], int]:
    """A submission's official resolved ids and its number of non-empty patches, read directly."""
    resolved = set(json.loads((folder / "results.json").read_text())["resolved"])
    patches = sum(
        1
        for line in (folder / "all_preds.jsonl").read_text(encoding="utf-8").splitlines()
        if (json.loads(line).get("model_patch") or "").strip()
    )
    return resolved, patches


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="shared data folder absent")
def test_real_verified_submissions_report() -> None:
    folders = [folder for folder in sorted(SUBMISSIONS.iterdir()) if folder.is_dir()]
    assert len(folders) == 4
    members = [load_submission(folder) for folder in folders]
    universe = instance_universe(members)
    assert len(universe) == 500
    report = ensemble_report(members, universe)
    official = {folder.name: _official(folder) for folder in folders}
    # Each member's figures are the official ones, read straight from its files.
    assert {m.name: m.resolved for m in report.members} == {
        name: len(resolved) for name, (resolved, _) in official.items()
    }
    assert {m.name: m.patches for m in report.members} == {
        name: patches for name, (_, patches) in official.items()
    }
    assert official["20251118_mini-swe-agent_gemini-3-pro"][1] == 499
    assert all(summary.rate == summary.resolved / 500 for summary in report.members)
    # Official grading counts codestory's empty prediction for django__django-12708 as resolved.
    assert {m.name: m.resolved_without_patch for m in report.members} == {
        "20250110_blackboxai_agent_v1.1": 0,
        "20241221_codestory_midwit_claude-3-5-sonnet_swe-search": 1,
        "20241213_devlo": 0,
        "20251118_mini-swe-agent_gemini-3-pro": 0,
    }
    [odd] = [r for r in report.instances if set(r.resolved) - set(r.with_patch)]
    assert odd.instance_id == "django__django-12708"
    # The figures: union 410/500 (82.0%), best member 371 (74.2%).
    union = set().union(*(resolved for resolved, _ in official.values()))
    assert report.oracle_resolved == len(union) == 410
    assert report.oracle_rate == 0.82
    best = report.best_member
    assert best is not None and best.name == "20251118_mini-swe-agent_gemini-3-pro"
    assert (best.resolved, best.rate) == (371, 0.742)
    rates = [m.rate for m in report.members]
    assert min(rates) <= report.random_rate <= max(rates)
    assert report.candidates == sum(p for _, p in official.values()) == 1933
    assert report.unparsable_patches == 0
    assert report.distinct <= report.candidates
    text = table_text(report_table(report))
    [best_line] = [line for line in text.splitlines() if "best member" in line]
    assert "371" in best_line and "74.2%" in best_line
    for figure in ("410", "82.0%", "371", "74.2%", "1933 candidate patches"):
        assert figure in text
    print()
    print(text)


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="shared data folder absent")
def test_cli_ensemble_report_over_the_four_submissions() -> None:
    from typer.testing import CliRunner

    from codemonkeys.cli.main import build_app

    folders = [folder for folder in sorted(SUBMISSIONS.iterdir()) if folder.is_dir()]
    args = ["ensemble", "--report"]
    for folder in folders:
        args += ["--submission", str(folder)]
    for folder in folders:
        args += ["--labels", str(folder / "results.json")]
    app = build_app()
    result = CliRunner().invoke(app, args, terminal_width=160)
    assert result.exit_code == 0, result.output
    [oracle] = [line for line in result.output.splitlines() if "oracle (any member resolved)" in line]
    assert "410" in oracle and "82.0%" in oracle
    [best] = [line for line in result.output.splitlines() if "best member" in line]
    assert "371" in best and "74.2%" in best
    payload = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert payload["oracle_resolved"] == 410 and payload["totals"]["oracle_rate"] == 0.82
    assert max(m["resolved"] for m in payload["members"]) == 371


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="shared data folder absent")
def test_real_submissions_over_the_dev_universe() -> None:
    dev_ids = [
        json.loads(line)["instance_id"]
        for line in (SHARED / "swebench" / "verified_dev.jsonl").read_text().splitlines()
    ]
    assert len(dev_ids) == 113
    members = [
        load_submission(folder) for folder in sorted(SUBMISSIONS.iterdir()) if folder.is_dir()
    ]
    report = ensemble_report(members, dev_ids)
    assert report.n_instances == 113
    for folder, summary in zip(sorted(SUBMISSIONS.iterdir()), report.members, strict=True):
        official = set(json.loads((folder / "results.json").read_text())["resolved"])
        assert summary.resolved == len(official & set(dev_ids))
        assert summary.rate == summary.resolved / 113
