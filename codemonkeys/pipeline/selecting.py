"""Selection as a pipeline entry point: the part of ``run`` that ``select`` and ``ensemble`` run on their own.

``run_instance`` ends with :func:`select_in_pool`; ``select_instances`` runs
the same step for instances whose candidates are already stored (from
``generate``, other systems' submissions, or included runs), through the same
:class:`~codemonkeys.pipeline.instance.Services`: the environment provider the
sandbox backend chose (images for Docker, local environments for
bubblewrap), the run's models, budget and store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UserError, failure_kind
from ..execution import SandboxPool, TestRunner
from ..execution.sources import SandboxSources
from ..llm.types import CallTag, ChatRequest, ChatResponse
from ..prompting import Prompt
from ..selection import (
    SelectionDeps,
    SelectionInputs,
    SelectionOutcome,
    group_candidates,
    select_instance,
    stored_candidates,
    stored_tests,
    usable_candidates,
)
from ..store import RunStore
from ..swebench.instances import Instance
from .instance import Services

Prepare = Callable[[Instance, TestRunner, SandboxSources], Awaitable[None]]
"""Work before selection inside the instance's sandbox pool (the ensemble generates tests)."""


@dataclass
class InstanceResult:
    """How selection went for one instance: its outcome, or why it failed."""

    instance_id: str
    outcome: SelectionOutcome | None = None
    executed: int = 0
    failure_kind: str | None = None
    failure: str | None = None


def _inputs(store: RunStore, instance: Instance, ensemble: bool = False) -> SelectionInputs:
    iid = instance.instance_id
    return SelectionInputs(
        iid, instance.problem_statement, stored_candidates(store, iid), stored_tests(store, iid), ensemble=ensemble
    )


def _deps(services: Services, iid: str, runner: Any, sources: Any) -> SelectionDeps:
    return SelectionDeps(
        chat=_LazyChat(services, iid), store=services.store, runner=runner, sources=sources,
        prompt=Prompt("selection.j2"), model=services.config.models.selection, config=services.config.selection,
    )


def selection_runner(services: Services, pool: SandboxPool) -> TestRunner:
    return TestRunner(pool, services.store, timeout_s=services.config.selection.test_timeout_s)


async def select_in_pool(
    services: Services, instance: Instance, pool: SandboxPool, runner: TestRunner | None = None, *, ensemble: bool = False
) -> tuple[SelectionOutcome, int]:
    """Vote with the stored tests and run the selection model, in ``pool``; the outcome and cells ``runner`` ran.

    ``ensemble``: the candidates came from other systems, so ``selection.ensemble_candidates``
    decides which of them the selector sees (the paper's ensembles skip the vote).
    """
    runner = runner or selection_runner(services, pool)
    outcome = await select_instance(
        _deps(services, instance.instance_id, runner, SandboxSources(pool)), _inputs(services.store, instance, ensemble)
    )
    return outcome, runner.executed


async def select_instances(
    services: Services,
    instances: Sequence[Instance],
    *,
    prepare: Prepare | None = None,
    on_done: Callable[[InstanceResult], None] | None = None,
    ensemble: bool = False,
) -> list[InstanceResult]:
    """Select for every instance with stored candidates, a few at a time; each instance is a failure boundary."""
    gate = asyncio.Semaphore(services.config.max_concurrent_instances)
    store = services.store

    async def one(instance: Instance) -> InstanceResult:
        iid = instance.instance_id
        result = InstanceResult(iid)
        async with gate:
            try:
                store.set_instance_state(iid, "selection", "running")
                inputs = _inputs(store, instance, ensemble)
                if len(group_candidates(usable_candidates(inputs.candidates)[0])) < 2:
                    # Nothing to vote on: no environment, no tests, no model.
                    result.outcome = await select_instance(_deps(services, iid, None, None), inputs)
                else:
                    env = await services.environments.environment(instance)
                    async with SandboxPool(services.sandboxes, env, services.config.sandbox.pool_size) as pool:
                        runner = selection_runner(services, pool)
                        if prepare is not None:
                            await prepare(instance, runner, SandboxSources(pool))
                        result.outcome, result.executed = await select_in_pool(
                            services, instance, pool, runner, ensemble=ensemble
                        )
                store.set_instance_state(iid, "selection", "done")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the instance boundary
                result.failure_kind, result.failure = str(failure_kind(exc)), f"{type(exc).__name__}: {exc}"[:2000]
                store.set_instance_state(iid, "selection", "failed", result.failure_kind, result.failure)
        if on_done is not None:
            on_done(result)
        return result

    try:
        return list(await asyncio.gather(*(one(instance) for instance in instances)))
    finally:
        await services.hub.aclose()  # the SDK clients belong to this event loop


def test_writer(services: Services) -> Prepare:
    """A ``prepare`` step: testing trajectories for an instance without a test yet (ensembles of patches)."""
    from ..ensemble.pool import generate_tests
    from ..generation.trajectory import TrajectoryDeps

    config = services.config
    prompt = Prompt("generation.j2")

    async def prepare(instance: Instance, runner: TestRunner, sources: SandboxSources) -> None:
        if stored_tests(services.store, instance.instance_id):
            return
        deps = TrajectoryDeps(
            chat=services.hub.gateway("testing", instance.instance_id), store=services.store, runner=runner,
            sources=sources, prompt=prompt, model=config.models.testing,
            config=config.generation.model_copy(update={"test_timeout_s": config.selection.test_timeout_s}),
        )
        await generate_tests(deps, instance.instance_id, instance.problem_statement, config.selection.generated_tests)

    return prepare


class _LazyChat:
    """The selection gateway, built on first use: an instance with one candidate calls no model."""

    def __init__(self, services: Services, instance_id: str) -> None:
        self._hub, self._iid = services.hub, instance_id

    @property
    def name(self) -> str:
        return self._hub.spec("selection").label

    async def complete(self, request: ChatRequest, tag: CallTag) -> ChatResponse:
        return await self._hub.gateway("selection", self._iid).complete(request, tag)


def stored_instances(store: RunStore, ids: Sequence[str]) -> list[Instance]:
    """The run's registered instances (``ids``, or all of them); an unknown id is a user error."""
    known = [row["instance_id"] for row in store.instance_states()]
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise UserError(f"the run has no instance(s) {', '.join(unknown)}; pass --dataset to add them")
    return [Instance.model_validate(store.instance_data(i)) for i in (ids or known)]
