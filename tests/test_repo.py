"""Materializing a repository at its base commit, with nothing of its future."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codemonkeys.errors import RepoError
from codemonkeys.swebench.repo import (
    RepoSource,
    check_no_future,
    commit_date,
    lacking_files,
    materialize,
    read_file_at,
)
from codemonkeys.testing.fake_swebench import FUTURE_MARKER, make_fake_repo


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(params=[True, False], ids=["bare-mirror", "worktree-mirror"])
def fake(request: pytest.FixtureRequest, tmp_path: Path):
    return make_fake_repo(tmp_path, bare=request.param)


def test_materialized_repo_has_the_past_and_no_future(fake, tmp_path: Path) -> None:
    source = RepoSource(mirror_dir=fake.mirrors).ensure_commit("acme/calc", fake.base_commit)
    dest = materialize(source, fake.base_commit, tmp_path / "testbed")
    assert git(dest, "rev-parse", "HEAD") == fake.base_commit
    assert git(dest, "status", "--porcelain") == ""
    assert (dest / "calc" / "__init__.py").is_file() and not (dest / "FUTURE.md").exists()
    # The ancestry and the tags that point into it stay (setuptools_scm needs them)...
    assert git(dest, "rev-list", "--count", "HEAD") == "2"
    assert sorted(git(dest, "tag").split()) == ["v0.0.9", "v0.1"]
    assert git(dest, "describe", "--tags") == f"v0.1-1-g{fake.base_commit[:7]}"
    # ...and nothing later is reachable or even stored.
    assert git(dest, "remote") == ""
    assert git(dest, "branch", "--all", "--format=%(refname)") == "refs/heads/main"
    assert FUTURE_MARKER not in git(dest, "log", "--all", "--format=%s")
    objects = subprocess.run(["git", "cat-file", "-e", fake.future_commit], cwd=dest, capture_output=True)
    assert objects.returncode != 0
    assert not (dest / ".git" / "FETCH_HEAD").exists()
    assert git(dest, "reflog", "--all") == ""


def test_source_helpers_read_the_environment_commit(fake) -> None:
    source = RepoSource(mirror_dir=fake.mirrors).git_dir("acme/calc")
    assert "setup(name=\"calc\"" in read_file_at(source, fake.env_commit, "setup.py")
    with pytest.raises(RepoError, match="README.md does not exist"):
        read_file_at(source, fake.env_commit, "README.md")
    assert commit_date(source, fake.env_commit).isoformat() == "2023-01-02T10:00:00+00:00"


def test_missing_mirror_commit_and_busy_destination_are_repo_errors(fake, tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="no mirror of other/repo"):
        RepoSource(mirror_dir=fake.mirrors).git_dir("other/repo")
    with pytest.raises(RepoError, match="is not in"):
        RepoSource(mirror_dir=fake.mirrors).ensure_commit("acme/calc", "0" * 40)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(RepoError, match="not empty"):
        materialize(fake.path, fake.base_commit, busy)


def test_check_no_future_catches_a_remote_and_a_later_ref(fake, tmp_path: Path) -> None:
    dest = materialize(fake.path, fake.base_commit, tmp_path / "t1")
    git(dest, "remote", "add", "origin", str(fake.path))
    with pytest.raises(RepoError, match="remotes"):
        check_no_future(dest, fake.base_commit)
    dest2 = materialize(fake.path, fake.env_commit, tmp_path / "t2")
    git(dest2, "fetch", "-q", str(fake.path), f"{fake.base_commit}:refs/heads/later")
    with pytest.raises(RepoError, match="refs beyond"):
        check_no_future(dest2, fake.env_commit)


def test_github_source_clones_into_the_cache(fake, tmp_path: Path) -> None:
    # A file URL stands in for GitHub: the clone-then-materialize path is the same.
    source = RepoSource(cache_dir=tmp_path / "cache", github_url=f"file://{fake.mirrors}/{{repo}}")
    local = source.ensure_commit("acme__calc", fake.base_commit)
    assert local == tmp_path / "cache" / "acme__calc.git"
    dest = materialize(local, fake.base_commit, tmp_path / "testbed")
    assert git(dest, "rev-parse", "HEAD") == fake.base_commit
    assert git(dest, "remote") == ""


def _drop_object(repo: Path, oid: str) -> None:
    """Make ``repo`` lack one loose object, as pruned mirrors do."""
    path = repo / ("objects" if (repo / "objects").is_dir() else ".git/objects") / oid[:2] / oid[2:]
    path.unlink()


def test_a_mirror_lacking_old_objects_gives_a_shallow_past(tmp_path: Path) -> None:
    fake = make_fake_repo(tmp_path)
    source = fake.path
    old_blob = git(source, "rev-parse", f"{fake.env_commit}:calc/__init__.py")
    # A later commit replaces the file, so only the old history needs the blob.
    work = tmp_path / "w"
    git(tmp_path, "clone", "-q", str(source), str(work))
    (work / "calc" / "__init__.py").write_text("VERSION = 2\n")
    git(work, "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qam", "rewrite")
    git(work, "tag", "v0.1.5")
    (work / "NEWS").write_text("news\n")
    git(work, "add", "NEWS")
    git(work, "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "news")
    new_base = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(source), "HEAD:refs/heads/main", "--tags")
    _drop_object(source, old_blob)
    dest = materialize(source, new_base, tmp_path / "testbed")
    assert git(dest, "rev-parse", "HEAD") == new_base
    assert (dest / ".git" / "shallow").is_file()
    assert "v0.1.5" in git(dest, "tag").split()
    assert subprocess.run(["git", "cat-file", "-e", old_blob], cwd=dest, capture_output=True).returncode != 0
    check_no_future(dest, new_base)
    assert lacking_files(source, new_base) == []
    assert lacking_files(source, fake.base_commit) == ["calc/__init__.py"]
    # When the base commit itself needs the lost object, nothing can be done: say which file.
    with pytest.raises(RepoError, match=r"lacks 1 file\(s\) of commit .*calc/__init__.py"):
        materialize(source, fake.base_commit, tmp_path / "testbed2")
