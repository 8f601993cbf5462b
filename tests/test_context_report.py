"""Context recall: gold patches' edited files traced through the stage's stored results."""

from __future__ import annotations

from pathlib import Path

import pytest
from context_support import (
    ISSUE,
    LIBRARY,
    Models,
    make_repo,
    make_stage,
    ranking_in_order,
    relevance_by_path,
)

from codemonkeys.context.report import context_recall, edited_files
from codemonkeys.context.stage import PACK_OVERHEAD_TOKENS, ContextStage, ContextTask
from codemonkeys.errors import DataError
from codemonkeys.llm.scripted import ScriptedModel
from codemonkeys.store import RunStore


def test_edited_files_of_a_gold_patch() -> None:
    patch = (
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
        "diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+z\n"
        "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\n--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-w\n"
    )
    assert edited_files(patch) == ["a.py", "gone.py"]
    with pytest.raises(DataError):
        edited_files("diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1,5 +1,5 @@\n-x\n")


async def test_context_recall_traces_gold_files_through_the_stage(
    tmp_path: Path, run_store: RunStore
) -> None:
    commit = make_repo(tmp_path / "repo")
    models = Models(
        run_store,
        ScriptedModel(relevance_by_path({"pkg/dates.py": "d", "pkg/formats.py": "f"})),
        ScriptedModel(ranking_in_order(["pkg/formats.py"])),
    )
    formats_only = len(str(LIBRARY["pkg/formats.py"]).split()) + PACK_OVERHEAD_TOKENS
    stage: ContextStage = make_stage(run_store, models, budget_tokens=formats_only)
    for instance_id in ("hit", "not-packed", "not-relevant", "not-read"):
        await stage.run(ContextTask(instance_id, ISSUE, tmp_path / "repo", commit))

    def patch(path: str) -> str:
        return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"

    report = context_recall(
        run_store,
        [
            ("hit", patch("pkg/formats.py")),
            ("not-packed", patch("pkg/dates.py") + patch("pkg/formats.py")),
            ("not-relevant", patch("pkg/util.py")),
            ("not-read", patch("pkg/tests/test_dates.py")),
            ("never-run", patch("pkg/util.py")),
            ("no-gold", ""),
        ],
    )
    rows = {row.instance_id: row for row in report.rows}
    assert [r.hit for r in report.rows] == [True, False, False, False]
    assert rows["not-packed"].relevant == ("pkg/dates.py", "pkg/formats.py")
    assert rows["not-packed"].packed == ("pkg/formats.py",)
    assert rows["not-relevant"].read == ("pkg/util.py",) and rows["not-relevant"].relevant == ()
    assert rows["not-read"].read == ()
    assert report.missing == ("never-run",)
    assert report.recall == 0.25 and report.relevance_recall == 0.5 and report.read_recall == 0.75
