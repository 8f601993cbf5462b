"""A tiny git repository with ten unit tests, for sandbox tests and benches.

It stands in for a SWE-bench environment: /testbed is a git repo at a base
commit, with an ignored build artifact beside the sources (as compiled
extensions are in real images). It is made with real git, deterministically,
so its Docker image is built once per base image and reused.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BuildError

if TYPE_CHECKING:
    import docker

FUNCTIONS = {
    "add": "a + b",
    "sub": "a - b",
    "mul": "a * b",
    "div": "a / b",
    "power": "a ** b",
    "mod": "a % b",
    "floordiv": "a // b",
    "maximum": "max(a, b)",
    "minimum": "min(a, b)",
    "mean": "(a + b) / 2",
}
EXPECTED = {
    "add": 5,
    "sub": -1,
    "mul": 6,
    "div": 2 / 3,
    "power": 8,
    "mod": 2,
    "floordiv": 0,
    "maximum": 3,
    "minimum": 2,
    "mean": 2.5,
}
TEST_IDS = [f"tests.test_calc.CalcTest.test_{name}" for name in FUNCTIONS]
IGNORED_ARTIFACT = "build/_speedups.so"


def calc_source(overrides: dict[str, str] | None = None) -> str:
    bodies = {**FUNCTIONS, **(overrides or {})}
    return '"""Arithmetic for the sandbox tests."""\n\n' + "".join(
        f"\ndef {name}(a, b):\n    return {body}\n\n" for name, body in bodies.items()
    )


def _test_source() -> str:
    tests = "".join(
        f"\n    def test_{name}(self):\n        self.assertAlmostEqual(calc.{name}(2, 3), {value!r})\n"
        for name, value in EXPECTED.items()
    )
    return f"import unittest\n\nimport calc\n\n\nclass CalcTest(unittest.TestCase):{tests}\n"


FILES = {
    "calc.py": calc_source(),
    "tests/__init__.py": "",
    "tests/test_calc.py": _test_source(),
    ".gitignore": "build/\n*.egg-info/\n__pycache__/\n*.pyc\n",
    "README.md": "Fixture repository for codemonkeys sandbox tests.\n",
}


def make_repo(dest: Path) -> str:
    """Create the repository in ``dest`` (which must not exist); returns its commit."""
    dest.mkdir(parents=True)
    for name, text in FILES.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    (dest / IGNORED_ARTIFACT).parent.mkdir(parents=True)
    (dest / IGNORED_ARTIFACT).write_bytes(b"\x7fELF pretend compiled extension\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "fixture",
        "GIT_AUTHOR_EMAIL": "fixture@localhost",
        "GIT_COMMITTER_NAME": "fixture",
        "GIT_COMMITTER_EMAIL": "fixture@localhost",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
    }
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "base"],
    ):
        proc = subprocess.run(argv, cwd=dest, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(argv)} failed: {proc.stderr}")
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=dest, capture_output=True, text=True, check=True
    ).stdout.strip()


def calc_patch(overrides: dict[str, str]) -> str:
    """A unified diff (``a/``/``b/`` paths) that changes function bodies in calc.py."""
    return "".join(
        difflib.unified_diff(
            calc_source().splitlines(keepends=True),
            calc_source(overrides).splitlines(keepends=True),
            "a/calc.py",
            "b/calc.py",
        )
    )


def ensure_fixture_image(client: docker.DockerClient, base_tag: str) -> str:
    """``base_tag`` with the fixture repository at /testbed; built once, returns the tag."""
    import tempfile

    import docker.errors

    key = hashlib.sha256(base_tag.encode() + repr(sorted(FILES.items())).encode()).hexdigest()[:12]
    tag = f"codemonkeys/fixture:{key}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="codemonkeys-fixture-") as tmp:
        make_repo(Path(tmp) / "testbed")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            dockerfile = f"FROM {base_tag}\nCOPY testbed /testbed\nWORKDIR /testbed\n".encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(Path(tmp) / "testbed", arcname="testbed")
        buffer.seek(0)
        try:
            client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True)
        except docker.errors.DockerException as exc:
            raise BuildError(f"building {tag} failed: {exc}") from exc
    return tag
