"""``executor: ray``: instances spread as Ray tasks over a cluster, the store written by the driver alone.

The driver starts two actors pinned to its own node: :class:`RunState` (the
run's SQLite store and live budget) and :class:`SharedLimiters` (provider
rate limits, which are per account). Each instance is one Ray task: on
whichever node runs it, the task builds that node's services (sandbox
backend, environments, repositories, model gateways) around a
:class:`RemoteStore`, a :class:`RemoteBudget` and remote limiters, and runs
:func:`run_instance`. No worker opens the database.

A task whose worker or node is lost is retried by Ray on another worker
(``ray.max_retries``); application errors are not retried (``run_instance``
records an instance's own failures and returns its status). Every stage
resumes from the store, so a retried instance continues where the lost one
stopped: saved trajectory turns are replayed and model calls already made are
answered by the response cache, so nothing is paid twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..budget import BudgetGuard
from ..config import Config, SandboxConfig
from ..context.batch import build_stage
from ..errors import ConfigError, FailureKind, InfraError, failure_kind
from ..llm.registry import ModelHub, check_prices, resolve_secrets
from ..sandbox.base import SandboxFactory
from ..sandbox.factory import make_sandbox_factory
from ..store import RunStore
from ..swebench.instances import Instance
from .build import repo_source, settle_windows, stages_needing_keys
from .instance import EnvironmentProvider, PipelineEvent, Services, run_instance
from .remote import RemoteBudget, RemoteStore, RunState, Transport
from .remote_limits import SharedLimiters, remote_limiter_factory

log = logging.getLogger(__name__)

# Makes a node's sandbox factory from the config (must be picklable; the default is the configured backend).
SandboxMaker = Callable[[SandboxConfig], SandboxFactory]

_STATE_THREADS = 16  # store calls from many workers at once; the store serializes its writes itself


def _unwrapped(exc: RayTaskError) -> BaseException:
    """The exception the actor method raised (BudgetExceeded, KeyError...), not Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _sync_transport(actor: Any) -> Transport:
    def call(method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(actor, method).remote(*args))
        except RayTaskError as exc:
            raise _unwrapped(exc) from None

    return call


def _async_transport(actor: Any) -> Callable[..., Any]:
    async def call(method: str, *args: Any) -> Any:
        try:
            return await getattr(actor, method).remote(*args)
        except RayTaskError as exc:
            raise _unwrapped(exc) from None

    return call


def _send_transport(actor: Any) -> Callable[..., None]:
    def send(method: str, *args: Any) -> None:
        getattr(actor, method).remote(*args)

    return send


# --- on the worker ------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What every task of a run gets (pickled to the workers): config, keys, the driver's actors, hooks."""

    config: Config
    secrets: Mapping[str, str]
    state: Any  # ActorHandle[RunState]
    limiters: Any  # ActorHandle[SharedLimiters]
    environments: EnvironmentProvider | None
    sandboxes: SandboxMaker | None
    stop_after: str


def _instance_task(job: _Job, instance: Instance, instances_left: int) -> str:
    """One instance on whichever node Ray picked; returns its final status."""
    iid = instance.instance_id
    attempt = _sync_transport(job.state)("begin_attempt", iid)
    ray.get(job.limiters.release_owner.remote(iid))
    if attempt > 1:
        log.warning("%s: attempt %d (an earlier worker was lost); resuming from the store", iid, attempt)
    return asyncio.run(_run_here(job, instance, instances_left))


async def _run_here(job: _Job, instance: Instance, instances_left: int) -> str:
    """This node's services around the remote store, budget and limiters, then the pipeline."""
    config, iid = job.config, instance.instance_id
    call = _sync_transport(job.state)
    store, budget = RemoteStore(call), RemoteBudget(call, iid)
    hub = ModelHub(
        config, store, job.secrets, budget=budget,
        limiter_factory=remote_limiter_factory(
            config, _async_transport(job.limiters), _send_transport(job.limiters), iid
        ),
    )
    try:
        make = job.sandboxes or make_sandbox_factory
        factory = make(config.sandbox)
        cleanup = getattr(factory, "cleanup_leaked", None)
        if cleanup is not None:  # sandboxes of a worker that died on this node
            removed = await asyncio.to_thread(cleanup)
            if removed:
                log.warning("removed %d sandbox(es) left behind by a dead worker", len(removed))
        environments = job.environments
        if environments is None:
            from .environments import environments_for

            environments = environments_for(factory, config)

        def events(event: PipelineEvent) -> None:
            job.state.push_event.remote(event)

        services = Services(
            config=config, store=cast(RunStore, store), hub=hub, budget=cast(BudgetGuard, budget),
            repos=repo_source(config), environments=environments, sandboxes=factory,
            context=build_stage(config, hub, store), events=events,
        )
        return await run_instance(services, instance, instances_left=instances_left, stop_after=job.stop_after)
    finally:
        await hub.aclose()


# --- on the driver ------------------------------------------------------------------


def _check_address(config: Config) -> None:
    address = config.ray.address
    if address is not None and address.startswith("ray://"):
        raise ConfigError(
            f"ray.address={address!r}: Ray Client addresses are not supported, because the run store is "
            "written on the driver's node; run codemonkeys on a cluster node with ray.address=auto"
        )


def _connect(config: Config) -> bool:
    """Join the configured cluster, or start a local Ray; True when this call started Ray."""
    address = config.ray.address
    if ray.is_initialized():
        return False
    if address is None:  # "local": a new instance even when `ray start` left one running here
        ray.init(address="local", include_dashboard=False, ignore_reinit_error=True)
    else:
        ray.init(address=address, ignore_reinit_error=True)
    return True


def run_instances_ray(
    config: Config,
    run_dir: Path,
    instances: Sequence[Instance],
    environ: Mapping[str, str],
    *,
    events: Callable[[PipelineEvent], None] = lambda event: None,
    environments: EnvironmentProvider | None = None,
    sandboxes: SandboxMaker | None = None,
    stop_after: str = "selection",
    poll_s: float = 0.5,
) -> dict[str, str]:
    """Run ``instances`` as Ray tasks, at most ``max_concurrent_instances`` in flight; their final statuses.

    ``environments`` and ``sandboxes`` replace the node's defaults (they are
    pickled to every worker). Uses the running Ray if this process already
    started one, else joins ``ray.address`` (or starts a local Ray and stops
    it again at the end).
    """
    _check_address(config)
    if not instances:
        return {}
    check_prices(config)
    secrets = resolve_secrets(config, environ, stages_needing_keys(config))
    config, windows = settle_windows(config, secrets)
    started = _connect(config)
    try:
        pin = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        state: Any = ray.remote(RunState).options(
            num_cpus=0, max_concurrency=_STATE_THREADS, scheduling_strategy=pin
        ).remote(config, Path(run_dir).expanduser().resolve(), list(instances), windows)
        limiters: Any = ray.remote(SharedLimiters).options(num_cpus=0, scheduling_strategy=pin).remote()
        try:
            try:
                ray.get(state.remaining.remote())
            except RayError as exc:
                raise InfraError(f"the run state could not be opened on the driver's node: {exc}") from exc
            job = _Job(config, dict(secrets), state, limiters, environments, sandboxes, stop_after)
            return _drive(job, instances, events, poll_s)
        finally:
            try:
                ray.get(state.close.remote())
            except RayError as exc:
                log.error("closing the run store failed: %s", exc)
            ray.kill(state)
            ray.kill(limiters)
    finally:
        if started:
            ray.shutdown()


def _drive(
    job: _Job, instances: Sequence[Instance], events: Callable[[PipelineEvent], None], poll_s: float
) -> dict[str, str]:
    config = job.config
    task = ray.remote(_instance_task).options(
        max_retries=config.ray.max_retries, retry_exceptions=False,
        num_cpus=config.ray.cpus_per_instance, scheduling_strategy="SPREAD",
    )
    job_ref = ray.put(job)
    queue = deque(instances)
    pending: dict[Any, Instance] = {}
    statuses: dict[str, str] = {}
    try:
        while queue or pending:
            while queue and len(pending) < config.max_concurrent_instances:
                left = len(queue)  # as in the local executor: instances not started yet, this one included
                instance = queue.popleft()
                ref = task.remote(job_ref, instance, left)
                pending[ref] = instance
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in ready:
                instance = pending.pop(ref)
                statuses[instance.instance_id] = _outcome(job, ref, instance)
            _forward_events(job.state, events)
    except BaseException:
        _cancel(pending)
        raise
    finally:
        _forward_events(job.state, events)
    return {instance.instance_id: statuses[instance.instance_id] for instance in instances}


def _outcome(job: _Job, ref: Any, instance: Instance) -> str:
    """The task's status; a task that never returned one is recorded as the instance's failure."""
    iid = instance.instance_id
    try:
        status: str = ray.get(ref)
    except RayTaskError as exc:  # raised outside run_instance (building the node's services): not retried
        cause = _unwrapped(exc)
        kind, message = str(failure_kind(cause)), f"{type(cause).__name__}: {cause}"
    except RayError as exc:  # every attempt lost (worker or node died)
        kind = str(FailureKind.INFRA)
        message = f"lost {job.config.ray.max_retries + 1} time(s): {type(exc).__name__}: {exc}"
    else:
        ray.get(job.limiters.release_owner.remote(iid))
        return status
    log.error("%s failed on the cluster (%s): %s", iid, kind, message)
    ray.get(job.state.record_failure.remote(iid, kind, message))
    ray.get(job.limiters.release_owner.remote(iid))
    return "failed"


def _forward_events(state: Any, events: Callable[[PipelineEvent], None]) -> None:
    try:
        drained = ray.get(state.drain_events.remote())
    except RayError as exc:
        log.warning("pipeline events are lost: %s", exc)
        return
    for event in drained:
        events(event)


def _cancel(pending: Mapping[Any, Instance], grace_s: float = 30.0) -> None:
    """Interrupt running tasks (their sandboxes close on the way out); they resume on the next run."""
    for ref in pending:
        ray.cancel(ref)
    if pending:
        ray.wait(list(pending), num_returns=len(pending), timeout=grace_s)
