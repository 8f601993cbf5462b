"""Running many instances: which to (re)run, at most N at a time, each on its own pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import FailureKind
from ..store import RunStore
from ..swebench.instances import Instance
from .instance import Services, run_instance


@dataclass(frozen=True)
class Selection:
    """Which instances a run works on this time, and why the others are left alone."""

    run: list[Instance]
    done: list[str]
    failed: dict[str, str]


def choose_instances(store: RunStore, instances: Sequence[Instance], *, retry_infra: bool) -> Selection:
    """Unfinished instances always run; failed ones only when their failure may be retried.

    Without ``retry_infra``: new, interrupted and budget-stopped instances (a
    raised budget lets them go on). With it: only the instances that ended
    with an infrastructure failure.
    """
    states = {row["instance_id"]: row for row in store.instance_states()}
    run: list[Instance] = []
    done: list[str] = []
    failed: dict[str, str] = {}
    for instance in instances:
        state = states.get(instance.instance_id)
        status = state["status"] if state else "pending"
        kind = state["failure_kind"] if state else None
        if status == "done" and store.selection(instance.instance_id) is not None:
            done.append(instance.instance_id)
        elif status == "failed" and kind == str(FailureKind.INFRA):
            if retry_infra:
                run.append(instance)
            else:
                failed[instance.instance_id] = f"{kind}: {state['failure'] if state else ''}"
        elif retry_infra:
            if status == "failed":
                failed[instance.instance_id] = f"{kind}: {state['failure'] if state else ''}"
        elif status == "failed" and kind != str(FailureKind.BUDGET):
            failed[instance.instance_id] = f"{kind}: {state['failure'] if state else ''}"
        else:
            run.append(instance)
    return Selection(run, done, failed)


async def run_instances(
    services: Services, instances: Sequence[Instance], *, stop_after: str = "selection"
) -> dict[str, str]:
    """Run ``instances`` with at most ``max_concurrent_instances`` in flight; their final statuses."""
    slots = asyncio.Semaphore(services.config.max_concurrent_instances)
    not_started = len(instances)

    async def one(instance: Instance) -> tuple[str, str]:
        nonlocal not_started
        async with slots:
            left = not_started
            not_started -= 1
            return instance.instance_id, await run_instance(
                services, instance, instances_left=left, stop_after=stop_after
            )

    try:
        results = await asyncio.gather(*(one(instance) for instance in instances))
    finally:
        await services.hub.aclose()  # the SDK clients belong to this event loop
    return dict(results)
