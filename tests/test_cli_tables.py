"""Tables printed by ``costs``, ``status`` and ``ensemble --report`` at 80 columns, and their --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.cli.main import main
from codemonkeys.store import RunStore
from codemonkeys.store.records import CallRecord, TrajectoryRecord

SUBMISSIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "submissions" / "verified"
QWEN = "openai-compatible:Qwen/Qwen2.5-Coder-32B-Instruct@http://localhost:8000/v1"
SONNET = "anthropic:claude-sonnet-4-5"


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rich Console the commands make renders 80 columns wide."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "50")


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    with RunStore.open(run) as store:
        for n, iid in enumerate(["django__django-11099", "sympy__sympy-20590", "scikit-learn__scikit-learn-14894"]):
            store.add_instance(iid, iid.split("__")[0], {})
            for stage, model, tokens in (("relevance", QWEN, 2_345_678), ("ranking", SONNET, 45_678), ("editing", SONNET, 987_654)):
                store.record_call(CallRecord(stage, iid, f"{stage}-0", f"{iid}{stage}", model, input_tokens=tokens,
                                             output_tokens=tokens // 10, cache_read_tokens=tokens // 2, cache_write_tokens=tokens // 3,
                                             cost_usd=None if model == QWEN else tokens * 3e-6, latency_s=1.0, ts=1.0))
            for i, (kind, status) in enumerate((("testing", "done"), ("editing", "done"), ("editing", "failed"))):
                store.save_trajectory(TrajectoryRecord(f"{iid}/{kind}/{i}", iid, kind, i, status))
            store.put_result(iid, "plan", "generation", {"trajectories": 10, "max_iterations": 8, "degraded": n == 1})
            if n == 2:
                store.set_instance_state(iid, "generation", "failed", "infra", "sandbox died: " + "docker said no " * 12)
            else:
                store.set_instance_state(iid, "done", "done")
                store.put_selection(iid, f"{iid}/editing/1", "selection_trajectory", {})
    return run


def _lines(text: str) -> list[str]:
    lines = text.rstrip("\n").splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    assert "…" not in text  # nothing cut off
    return lines


def _row(lines: list[str], start: str) -> list[str]:
    return next(line for line in lines if line.startswith(start)).split()


def test_costs_at_80_columns_with_the_total_in_its_columns(tmp_path: Path, narrow: None, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    main(["costs", str(run)])
    lines = _lines(capsys.readouterr().out)
    header = _row(lines, "stage")
    assert header == ["stage", "model", "calls", "hit", "err", "input", "output", "c.read", "c.write", "$"]
    total = _row(lines, "total")
    assert total == ["total", "9", "0", "0", "10.14M", "1.01M", "5.07M", "3.38M", "9.30*"]
    assert _row(lines, "editing")[-8:] == ["3", "0", "0", "2.96M", "296.3k", "1.48M", "987.7k", "8.89"]
    assert any("unpriced" in line for line in lines)
    main(["costs", str(run), "--by", "instance"])
    lines = _lines(capsys.readouterr().out)
    assert _row(lines, "total")[1:5] == ["9", "0", "0", "10.14M"]

    main(["costs", str(run), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["total"]["input_tokens"] == 3 * (2_345_678 + 45_678 + 987_654)
    assert {row["model"] for row in payload["rows"]} == {QWEN, SONNET}  # full model strings in JSON


def test_status_at_80_columns_with_failures_below(tmp_path: Path, narrow: None, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    main(["status", str(run)])
    lines = _lines(capsys.readouterr().out)
    assert _row(lines, "instance") == ["instance", "state", "plan", "trajs", "cands", "selection"]
    assert _row(lines, "django__django-11099") == ["django__django-11099", "done", "10x8", "edit", "1/2", "0", "selection"]
    failed = next(i for i, line in enumerate(lines) if line.startswith("scikit-learn__scikit-learn-14894 "))
    assert lines[failed].split()[1:3] == ["generation", "10x8"] and lines[failed + 1].split()[0] == "failed*"
    assert _row(lines, "django__django-11099")[-1] == "selection"  # "selection trajectory", wrapped at the space
    assert any(line.startswith("scikit-learn__scikit-learn-14894: infra: sandbox died") for line in lines)
    main(["status", str(run), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert {r["instance_id"]: r["status"] for r in rows}["scikit-learn__scikit-learn-14894"] == "failed"


@pytest.mark.skipif(not SUBMISSIONS.is_dir(), reason="shared data folder absent")
def test_ensemble_report_at_80_columns(narrow: None, capsys: pytest.CaptureFixture[str]) -> None:
    names = sorted(p.name for p in SUBMISSIONS.iterdir())
    args = ["ensemble", "--report"]
    args += [a for name in names for a in ("--submission", str(SUBMISSIONS / name / "all_preds.jsonl"))]
    args += [a for name in names for a in ("--labels", str(SUBMISSIONS / name / "results.json"))]
    main(args)
    lines = _lines(capsys.readouterr().out)
    assert _row(lines, "#") == ["#", "member", "patches", "resolved", "%", "of", "500"]
    assert any(line.split()[:4] == ["oracle", "(any", "member", "resolved)"] for line in lines)
    assert any(line.split() == ["best", "member", "(#4)", "371", "74.2%"] for line in lines)  # in its columns
    assert _row(lines, "astropy__astropy-12907")[:7] == ["astropy__astropy-12907", "4", "4", "1", "2", "3", "4"]
    header = _row(lines, "instance")
    assert header == ["instance", "cands", "dist", "resolved", "by", "p(rand)", "selected"]


def test_selection_report_at_80_columns(tmp_path: Path, narrow: None, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    with RunStore.open(run) as store:
        for iid in ("django__django-11099", "sympy__sympy-20590"):
            for n in range(3):
                store.add_candidate(f"{iid}/editing/{n}", iid, "generation", f"diff {n}\n", f"h{n}", {})
    main(["select", str(run), "--report"])
    lines = _lines(capsys.readouterr().out)
    assert _row(lines, "instance") == ["instance", "cands", "dist", "tests", "counted", "votes", "method", "selected"]
    assert _row(lines, "django__django-11099")[-2:] == ["selection", "editing/1"]  # "selection trajectory" wraps at the space
