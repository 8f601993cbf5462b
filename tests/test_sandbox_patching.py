"""Which paths a patch touches: what apply_patch snapshots and refuses."""

from __future__ import annotations

import pytest

from codemonkeys.errors import EditApplyError
from codemonkeys.sandbox.patching import touched_paths


def test_git_style_patch_with_new_deleted_and_renamed_files() -> None:
    patch = (
        "diff --git a/src/mod.py b/src/mod.py\n"
        "index 1..2 100644\n--- a/src/mod.py\n+++ b/src/mod.py\n@@ -1 +1 @@\n-a\n+b\n"
        "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+x\n"
        "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        "diff --git a/old name.py b/new name.py\nsimilarity index 100%\nrename from old name.py\nrename to new name.py\n"
    )
    assert touched_paths(patch) == [
        "src/mod.py",
        "new.txt",
        "gone.txt",
        "old name.py",
        "new name.py",
    ]


def test_plain_unified_diff_with_timestamps() -> None:
    patch = "--- a/pkg/x.py\t2024-01-01 00:00:00\n+++ b/pkg/x.py\t2024-01-02 00:00:00\n@@ -1 +1 @@\n-a\n+b\n"
    assert touched_paths(patch) == ["pkg/x.py"]


def test_quoted_names_are_unquoted() -> None:
    patch = 'diff --git "a/caf\\303\\251.py" "b/caf\\303\\251.py"\n--- "a/caf\\303\\251.py"\n+++ "b/caf\\303\\251.py"\n'
    assert touched_paths(patch) == ["café.py"]


@pytest.mark.parametrize(
    "name",
    ["a/../../etc/passwd", "a//etc/passwd", "a/.git/config", "a/src/../../x"],
)
def test_paths_leaving_the_repository_are_refused(name: str) -> None:
    with pytest.raises(EditApplyError):
        touched_paths(f"--- {name}\n+++ {name}\n@@ -1 +1 @@\n-a\n+b\n")


def test_text_without_headers_names_nothing() -> None:
    assert touched_paths("just some words\n+ not a header\n") == []
