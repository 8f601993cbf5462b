"""File enumeration: the filter, reading a commit from git, token counts cached by blob."""

from __future__ import annotations

import shutil
from pathlib import Path

import git
import pytest
from context_support import LIBRARY, commit_files, counting_tokenizer, make_repo

from codemonkeys.config import ContextConfig
from codemonkeys.context.files import (
    MISSING,
    NOT_TEXT,
    TOO_LARGE,
    FileFilter,
    MemoryTokenCache,
    SkippedFile,
    enumerate_files,
    is_test_module,
)
from codemonkeys.context.gitread import GitObjects
from codemonkeys.errors import RepoError
from codemonkeys.store import RunStore

LISTING = [
    "setup.py",
    "django/db/models/query.py",
    "django/test/testcases.py",  # library code named test/: no test module inside
    "django/test/client.py",
    "tests/runtests.py",
    "tests/test_sqlite.py",
    "tests/queries/tests.py",
    "tests/queries/models.py",
    "astropy/modeling/separable.py",
    "astropy/modeling/tests/test_separable.py",
    "astropy/modeling/tests/helpers.py",
    "astropy/io/tests/mixins.py",  # a "tests" dir without test modules: library helpers
    "testing/test_assertion.py",
    "testing/plugins_integration/readme.py",
    "src/_pytest/assertion/rewrite.py",
    "docs/conf.py",
    "README.rst",
    "pkg/contest.py",
]


def test_default_filter_excludes_test_dirs_at_any_depth_and_keeps_library_test_packages() -> None:
    selected = FileFilter.from_config(ContextConfig()).select(LISTING)
    assert selected == [
        "setup.py",
        "django/db/models/query.py",
        "django/test/testcases.py",
        "django/test/client.py",
        "astropy/modeling/separable.py",
        "astropy/io/tests/mixins.py",
        "src/_pytest/assertion/rewrite.py",
        "docs/conf.py",
        "pkg/contest.py",
    ]


def test_strict_filter_drops_every_directory_named_like_a_test_dir() -> None:
    config = ContextConfig(keep_library_test_dirs=False)
    selected = FileFilter.from_config(config).select(LISTING)
    assert "django/test/testcases.py" not in selected
    assert "astropy/io/tests/mixins.py" not in selected
    assert "django/db/models/query.py" in selected


def test_test_dirs_can_be_kept_and_globs_and_extensions_apply() -> None:
    keep_all = FileFilter.from_config(ContextConfig(exclude_test_dirs=False)).select(LISTING)
    assert "astropy/modeling/tests/test_separable.py" in keep_all
    assert "README.rst" not in keep_all
    only_django = FileFilter.from_config(
        ContextConfig(include_globs=["django/*"], exclude_globs=["*/client.py"])
    )
    assert only_django.select(LISTING) == ["django/db/models/query.py", "django/test/testcases.py"]
    every_extension = FileFilter.from_config(ContextConfig(extensions=[], exclude_globs=["*.py"]))
    assert every_extension.select(LISTING) == ["README.rst"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_x.py", True),
        ("x_test.py", True),
        ("x_tests.py", True),
        ("tests.py", True),
        ("conftest.py", True),
        ("testing.py", False),
        ("contest.py", False),
        ("helpers.py", False),
        ("test_x.txt", False),
    ],
)
def test_test_module_names(name: str, expected: bool) -> None:
    assert is_test_module(name) is expected


def test_enumerate_reads_the_commit_and_records_skipped_files(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    (tmp_path / "repo" / "untracked.py").write_text("x = 1\n")  # not committed: never read
    tokenizer, seen = counting_tokenizer()
    with GitObjects(tmp_path / "repo") as objects:
        listing = enumerate_files(
            objects, commit, FileFilter(), tokenizer, MemoryTokenCache(), max_file_tokens=1000
        )
    assert [c.path for c in listing.candidates] == [
        "docs/conf.py",
        "pkg/__init__.py",
        "pkg/dates.py",
        "pkg/formats.py",
        "pkg/test/helpers.py",
        "pkg/util.py",
    ]
    dates = next(c for c in listing.candidates if c.path == "pkg/dates.py")
    assert dates.tokens == len(str(LIBRARY["pkg/dates.py"]).split())
    assert dates.blob == git.Repo(tmp_path / "repo").commit(commit).tree["pkg/dates.py"].hexsha
    skipped = {s.path: (s.reason, s.tokens) for s in listing.skipped}
    assert skipped == {"pkg/blob.py": (NOT_TEXT, None), "pkg/huge.py": (TOO_LARGE, 1604)}
    assert listing.listed == len(LIBRARY)
    assert len(seen) == 7  # every text candidate (and the huge one) tokenized once


def test_unchanged_files_are_tokenized_once_across_commits_and_store_reopens(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo)
    second = commit_files(
        repo, {"pkg/util.py": "def clamp(x):\n    return x\n", "pkg/new.py": "A = 1\n"}
    )
    tokenizer, seen = counting_tokenizer()
    with RunStore.open(tmp_path / "run") as store, GitObjects(repo) as objects:
        one = enumerate_files(objects, first, FileFilter(), tokenizer, store, max_file_tokens=1000)
        before = len(seen)
        two = enumerate_files(objects, second, FileFilter(), tokenizer, store, max_file_tokens=1000)
    assert one.tokenized == 8  # 6 candidates, the huge file, the binary one
    assert two.tokenized == 2 and len(seen) - before == 2  # only the changed and the new file
    assert "pkg/new.py" in [c.path for c in two.candidates]
    with RunStore.open(tmp_path / "run") as store, GitObjects(repo) as objects:
        three = enumerate_files(
            objects, second, FileFilter(), tokenizer, store, max_file_tokens=1000
        )
    assert three.tokenized == 0
    assert three.candidates == two.candidates


def test_bare_mirror_without_config_file_is_readable(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    git.Repo.clone_from(tmp_path / "repo", tmp_path / "mirror", bare=True).close()
    (tmp_path / "mirror" / "config").unlink()  # like the stored mirrors
    with GitObjects(tmp_path / "mirror") as objects:
        assert objects.resolve(commit[:10]) == commit
        entries = objects.list_files(commit)
        dates = next(e for e in entries if e.path == "pkg/dates.py")
        assert objects.read_blob(dates.blob).decode() == LIBRARY["pkg/dates.py"]


def test_missing_repo_commit_and_blob_are_repo_errors(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    with pytest.raises(RepoError, match="does not exist"):
        GitObjects(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepoError, match="not a git repository"):
        GitObjects(tmp_path / "plain")
    with GitObjects(tmp_path / "repo") as objects:
        with pytest.raises(RepoError, match="is not in"):
            objects.list_files("0" * 40)
        with pytest.raises(RepoError, match="cannot read blob"):
            objects.read_blob("1" * 40)
    shutil.rmtree(tmp_path / "repo")


def test_a_blob_missing_from_the_mirror_is_skipped_and_recorded(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    git.Repo.clone_from(tmp_path / "repo", tmp_path / "mirror", bare=True).close()
    blob = git.Repo(tmp_path / "repo").commit(commit).tree["pkg/util.py"].hexsha
    (
        tmp_path / "mirror" / "objects" / blob[:2] / blob[2:]
    ).unlink()  # loose objects, as cloned locally
    tokenizer, _ = counting_tokenizer()
    with GitObjects(tmp_path / "mirror") as objects:
        listing = enumerate_files(
            objects, commit, FileFilter(), tokenizer, MemoryTokenCache(), max_file_tokens=1000
        )
    assert "pkg/util.py" not in [c.path for c in listing.candidates]
    assert [s for s in listing.skipped if s.path == "pkg/util.py"] == [
        SkippedFile("pkg/util.py", blob, MISSING)
    ]
