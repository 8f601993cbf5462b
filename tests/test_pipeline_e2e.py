"""The whole pipeline on one instance: context, environment, generation, selection, export.

Oracle models answer every stage from the instance's gold and test patches, the
repository is a real git repo (a mirror on the host, the same commit in a Docker
image), and sandboxes are real containers. The noisy oracle makes some
trajectories write a wrong edit, so voting and selection have work to do.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from codemonkeys.config import load_config
from codemonkeys.edits import make_diff, normalize_patch
from codemonkeys.export import export_predictions
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from codemonkeys.sandbox.base import EnvironmentRef
from codemonkeys.store import RunStore
from codemonkeys.swebench.instances import Instance
from repo_images import build_repo_image, make_host_repo
from sandbox_support import docker_client  # noqa: F401

pytestmark = pytest.mark.docker

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


class FixedEnvironment:
    """The instance's environment is the prebuilt test image."""

    def __init__(self, ref: EnvironmentRef) -> None:
        self.ref = ref
        self.calls = 0

    async def environment(self, instance: Instance) -> EnvironmentRef:
        self.calls += 1
        return self.ref


@pytest.fixture(scope="module")
def setup(docker_client, tmp_path_factory):  # type: ignore[no-untyped-def]
    from codemonkeys.sandbox.baseimage import ensure_test_image

    mirrors = tmp_path_factory.mktemp("mirrors")
    commit = make_host_repo(mirrors / "local__shapes", FILES)
    tag = build_repo_image(docker_client, ensure_test_image(docker_client), FILES)
    instance = Instance(
        instance_id="local__shapes-1", repo="local/shapes", base_commit=commit, version="1.0",
        environment_setup_commit=commit, problem_statement="area(w, h) returns w*w; it should be w*h.",
        patch=GOLD, test_patch=TEST_PATCH,
        FAIL_TO_PASS=["test_area (tests.test_shapes.ShapesTest)"], PASS_TO_PASS=["test_perimeter (tests.test_shapes.ShapesTest)"],
    )
    return instance, mirrors, EnvironmentRef(key=f"shapes-{tag}", image=tag, python="python3")


def _config(mirrors: Path, noise: str):  # type: ignore[no-untyped-def]
    spec = json.dumps({"local/shapes": {"1.0": {"python": "3.11", "test_cmd": "python -m unittest -v"}}})
    return load_config(None, [
        "models.relevance.model=oracle", "models.ranking.model=oracle",
        f"models.testing.model=oracle-noisy:{noise}", f"models.editing.model=oracle-noisy:{noise}",
        "models.selection.model=oracle", "generation.trajectories=4", "generation.test_timeout_s=60",
        "sandbox.backend=docker", "sandbox.pool_size=2", f"environment.mirror_dir={mirrors}",
        f"environment.spec_overrides={spec}", "context.ranking_runs=2",
    ])


def _run(config, run_dir: Path, instance: Instance, env: FixedEnvironment) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with open_services(config, run_dir, [instance], {}, environments=env) as services:
        chosen = choose_instances(services.store, [instance], retry_infra=False)
        return asyncio.run(run_instances(services, chosen.run))


def test_oracle_run_selects_the_gold_patch_and_a_rerun_is_free(tmp_path: Path, setup) -> None:  # type: ignore[no-untyped-def]
    instance, mirrors, ref = setup
    config = _config(mirrors, "0.5")
    env = FixedEnvironment(ref)
    assert _run(config, tmp_path / "run", instance, env) == {instance.instance_id: "done"}

    with RunStore.open_existing(tmp_path / "run") as store:
        candidates = store.candidates(instance.instance_id)
        assert len(candidates) == 4
        distinct = {normalize_patch(c["patch"]) for c in candidates}
        assert normalize_patch(GOLD) in distinct and len(distinct) == 2  # noisy trajectories wrote a wrong edit
        decisions = store.context_decisions(instance.instance_id)
        assert {d.path for d in decisions if d.relevant} == {"shapes.py"}
        rows = export_predictions(store, tmp_path / "all_preds.jsonl", model_name="t", allow_oracle=True)
        assert [normalize_patch(r.patch) for r in rows] == [normalize_patch(GOLD)]
        calls = len(store.calls())
        assert store.total_cost() == 0.0

    # Everything is done: the rerun calls no model and builds no environment.
    assert _run(config, tmp_path / "run", instance, env) == {}
    with RunStore.open_existing(tmp_path / "run") as store:
        assert len(store.calls()) == calls
    assert env.calls == 1
