"""The whole pipeline on one instance: context, environment, generation, selection, export.

Oracle models answer every stage from the instance's gold and test patches, the
repository is a real git repo (a mirror on the host, the same commit in a Docker
image), and sandboxes are real containers. The noisy oracle makes some
trajectories write a wrong edit, so voting and selection have work to do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from codemonkeys.config import load_config
from codemonkeys.edits import normalize_patch
from codemonkeys.export import export_predictions
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from codemonkeys.store import RunStore
from codemonkeys.swebench.instances import Instance
from pipeline_support import GOLD, FixedEnvironment, base_overrides, shapes, shapes_instance  # noqa: F401
from sandbox_support import docker_client  # noqa: F401

pytestmark = pytest.mark.docker


def _run(config, run_dir: Path, instance: Instance, env: FixedEnvironment) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with open_services(config, run_dir, [instance], {}, environments=env) as services:
        chosen = choose_instances(services.store, [instance], retry_infra=False)
        return asyncio.run(run_instances(services, chosen.run))


def test_oracle_run_selects_the_gold_patch_and_a_rerun_is_free(tmp_path: Path, shapes) -> None:  # type: ignore[no-untyped-def]
    commit, mirrors, ref = shapes
    instance = shapes_instance(commit)
    config = load_config(None, [
        "models.relevance.model=oracle", "models.ranking.model=oracle",
        "models.testing.model=oracle-noisy:0.5", "models.editing.model=oracle-noisy:0.5",
        "models.selection.model=oracle", "generation.trajectories=4", *base_overrides(mirrors),
    ])
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


def test_no_candidate_fails_in_generation_not_selection(tmp_path: Path, shapes) -> None:  # type: ignore[no-untyped-def]
    from codemonkeys.testing.fake_server import FakeLLMServer

    commit, mirrors, ref = shapes
    instance = shapes_instance(commit, number=2)
    with FakeLLMServer(lambda body: "I am not sure what to do.") as server:
        small = f"openai-compatible:small@{server.openai_base_url}"
        config = load_config(None, [
            "models.relevance.model=oracle", "models.ranking.model=oracle",
            f"models.testing.model={small}", f"models.editing.model={small}", f"models.selection.model={small}",
            "models.editing.context_window=200000", "generation.trajectories=2", "generation.testing_max_turns=2",
            *base_overrides(mirrors),
        ])
        assert _run(config, tmp_path / "run", instance, FixedEnvironment(ref)) == {instance.instance_id: "failed"}
    with RunStore.open_existing(tmp_path / "run") as store:
        (state,) = store.instance_states()
    assert (state["stage"], state["status"], state["failure_kind"]) == ("generation", "failed", "model")
    assert "no candidate" in state["failure"] and "first trajectory failure" in state["failure"]
