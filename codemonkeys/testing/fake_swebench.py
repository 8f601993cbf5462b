"""A tiny SWE-bench-shaped repository and instance, made with real git, for tests.

The repo ``acme/calc`` has a bug (``divide`` by zero returns 0 instead of
raising), a history with tags, and a commit *after* the base commit that must
never reach a materialized copy. :func:`make_fake_instance` returns the
instance row (gold patch, test patch, FAIL_TO_PASS/PASS_TO_PASS) and the spec
that describes the repo, since swebench's map does not know it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = "acme/calc"
VERSION = "0.1"
FUTURE_MARKER = "FUTURE-ONLY"

_IGNORE = "__pycache__/\n*.egg-info/\nbuild/\n"
_SETUP = 'from setuptools import setup\n\nsetup(name="calc", version="0.1", packages=["calc"])\n'
_BUGGY = (
    '"""Arithmetic."""\n\n\ndef add(a, b):\n    return a + b\n\n\n'
    "def divide(a, b):\n    if b == 0:\n        return 0\n    return a / b\n"
)
_FIXED = _BUGGY.replace("        return 0\n", '        raise ZeroDivisionError("division by zero")\n')
_TESTS = "from calc import add, divide\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_divide():\n    assert divide(6, 3) == 2\n"
_NEW_TEST = "\n\ndef test_divide_by_zero():\n    import pytest\n\n    with pytest.raises(ZeroDivisionError):\n        divide(1, 0)\n"


def spec_fields(python: str = "3.11") -> dict[str, Any]:
    """The environment spec of ``acme/calc`` (an override: swebench does not know the repo)."""
    return {
        "python": python,
        "install": "python -m pip install -e .",
        "pip_packages": ["pytest"],
        "test_cmd": "pytest -rA",
        "log_parser": "parse_log_pytest",
    }


@dataclass(frozen=True)
class FakeRepo:
    """Where the fake repository lives and its interesting commits."""

    mirrors: Path
    path: Path
    env_commit: str
    base_commit: str
    future_commit: str
    row: dict[str, Any]


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Acme",
        "GIT_AUTHOR_EMAIL": "dev@acme.test",
        "GIT_COMMITTER_NAME": "Acme",
        "GIT_COMMITTER_EMAIL": "dev@acme.test",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**base_env, **(env or {})}, check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, message: str, files: dict[str, str], date: str) -> str:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
    return _git(repo, "rev-parse", "HEAD")


def _diff(before: dict[str, str], after: dict[str, str], tmp: Path) -> str:
    """A git-style unified diff from file contents, made by git itself."""
    scratch = tmp / "scratch-diff"
    scratch.mkdir(parents=True, exist_ok=True)
    _git(scratch, "init", "-q")
    for name, text in before.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text)
    _git(scratch, "add", "-A")
    _git(scratch, "commit", "-q", "--allow-empty", "-m", "before")
    for name, text in after.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text)
    _git(scratch, "add", "-A")
    patch = subprocess.run(["git", "diff", "--cached"], cwd=scratch, check=True, capture_output=True, text=True).stdout
    subprocess.run(["rm", "-rf", str(scratch)], check=True)
    return patch


def make_fake_repo(root: Path, *, bare: bool = True) -> FakeRepo:
    """Create ``root/mirrors/acme__calc`` (bare by default) and the instance row for it."""
    work = root / "work-acme-calc"
    work.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    env_commit = _commit(work, "Initial calc", {".gitignore": _IGNORE, "setup.py": _SETUP, "calc/__init__.py": _BUGGY, "tests/test_calc.py": _TESTS}, "2023-01-02T10:00:00Z")
    _git(work, "tag", "v0.0.9")
    _git(work, "tag", "-a", "v0.1", "-m", "release 0.1")
    base_commit = _commit(work, "Docs", {"README.md": "calc\n"}, "2023-02-03T10:00:00Z")
    future_commit = _commit(work, f"Later work {FUTURE_MARKER}", {"FUTURE.md": f"{FUTURE_MARKER}\n"}, "2023-05-06T10:00:00Z")
    _git(work, "tag", "v0.2")
    _git(work, "branch", "feature", future_commit)
    mirrors = root / "mirrors"
    mirrors.mkdir()
    path = mirrors / "acme__calc"
    if bare:
        _git(root, "clone", "-q", "--mirror", str(work), str(path))
    else:
        _git(root, "clone", "-q", str(work), str(path))
    subprocess.run(["rm", "-rf", str(work)], check=True)
    files = {"setup.py": _SETUP, "calc/__init__.py": _BUGGY, "tests/test_calc.py": _TESTS}
    patch = _diff(files, {"calc/__init__.py": _FIXED}, root)
    test_patch = _diff(files, {"tests/test_calc.py": _TESTS + _NEW_TEST}, root)
    row = {
        "repo": REPO,
        "instance_id": "acme__calc-1",
        "base_commit": base_commit,
        "environment_setup_commit": env_commit,
        "version": VERSION,
        "problem_statement": "divide(1, 0) returns 0; it should raise ZeroDivisionError.",
        "hints_text": "",
        "created_at": "2023-02-04T00:00:00Z",
        "patch": patch,
        "test_patch": test_patch,
        "FAIL_TO_PASS": '["tests/test_calc.py::test_divide_by_zero"]',
        "PASS_TO_PASS": '["tests/test_calc.py::test_add", "tests/test_calc.py::test_divide"]',
    }
    return FakeRepo(mirrors, path, env_commit, base_commit, future_commit, row)
