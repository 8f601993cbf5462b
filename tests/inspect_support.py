"""A stored pipeline run over several shapes instances (oracle models, real containers), for the inspector tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from codemonkeys.config import load_config
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from pipeline_support import FixedEnvironment, base_overrides, shapes_instance

INSTANCES = 3


def make_run(root: Path, shapes: tuple[str, Path, object], instances: int = INSTANCES) -> tuple[Path, list[str]]:
    """Run the whole pipeline on ``instances`` shapes instances; returns the run dir and the instance ids."""
    commit, mirrors, ref = shapes
    chosen = [shapes_instance(commit, number=n) for n in range(1, instances + 1)]
    config = load_config(None, [
        "models.relevance.model=oracle", "models.ranking.model=oracle",
        "models.testing.model=oracle-noisy:0.5", "models.editing.model=oracle-noisy:0.5",
        "models.selection.model=oracle", "generation.trajectories=4", *base_overrides(mirrors),
    ])
    run_dir = root / "run"
    with open_services(config, run_dir, chosen, {}, environments=FixedEnvironment(ref)) as services:  # type: ignore[arg-type]
        plan = choose_instances(services.store, chosen, retry_infra=False)
        asyncio.run(run_instances(services, plan.run))
    return run_dir, [i.instance_id for i in chosen]


@pytest.fixture(scope="module")
def stored_run(shapes, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:  # type: ignore[no-untyped-def]
    return make_run(tmp_path_factory.mktemp("stored"), shapes)
