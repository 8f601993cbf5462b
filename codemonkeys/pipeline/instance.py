"""One instance through every stage: context, environment, generation, selection.

Stages are not barriers across instances: each instance runs this pipeline on
its own, so one instance can be selecting while another reads files. Every
stage reads what an earlier attempt stored before doing anything, so a rerun
after a crash continues where the instance stopped, and no model call is paid
twice (the response cache answers replayed requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ..budget import BudgetGuard
from ..config import Config
from ..context.gitread import GitObjects
from ..context.result import read_packed
from ..context.stage import ContextStage, ContextTask
from ..errors import FailureKind, failure_kind
from ..execution import SandboxPool, TestRunner
from ..execution.sources import SandboxSources
from ..generation.stage import ContextFile, GenerationInputs, generate
from ..generation.trajectory import TrajectoryDeps
from ..llm.gateway import approx_tokens
from ..llm.registry import ModelHub
from ..prompting import Prompt
from ..sandbox.base import EnvironmentRef, SandboxFactory
from ..selection.stage import stored_candidates
from ..store import RunStore
from ..swebench.instances import Instance
from ..swebench.repo import RepoSource
from .planner import Plan, modelled_trajectory_cost, plan_generation

log = logging.getLogger(__name__)

STAGES = ("context", "environment", "generation", "selection", "done")


class EnvironmentProvider(Protocol):
    """Gets an instance's environment ready (pull, cache or build) and names it."""

    async def environment(self, instance: Instance) -> EnvironmentRef: ...


@dataclass(frozen=True)
class PipelineEvent:
    """Progress for the live view: an instance entered a stage, finished, or failed."""

    instance_id: str
    stage: str
    status: str
    detail: str = ""


@dataclass
class Services:
    """Everything shared by the instances of a run."""

    config: Config
    store: RunStore
    hub: ModelHub
    budget: BudgetGuard
    repos: RepoSource
    environments: EnvironmentProvider
    sandboxes: SandboxFactory
    context: ContextStage
    events: Callable[[PipelineEvent], None] = lambda event: None


def _expected_trajectory_cost(services: Services, context_tokens: int | None) -> float | None:
    """Mean cost of this run's finished editing pipelines, else the token model's estimate."""
    rows = services.store.ledger(group_by=("trajectory",))
    costs = [row.cost_usd for row in rows if row.group[0] and "/editing/" in str(row.group[0])]
    testing = [row.cost_usd for row in rows if row.group[0] and "/testing/" in str(row.group[0])]
    if len(costs) >= 3:
        return sum(costs) / len(costs) + (sum(testing) / len(testing) if testing else 0.0)
    if services.config.budget.trajectory_usd_estimate is not None:
        return services.config.budget.trajectory_usd_estimate
    return modelled_trajectory_cost(services.config, services.hub.prices, context_tokens)


def plan_for(services: Services, instance_id: str, instances_left: int, context_tokens: int | None = None) -> Plan:
    """The instance's share of what is left of the budget, turned into a plan."""
    guard = services.budget
    available = guard.remaining(instance_id)
    total_left = guard.remaining()
    if total_left is not None and instances_left > 1:
        share = total_left / instances_left
        available = share if available is None else min(available, share)
    return plan_generation(
        services.config,
        available_usd=available,
        expected_trajectory_usd=_expected_trajectory_cost(services, context_tokens),
    )


def _generation_deps(services: Services, instance_id: str, runner: TestRunner, sources: SandboxSources, plan: Plan) -> tuple[TrajectoryDeps, TrajectoryDeps]:
    config = services.config
    prompt = Prompt("generation.j2")
    gen = config.generation.model_copy(update={"max_iterations": plan.max_iterations})
    common = dict(store=services.store, runner=runner, sources=sources, prompt=prompt, config=gen)
    testing = TrajectoryDeps(chat=services.hub.gateway("testing", instance_id), model=config.models.testing, **common)  # type: ignore[arg-type]
    editing = TrajectoryDeps(chat=services.hub.gateway("editing", instance_id), model=config.models.editing, **common)  # type: ignore[arg-type]
    return testing, editing


def _failure_kind(failures: dict[str, str]) -> str:
    """An instance without candidates failed for infrastructure reasons if any trajectory did."""
    kinds = {reason.split(":", 1)[0] for reason in failures.values()}
    return str(FailureKind.INFRA) if str(FailureKind.INFRA) in kinds else str(FailureKind.MODEL)


async def run_instance(
    services: Services, instance: Instance, *, instances_left: int = 1, stop_after: str = "selection"
) -> str:
    """Run (or resume) one instance; returns its final status. Never raises for the instance's own failures.

    ``stop_after="generation"`` ends after the candidates are recorded (``codemonkeys generate``).
    """
    store, iid = services.store, instance.instance_id
    store.add_instance(iid, instance.repo, instance.model_dump(mode="json"))
    if store.selection(iid) is not None:
        store.set_instance_state(iid, "done", "done")
        return "done"
    stage = "context"
    try:
        services.events(PipelineEvent(iid, stage, "running"))
        repo = await asyncio.to_thread(services.repos.ensure_commit, instance.repo, instance.base_commit)
        context = await services.context.run(ContextTask(iid, instance.problem_statement, repo, instance.base_commit))
        with GitObjects(repo) as objects:
            files = [ContextFile(path, text) for path, text in read_packed(context, objects)]

        stage = "environment"
        store.set_instance_state(iid, stage, "running")
        services.events(PipelineEvent(iid, stage, "running"))
        env = await services.environments.environment(instance)

        stage = "generation"
        plan = plan_for(services, iid, instances_left, sum(approx_tokens(f.content) for f in files))
        store.put_result(iid, "plan", "generation", plan.as_dict())
        if plan.degraded:
            log.warning("%s: %s", iid, plan.reason)
        if plan.skipped:
            store.set_instance_state(iid, stage, "failed", str(FailureKind.BUDGET), plan.reason)
            services.events(PipelineEvent(iid, stage, "failed", plan.reason))
            return "failed"
        store.set_instance_state(iid, stage, "running")
        services.events(PipelineEvent(iid, stage, "running", f"{plan.trajectories} trajectories"))
        async with SandboxPool(services.sandboxes, env, services.config.sandbox.pool_size) as pool:
            runner = TestRunner(pool, store, timeout_s=services.config.generation.test_timeout_s)
            sources = SandboxSources(pool)
            testing, editing = _generation_deps(services, iid, runner, sources, plan)
            inputs = GenerationInputs(iid, instance.problem_statement, files)
            result = await generate(testing, editing, store, inputs, plan.trajectories)
            if result.failures:
                log.info("%s: %d trajectory failure(s)", iid, len(result.failures))
            if stop_after == "generation":
                status = "done" if result.candidates else "failed"
                kind = None if result.candidates else _failure_kind(result.failures)
                store.set_instance_state(iid, stage, status, kind, None if result.candidates else "no candidate")
                services.events(PipelineEvent(iid, stage, status, f"{len(result.candidates)} candidate(s)"))
                return status

            stage = "selection"
            store.set_instance_state(iid, stage, "running")
            services.events(PipelineEvent(iid, stage, "running"))
            from .selecting import select_in_pool  # the step ``select`` and ``ensemble`` run on their own

            candidates = stored_candidates(store, iid)
            outcome, _ = await select_in_pool(services, instance, pool)
        if outcome.candidate_id is None:
            kind = _failure_kind(result.failures)
            # Without a non-empty candidate, generation is where the instance really failed.
            usable = any(c.patch.strip() for c in candidates)
            where = "selection" if usable else "generation"
            first = next(iter(result.failures.values()), "")
            reason = outcome.reason or "no candidate"
            if not usable and first:
                reason = f"{reason}; first trajectory failure: {first}"
            store.set_instance_state(iid, where, "failed", kind, reason[:2000])
            services.events(PipelineEvent(iid, where, "failed", reason[:200]))
            return "failed"
        store.set_instance_state(iid, "done", "done")
        services.events(PipelineEvent(iid, "done", "done", outcome.method))
        return "done"
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the instance boundary: record and let the others go on
        kind = failure_kind(exc)
        log.error("%s failed in %s (%s): %s: %s", iid, stage, kind, type(exc).__name__, exc)
        store.set_instance_state(iid, stage, "failed", str(kind), f"{type(exc).__name__}: {exc}"[:2000])
        services.events(PipelineEvent(iid, stage, "failed", str(exc)[:200]))
        return "failed"
