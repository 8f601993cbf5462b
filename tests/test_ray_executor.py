"""``executor: ray``: the store behind a driver-side actor, budgets and limits shared, lost workers retried.

The forwarding (RemoteStore, RemoteBudget, RemoteLimiter) is tested in process
with the same RunState and SharedLimiters the actors run. The Ray tests run the
shapes pipeline (oracle models, real Docker sandboxes) as Ray tasks on a local
Ray instance: once plainly, once with the first worker killed by SIGKILL in the
middle of generation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Self

import pytest

from codemonkeys.config import ProviderLimits, SandboxConfig, load_config
from codemonkeys.edits import normalize_patch
from codemonkeys.errors import BudgetExceeded
from codemonkeys.llm.types import CallTag
from codemonkeys.pipeline.remote import (
    STORE_METHODS,
    RemoteBudget,
    RemoteStore,
    RunState,
    local_transport,
)
from codemonkeys.pipeline.remote_limits import RemoteLimiter, SharedLimiters, limiter_key
from codemonkeys.sandbox.base import EnvironmentRef, SandboxFactory
from codemonkeys.store import DB_NAME, RunStore
from codemonkeys.store.records import CallRecord, TrajectoryRecord, TurnRecord
from pipeline_support import GOLD, base_overrides, shapes, shapes_instance  # noqa: F401
from sandbox_support import docker_client  # noqa: F401
from codemonkeys.swebench.instances import Instance

LIFECYCLE = {"open", "open_existing", "close", "transaction"}


# --- forwarding, in process ---------------------------------------------------------


def _state(tmp_path: Path, **budget: float) -> RunState:
    overrides = [f"budget.{key}={value}" for key, value in budget.items()]
    return RunState(load_config(None, overrides), tmp_path / "run", [])


def test_remote_store_forwards_every_data_method_of_the_run_store() -> None:
    public = {
        name for name, member in inspect.getmembers(RunStore, inspect.isfunction)
        if not name.startswith("_") and name not in LIFECYCLE
    }
    assert public == set(STORE_METHODS)
    for name in public:
        assert inspect.signature(getattr(RemoteStore, name)) == inspect.signature(getattr(RunStore, name)), name


def test_remote_store_reads_and_writes_the_drivers_store(tmp_path: Path) -> None:
    state = _state(tmp_path)
    store = RemoteStore(local_transport(state))
    store.add_instance("i-1", "o/r", {"x": 1})
    store.set_instance_state("i-1", "generation", "running")
    store.record_call(CallRecord(stage="editing", instance_id="i-1", trajectory=None, request_hash="h", model="m", cost_usd=0.5), "blob")
    record = TrajectoryRecord("i-1/editing/0", "i-1", "editing", 0, "running", None, None, "{}")
    store.save_turn(TurnRecord("i-1/editing/0", 1, "{}"), record)

    assert store.cached_response("h") == "blob"
    assert store.trajectory("i-1/editing/0") == record
    assert [row.group for row in store.ledger(group_by=("instance_id",))] == [("i-1",)]
    assert store.total_cost(instance_id="i-1") == 0.5
    assert store.token_counts("tok", iter(["a"])) == {}
    state.close()
    with RunStore.open_existing(tmp_path / "run") as direct:  # it really is the SQLite file on the driver
        assert direct.instance_states()[0]["stage"] == "generation"
        assert [turn.turn for turn in direct.turns("i-1/editing/0")] == [1]
    with pytest.raises(AttributeError):
        _state(tmp_path).store_call("transaction", (), {})


def test_remote_budget_is_global_and_a_lost_attempt_gives_its_reservations_back(tmp_path: Path) -> None:
    state = _state(tmp_path, total_usd=1.0)
    call = local_transport(state)
    first, second = RemoteBudget(call, "i-1"), RemoteBudget(call, "i-2")
    held = first.reserve(CallTag("editing", "i-1"), 0.6)
    with pytest.raises(BudgetExceeded):  # another worker's instance sees the first one's reservation
        second.reserve(CallTag("editing", "i-2"), 0.6)
    assert second.remaining() == pytest.approx(0.4)

    assert state.begin_attempt("i-1") == 1  # the worker holding the reservation is lost ...
    assert state.begin_attempt("i-1") == 2  # ... and the retry starts: the reservation is released
    assert second.remaining() == pytest.approx(1.0)
    first.settle(held, 0.6)  # a late settle of a released reservation books nothing
    assert state.budget.spent_total == 0.0

    second.settle(second.reserve(CallTag("editing", "i-2"), 0.6), 0.25)
    assert first.remaining() == pytest.approx(0.75)


def _limiter_transport(shared: SharedLimiters) -> tuple[Any, Any]:
    pending: list[asyncio.Task[Any]] = []

    async def call(method: str, *args: Any) -> Any:
        return await getattr(shared, method)(*args)

    def send(method: str, *args: Any) -> None:
        pending.append(asyncio.ensure_future(getattr(shared, method)(*args)))

    return call, send


async def test_shared_limiter_caps_all_workers_together_and_frees_a_lost_workers_slot() -> None:
    shared = SharedLimiters()
    call, send = _limiter_transport(shared)
    limits = ProviderLimits(max_in_flight=1)
    worker_a = RemoteLimiter(call, send, "anthropic", limits, owner="i-1")
    worker_b = RemoteLimiter(call, send, "anthropic", limits, owner="i-2")

    lost = worker_a.slot(10)
    await lost.__aenter__()  # worker A dies holding the only slot
    waiting = asyncio.ensure_future(worker_b.slot(10).__aenter__())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # B waits for A's slot, although it is another process
    assert await shared.release_owner("i-1") == 1  # A's instance is retried: its slot is freed
    permit = await asyncio.wait_for(waiting, 5)
    permit.settle(7)
    assert await shared.held() == 1

    cancelled = asyncio.ensure_future(worker_a.slot(10).__aenter__())
    await asyncio.sleep(0.05)
    cancelled.cancel()  # a waiter cancelled before its grant ...
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.sleep(0.05)
    await shared.release_owner("i-2")  # ... gets the slot next, and gives it back at once
    await asyncio.sleep(0.05)
    assert await shared.held() == 0


def test_limiter_key_names_the_provider_whose_settings_the_hub_passes() -> None:
    config = load_config(None, [])
    assert limiter_key(config, config.providers["openai"]) == "openai"
    assert limiter_key(config, config.providers["anthropic"]) == "anthropic"


# --- on a local Ray instance ----------------------------------------------------------


class RecordingEnvironment:
    """The prebuilt image, and, from inside the worker, which process asked and which files it had open."""

    def __init__(self, ref: EnvironmentRef, log: Path) -> None:
        self.ref = ref
        self.log = log

    async def environment(self, instance: Instance) -> EnvironmentRef:
        fd_dir = Path("/proc/self/fd")
        files = []
        for fd in os.listdir(fd_dir):
            try:
                files.append(os.readlink(fd_dir / fd))
            except OSError:
                continue
        with self.log.open("a") as stream:
            stream.write(json.dumps({"pid": os.getpid(), "files": files}) + "\n")
        return self.ref


class DieOnFirstAttempt:
    """Makes the node's sandbox factory; the first worker to ask is killed (SIGKILL) at its Nth command."""

    def __init__(self, marker: Path, after_execs: int) -> None:
        self.marker = marker
        self.after_execs = after_execs

    def __call__(self, config: SandboxConfig) -> SandboxFactory:
        from codemonkeys.sandbox.factory import make_sandbox_factory

        factory = make_sandbox_factory(config)
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return factory
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return _DyingFactory(factory, self.after_execs)


class _DyingFactory:
    def __init__(self, inner: Any, after_execs: int) -> None:
        self.inner = inner
        self.left = [after_execs]

    def sandbox(self, env: EnvironmentRef) -> Any:
        return _DyingSandbox(self.inner.sandbox(env), self.left)


class _DyingSandbox:
    def __init__(self, inner: Any, left: list[int]) -> None:
        self.inner = inner
        self.left = left

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    async def exec(self, argv: Any, **kwargs: Any) -> Any:
        self.left[0] -= 1
        if self.left[0] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)  # the node is lost mid-generation
        return await self.inner.exec(argv, **kwargs)


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    # Workers unpickle this module's classes by value: they cannot import the tests directory.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_on_ray(  # type: ignore[no-untyped-def]
    tmp_path: Path, shapes, *, retries: int = 2, **hooks: Any
) -> tuple[dict[str, str], Path]:
    from codemonkeys.pipeline.ray_executor import run_instances_ray

    commit, mirrors, ref = shapes
    config = load_config(None, [
        "models.relevance.model=oracle", "models.ranking.model=oracle",
        "models.testing.model=oracle-noisy:0.5", "models.editing.model=oracle-noisy:0.5",
        "models.selection.model=oracle", "generation.trajectories=4", "executor=ray", f"ray.max_retries={retries}",
        *base_overrides(mirrors),
    ])
    log = tmp_path / "environment-calls.jsonl"
    events: list[Any] = []
    statuses = run_instances_ray(
        config, tmp_path / "run", [shapes_instance(commit)], {},
        events=events.append, environments=RecordingEnvironment(ref, log), **hooks,
    )
    final = "done" if statuses["local__shapes-1"] == "done" else "failed"
    assert events and events[-1].instance_id == "local__shapes-1" and events[-1].status == final
    return statuses, log


def _paid_twice(store: RunStore) -> list[str]:
    paid = Counter(call.request_hash for call in store.calls() if not call.cached and call.error_kind is None)
    return [key for key, count in paid.items() if count > 1]


@pytest.mark.docker
@pytest.mark.slow
def test_ray_run_selects_the_gold_patch_and_only_the_driver_opens_the_store(
    tmp_path: Path, shapes, local_ray  # type: ignore[no-untyped-def]
) -> None:
    statuses, log = _run_on_ray(tmp_path, shapes)
    assert statuses == {"local__shapes-1": "done"}

    (worker,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert worker["pid"] != os.getpid()  # the instance ran in a Ray worker ...
    assert not [f for f in worker["files"] if f.endswith(DB_NAME)]  # ... which never opened the store
    with RunStore.open_existing(tmp_path / "run") as store:
        candidates = store.candidates("local__shapes-1")
        assert len(candidates) == 4
        assert normalize_patch(GOLD) in {normalize_patch(c["patch"]) for c in candidates}
        selected = store.selection("local__shapes-1")
        assert selected is not None
        chosen = [c for c in candidates if c["candidate_id"] == selected["candidate_id"]]
        assert normalize_patch(chosen[0]["patch"]) == normalize_patch(GOLD)
        assert {d.path for d in store.context_decisions("local__shapes-1") if d.relevant} == {"shapes.py"}
        assert store.calls() and _paid_twice(store) == []


@pytest.mark.docker
@pytest.mark.slow
def test_a_lost_worker_is_retried_and_the_instance_finishes_without_paying_twice(
    tmp_path: Path, shapes, local_ray, docker_client  # type: ignore[no-untyped-def]
) -> None:
    marker = tmp_path / "first-attempt"
    statuses, log = _run_on_ray(tmp_path, shapes, sandboxes=DieOnFirstAttempt(marker, after_execs=2))
    assert statuses == {"local__shapes-1": "done"}

    lost_pid = int(marker.read_text())
    pids = [json.loads(line)["pid"] for line in log.read_text().splitlines()]
    assert pids[0] == lost_pid and len(set(pids)) == 2  # killed once, then finished by another worker
    with RunStore.open_existing(tmp_path / "run") as store:
        assert store.instance_states()[0]["status"] == "done"
        selected = store.selection("local__shapes-1")
        chosen = [c for c in store.candidates("local__shapes-1") if c["candidate_id"] == selected["candidate_id"]]
        assert normalize_patch(chosen[0]["patch"]) == normalize_patch(GOLD)
        assert _paid_twice(store) == []
        assert any(record.status != "running" for record in store.trajectories("local__shapes-1"))
    left = docker_client.containers.list(all=True, filters={"label": f"codemonkeys.pid={lost_pid}"})
    assert left == []  # the retry removed the lost worker's sandboxes


class NoSandboxes:
    """A node without a sandbox backend: building its services fails (an application error)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, config: SandboxConfig) -> SandboxFactory:
        from codemonkeys.errors import SandboxError

        with self.log.open("a") as stream:
            stream.write(f"{os.getpid()}\n")
        raise SandboxError("no Docker daemon answers on this node")


@pytest.mark.docker
@pytest.mark.slow
def test_a_task_lost_more_often_than_retried_is_an_infra_failure_and_the_next_run_resumes(
    tmp_path: Path, shapes, local_ray  # type: ignore[no-untyped-def]
) -> None:
    marker = tmp_path / "first-attempt"
    statuses, _ = _run_on_ray(tmp_path, shapes, retries=0, sandboxes=DieOnFirstAttempt(marker, after_execs=1))
    assert statuses == {"local__shapes-1": "failed"}
    with RunStore.open_existing(tmp_path / "run") as store:
        (state,) = store.instance_states()
        assert (state["stage"], state["status"], state["failure_kind"]) == ("generation", "failed", "infra")
        assert "lost 1 time(s)" in state["failure"]
        paid_before = len([call for call in store.calls() if not call.cached])

    statuses, _ = _run_on_ray(tmp_path, shapes, retries=0)  # as `--retry-infra` would rerun it
    assert statuses == {"local__shapes-1": "done"}
    with RunStore.open_existing(tmp_path / "run") as store:
        assert _paid_twice(store) == []
        assert paid_before > 0 and store.selection("local__shapes-1") is not None


@pytest.mark.docker
def test_an_application_error_on_the_node_is_recorded_not_retried(tmp_path: Path, shapes, local_ray) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "attempts"
    statuses, _ = _run_on_ray(tmp_path, shapes, retries=2, sandboxes=NoSandboxes(log))
    assert statuses == {"local__shapes-1": "failed"}
    assert len(log.read_text().splitlines()) == 1  # Ray retries lost workers, not our exceptions
    with RunStore.open_existing(tmp_path / "run") as store:
        (state,) = store.instance_states()
        assert (state["status"], state["failure_kind"]) == ("failed", "infra")
        assert "SandboxError: no Docker daemon answers" in state["failure"]


def test_ray_client_addresses_are_refused_because_the_store_lives_on_the_driver(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from codemonkeys.errors import ConfigError
    from codemonkeys.pipeline.ray_executor import run_instances_ray

    config = load_config(None, ["executor=ray", "ray.address=ray://head:10001"])
    with pytest.raises(ConfigError, match="Ray Client"):
        run_instances_ray(config, tmp_path / "run", [shapes_instance("0" * 40)], {})
    assert not (tmp_path / "run").exists()
