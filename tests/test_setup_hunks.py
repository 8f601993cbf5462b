"""Setup-hunk dropping: synthetic rules, and two real leaderboard patches against their real setup commits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from codemonkeys.env.setup_hunks import drop_setup_hunks

# ../shared/data beside the checkout (a worktree sits one level deeper), and the fetched mirrors beside it.
_UP = [Path(__file__).resolve().parents[n] for n in (2, 3)]
DATA = next((p / "shared" / "data" / "submissions" / "verified" for p in _UP if (p / "shared" / "data").is_dir()), _UP[0] / "shared")
MIRRORS = next((p / ".mirror" for p in _UP if (p / ".mirror").is_dir()), _UP[0] / ".mirror")
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]

BASE = "[build]\nrequires = [\"setuptools\",\n  \"wheel\"]\nname = \"x\"\nversion = 1\n"
SETUP = (
    "diff --git a/pyproject.toml b/pyproject.toml\n--- a/pyproject.toml\n+++ b/pyproject.toml\n"
    "@@ -1,3 +1,3 @@\n [build]\n-requires = [\"setuptools\",\n+requires = [\"setuptools==68.0.0\",\n   \"wheel\"]\n"
)


def _patch(*hunks: str) -> str:
    return "diff --git a/pyproject.toml b/pyproject.toml\n--- a/pyproject.toml\n+++ b/pyproject.toml\n" + "".join(hunks)


CODE = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,1 +1,1 @@\n-a = 1\n+a = 2\n"


def test_a_hunk_equal_to_the_setup_is_dropped_and_the_rest_kept() -> None:
    patch = _patch("@@ -1,3 +1,3 @@\n [build]\n-requires = [\"setuptools\",\n+requires = [\"setuptools==68.0.0\",\n   \"wheel\"]\n") + CODE
    result = drop_setup_hunks(patch, SETUP)
    assert result.count == 1 and result.dropped[0].startswith("pyproject.toml")
    assert "pyproject.toml" not in result.patch  # its only hunk went, so the file went
    assert "+a = 2" in result.patch


def test_a_setup_block_inside_a_larger_hunk_becomes_context() -> None:
    hunk = (
        "@@ -1,5 +1,5 @@\n [build]\n-requires = [\"setuptools\",\n+requires = [\"setuptools==68.0.0\",\n"
        "   \"wheel\"]\n name = \"x\"\n-version = 1\n+version = 2\n"
    )
    result = drop_setup_hunks(_patch(hunk), SETUP)
    assert result.count == 1
    assert '+requires' not in result.patch and ' requires = ["setuptools==68.0.0",' in result.patch
    assert "-version = 1\n+version = 2" in result.patch
    assert "@@ -1,5 +1,5 @@" in result.patch  # counts recomputed: 5 context/removed, 5 context/added


def test_changes_that_differ_from_the_setup_are_kept() -> None:
    other = _patch("@@ -1,3 +1,3 @@\n [build]\n-requires = [\"setuptools\",\n+requires = [\"setuptools==69.0.0\",\n   \"wheel\"]\n")
    assert drop_setup_hunks(other, SETUP).patch == other and drop_setup_hunks(other, SETUP).count == 0
    # Same lines in another file are not the setup's.
    moved = other.replace("pyproject.toml", "other.toml").replace("69.0.0", "68.0.0")
    assert drop_setup_hunks(moved, SETUP).count == 0
    # No setup changes, or a patch that does not parse: unchanged.
    assert drop_setup_hunks(CODE, "").patch == CODE
    assert drop_setup_hunks("not a diff", SETUP).patch == "not a diff"


def _real(submission: str, instance_id: str) -> str:
    path = DATA / submission / "all_preds.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["instance_id"] == instance_id:
            return str(row["model_patch"])
    raise AssertionError(f"{instance_id} not in {path}")


def _setup_repo(tmp: Path, mirror: Path, patch: str, files: list[str], pre_install: list[str]) -> Path:
    """A repo holding ``files`` as they were before ``patch`` (blobs from its index lines), then the setup commit."""
    if not (mirror / "HEAD").is_file():
        pytest.skip(f"no mirror at {mirror} (search tool: fetch github:swe-bench/...)")
    repo = tmp / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    lines = patch.splitlines()
    for name in files:
        header = lines.index(f"diff --git a/{name} b/{name}")
        blob = lines[header + 1].split()[1].split("..")[0]
        text = subprocess.run(["git", "--git-dir", str(mirror), "cat-file", "-p", blob], capture_output=True, check=True).stdout
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(text)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "base"], cwd=repo, check=True)
    for command in pre_install:
        subprocess.run(["bash", "-c", command], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qam", "SWE-bench"], cwd=repo, check=True)
    return repo


def _applies(repo: Path, patch: str, files: list[str]) -> bool:
    only = [arg for name in files for arg in ("--include", name)]
    proc = subprocess.run(["git", "apply", "--check", *only, "-"], cwd=repo, input=patch.encode(), capture_output=True)
    return proc.returncode == 0


@pytest.mark.parametrize(
    ("submission", "instance_id", "repo", "version", "files", "expected"),
    [
        ("20241213_devlo", "astropy__astropy-14309", "astropy/astropy", "5.1", ["pyproject.toml"], 1),
        ("20251118_mini-swe-agent_gemini-3-pro", "sphinx-doc__sphinx-7910", "sphinx-doc/sphinx", "3.5", ["setup.py", "tox.ini"], 5),
    ],
)
def test_real_patches_apply_once_their_setup_hunks_are_dropped(
    tmp_path: Path, submission: str, instance_id: str, repo: str, version: str, files: list[str], expected: int
) -> None:
    from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS

    patch = _real(submission, instance_id)
    pre_install = MAP_REPO_VERSION_TO_SPECS[repo][version]["pre_install"]
    git_repo = _setup_repo(tmp_path, MIRRORS / f"swe-bench+{repo.replace('/', '__')}" / "repo", patch, files, pre_install)
    setup_diff = subprocess.run(["git", "diff", "HEAD~1", "HEAD"], cwd=git_repo, capture_output=True, text=True, check=True).stdout
    assert not _applies(git_repo, patch, files)  # as the issue saw: the setup hunks conflict
    result = drop_setup_hunks(patch, setup_diff)
    assert result.count == expected, result.dropped
    assert all(f"diff --git a/{name}" not in result.patch for name in files)  # nothing but setup changes there
    assert result.patch.count("diff --git") == patch.count("diff --git") - len(files)


class _SetupSandbox:
    """A sandbox whose /testbed HEAD is a setup commit making SETUP; records the patches applied."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    async def __aenter__(self) -> _SetupSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def exec(self, argv: list[str], **_: object) -> object:
        from codemonkeys.sandbox.base import ExecResult

        if "setup@swebench.config" in " ".join(argv):
            return ExecResult(0, SETUP, 0.01)
        return ExecResult(0, "ran\n", 0.01)

    async def apply_patch(self, patch: str) -> None:
        self.applied.append(patch)

    async def reset(self) -> None:
        pass


class _Factory:
    def __init__(self) -> None:
        self.made = _SetupSandbox()

    def sandbox(self, env: object) -> _SetupSandbox:
        return self.made


async def test_the_test_runner_drops_setup_hunks_and_says_so(tmp_path: Path) -> None:
    from codemonkeys.execution import SandboxPool, TestRunner
    from codemonkeys.sandbox.base import EnvironmentRef
    from codemonkeys.store import RunStore

    factory = _Factory()
    patch = _patch("@@ -1,3 +1,3 @@\n [build]\n-requires = [\"setuptools\",\n+requires = [\"setuptools==68.0.0\",\n   \"wheel\"]\n") + CODE
    async with SandboxPool(factory, EnvironmentRef(key="k", image="i"), 1) as pool:  # type: ignore[arg-type]
        runner = TestRunner(pool, RunStore.open(tmp_path), timeout_s=30)
        run = await runner.run(patch, "print(1)\n")
    assert factory.made.applied and "pyproject.toml" not in factory.made.applied[0] and "+a = 2" in factory.made.applied[0]
    assert run.output.startswith("[codemonkeys] dropped 1 hunk(s) equal to the image's setup commit") and "ran" in run.output
