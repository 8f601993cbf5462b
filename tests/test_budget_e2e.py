"""A hard budget, live, through the real Anthropic SDK against the loopback server.

An unlimited run measures what the work costs; a second run gets about half
of that. Spending must stay within the budget (reservations are worst cases, so
calls in flight cannot push it over), the run must degrade rather than emit
empty patches, and status must say what was cut.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from codemonkeys.cli.run_cmd import status_rows
from codemonkeys.config import load_config
from codemonkeys.env.grading import build_test_command
from codemonkeys.env.specs import SpecRegistry
from codemonkeys.oracle import reproduction_script
from codemonkeys.pipeline.build import open_services
from codemonkeys.pipeline.run import choose_instances, run_instances
from codemonkeys.store import RunStore
from codemonkeys.testing.fake_server import FakeLLMServer
from codemonkeys.testing.wire_oracle import WireOracle
from pipeline_support import SPEC, FixedEnvironment, base_overrides, shapes, shapes_instance  # noqa: F401
from sandbox_support import docker_client  # noqa: F401

pytestmark = pytest.mark.docker

ISSUES = (
    "area(w, h) returns w*w; it should be w*h.",
    "The area of a 2 by 3 rectangle comes out as 4 instead of 6.",
)


def _run(config, run_dir: Path, instances, env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with open_services(config, run_dir, instances, {"ANTHROPIC_API_KEY": "test-key"}, environments=env) as services:
        chosen = choose_instances(services.store, instances, retry_infra=False)
        return asyncio.run(run_instances(services, chosen.run))


def test_half_budget_is_never_passed_and_the_cut_is_reported(tmp_path: Path, shapes) -> None:  # type: ignore[no-untyped-def]
    commit, mirrors, ref = shapes
    instances = [shapes_instance(commit, number, issue) for number, issue in enumerate(ISSUES, start=1)]
    registry = SpecRegistry([SPEC])
    oracle = WireOracle([
        (i.instance_id, i.problem_statement, i.patch,
         reproduction_script(i.test_patch, build_test_command(i, registry.get(i.repo, i.version))))
        for i in instances
    ])
    with FakeLLMServer(responder=oracle) as server:
        model = "anthropic:claude-sonnet-4-6"
        common = [
            *(f"models.{stage}.model={model}" for stage in ("relevance", "ranking", "testing", "editing", "selection")),
            # Small answers: a call's worst case (its reservation) must be a small part of the budget.
            *(f"models.{stage}.max_output_tokens=400" for stage in ("relevance", "ranking", "testing", "editing", "selection")),
            f"providers.anthropic.base_url={server.anthropic_base_url}", "providers.anthropic.max_retries=0",
            "generation.trajectories=4", "max_concurrent_instances=1", *base_overrides(mirrors),
        ]
        full = load_config(None, common)
        assert _run(full, tmp_path / "full", instances, FixedEnvironment(ref)) == {i.instance_id: "done" for i in instances}
        with RunStore.open_existing(tmp_path / "full") as store:
            full_cost = store.total_cost()
            per_trajectory = full_cost / 8
        assert full_cost > 0

        budget = full_cost / 2
        half = load_config(None, [*common, f"budget.total_usd={budget}", f"budget.trajectory_usd_estimate={per_trajectory}"])
        _run(half, tmp_path / "half", instances, FixedEnvironment(ref))

    with RunStore.open_existing(tmp_path / "half") as store:
        spent = store.total_cost()
        rows = status_rows(store)
        plans = [store.get_result(i.instance_id, "plan", "generation") for i in instances]
        calls = store.calls()
    assert 0 < spent <= budget + 1e-9
    assert spent > budget * 0.4  # about half of the work was done, not nothing
    cut = [p for p in plans if p is not None and p["degraded"]]
    budget_failures = [r for r in rows if str(r["failure"]).startswith("budget")]
    assert cut or budget_failures, rows
    assert all("budget:" in p["reason"] for p in cut)
    assert any("(cut)" in str(r["plan"]) for r in rows) or budget_failures
    # No call was paid twice: every non-cached request hash is unique.
    paid = [c.request_hash for c in calls if not c.cached and c.error_kind is None]
    assert len(paid) == len(set(paid))
