"""bench/grading_fidelity.py's bookkeeping: agreement, and each disagreement's cause."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from script_support import load_script

BENCH = Path(__file__).resolve().parents[1] / "bench" / "grading_fidelity.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(BENCH)


def _grade(status: str, official: bool | None, **extra: Any) -> dict[str, Any]:
    return {"status": status, "official": official, **extra}


def test_agreement_counts_and_causes(bench: ModuleType) -> None:
    report = {
        "a__a-1": {"repo": "a/a", "version": "1", "done": True, "grades": {
            "gold": _grade("resolved", None),
            "s1": _grade("resolved", True, setup_hunks_dropped=["setup.py: -1 +1"]),
            "s2": _grade("unresolved", False),
            "s3": _grade("unresolved", True, patch_applied=False, setup_hunks_dropped=[]),
        }},
        "a__a-2": {"repo": "a/a", "version": "1", "done": True, "grades": {
            "gold": _grade("unresolved", None, needs_network=True, cause="PASS_TO_PASS 2/5 pass"),
            "s1": _grade("unresolved", True),
        }},
        "b__b-1": {"repo": "b/b", "version": "2", "done": True, "grades": {
            "gold": _grade("unresolved", None, cause="PASS_TO_PASS 680/767 pass"),
            "s1": _grade("unresolved", True),
            "s2": _grade("error", False, cause="docker died"),
            "s3": _grade("unresolved", True, flaky=True),
            "s4": _grade("error", False, cause="tests timed out after 1800 s"),  # an older report's timeout
        }},
    }
    summary = bench.summarize(report)
    a, b, total = summary["repos"]["a/a"], summary["repos"]["b/b"], summary["total"]
    assert (a["instances"], a["graded"], a["agree"], a["network"], a["gold_resolved"], a["setup_hunks"]) == (2, 4, 2, 1, 1, 1)
    assert (b["graded"], b["agree"], b["network"]) == (4, 1, 0)
    assert (total["graded"], total["agree"], total["network"]) == (8, 3, 1)
    causes = {(d["instance"], d["submission"]): d["cause"] for r in summary["repos"].values() for d in r["disagreements"]}
    assert causes[("a__a-1", "s3")].startswith("patch does not apply")
    assert causes[("a__a-2", "s1")].startswith("network") and "gold patch fails here too" in causes[("a__a-2", "s1")]
    assert causes[("b__b-1", "s1")].startswith("environment not faithful") and "680/767" in causes[("b__b-1", "s1")]
    assert causes[("b__b-1", "s2")].startswith("infra")  # an error never counts as agreement
    assert causes[("b__b-1", "s3")].startswith("flaky")


def test_instances_go_round_robin_over_repos_largest_version_first(bench: ModuleType) -> None:
    def make(iid: str, repo: str, version: str) -> Any:
        return type("I", (), {"instance_id": iid, "repo": repo, "version": version})()

    rows = [make("d1", "d/d", "1"), make("d2", "d/d", "2"), make("d3", "d/d", "2"), make("s1", "s/s", "9")]
    assert [i.instance_id for i in bench.order(rows)] == ["d2", "s1", "d3", "d1"]
