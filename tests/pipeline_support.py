"""A one-file repo with a bug, as a host mirror and as a Docker image, for whole-pipeline tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemonkeys.edits import make_diff
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.swebench.instances import Instance
from repo_images import build_repo_image, make_host_repo

SHAPES = (
    '"""Shapes."""\n\n\ndef area(width, height):\n    return width * width\n\n\n'
    "def perimeter(width, height):\n    return 2 * (width + height)\n"
)
FILES = {"shapes.py": SHAPES, "README.md": "shapes\n", "tests/__init__.py": ""}
GOLD = make_diff({"shapes.py": SHAPES}, {"shapes.py": SHAPES.replace("width * width", "width * height")})
TEST_FILE = (
    "import unittest\n\nimport shapes\n\n\nclass ShapesTest(unittest.TestCase):\n"
    "    def test_area(self):\n        self.assertEqual(shapes.area(2, 3), 6)\n\n"
    "    def test_perimeter(self):\n        self.assertEqual(shapes.perimeter(2, 3), 10)\n"
)
TEST_PATCH = make_diff({}, {"tests/test_shapes.py": TEST_FILE})
SPEC = {"local/shapes": {"1.0": {"python": "3.11", "test_cmd": "python -m unittest -v"}}}


class FixedEnvironment:
    """Every instance's environment is the prebuilt image (counts the calls)."""

    def __init__(self, ref: EnvironmentRef) -> None:
        self.ref = ref
        self.calls = 0

    async def environment(self, instance: Instance) -> EnvironmentRef:
        self.calls += 1
        return self.ref


def shapes_instance(commit: str, number: int = 1, issue: str = "area(w, h) returns w*w; it should be w*h.") -> Instance:
    return Instance(
        instance_id=f"local__shapes-{number}", repo="local/shapes", base_commit=commit, version="1.0",
        environment_setup_commit=commit, problem_statement=issue, patch=GOLD, test_patch=TEST_PATCH,
        FAIL_TO_PASS=["test_area (tests.test_shapes.ShapesTest)"],
        PASS_TO_PASS=["test_perimeter (tests.test_shapes.ShapesTest)"],
    )


def base_overrides(mirrors: Path) -> list[str]:
    return [
        "generation.test_timeout_s=60", "sandbox.backend=docker", "sandbox.pool_size=2",
        f"environment.mirror_dir={mirrors}", f"environment.spec_overrides={json.dumps(SPEC)}",
        "context.ranking_runs=2",
    ]


@pytest.fixture(scope="module")
def shapes(docker_client, tmp_path_factory):  # type: ignore[no-untyped-def]
    """(commit, mirror dir, environment) of the shapes repo."""
    from codemonkeys.sandbox.baseimage import ensure_test_image

    mirrors = tmp_path_factory.mktemp("mirrors")
    commit = make_host_repo(mirrors / "local__shapes", FILES)
    tag = build_repo_image(docker_client, ensure_test_image(docker_client), FILES)
    return commit, mirrors, EnvironmentRef(key=f"shapes-{tag}", image=tag, python="python3")
