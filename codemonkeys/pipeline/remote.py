"""The run's store and budget kept in one place, and the stand-ins workers use to reach them.

In distributed mode one process on the driver's node (:class:`RunState`, run
as a Ray actor) owns the run's SQLite store and its live budget; no worker
ever opens the database. Workers get :class:`RemoteStore` and
:class:`RemoteBudget`, which forward every call through a *transport*:
``transport(method, *args)`` calls ``RunState.<method>(*args)`` wherever it
lives and returns its result (or raises its exception). This module never
imports Ray, so the forwarding is tested with an in-process transport.

Budget reservations belong to an instance; a worker that dies mid-call leaves
its reservations behind, so the next attempt of the same instance releases
them (:meth:`RunState.begin_attempt`) before it reserves anything itself.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..budget import BudgetGuard
from ..config import Config
from ..llm.types import CallTag
from ..store import RunStore
from ..store.records import (
    CallRecord,
    ContextDecision,
    LedgerRow,
    TestExecution,
    TrajectoryRecord,
    TurnRecord,
)
from ..swebench.instances import Instance
from ..llm.windows import ResolvedWindow
from .build import record_run_config, record_windows
from .instance import PipelineEvent

log = logging.getLogger(__name__)

Transport = Callable[..., Any]

# RunStore methods a worker may call: everything but the lifecycle (open, close, transaction).
STORE_METHODS = frozenset({
    "get_meta", "set_meta", "add_instance", "set_instance_state", "instance_states", "instance_data",
    "record_call", "start_call", "finish_call", "cached_response", "calls", "ledger", "total_cost", "put_context_decision",
    "context_decisions", "token_counts", "put_token_counts", "put_result", "get_result",
    "save_trajectory", "save_turn", "turns", "trajectory", "trajectories", "add_candidate", "candidates",
    "put_execution", "get_execution", "put_selection", "selection", "selections",
})


class RunState:
    """The driver side: the one store, the one budget, open reservations, and pipeline events."""

    def __init__(
        self, config: Config, run_dir: Path, instances: Sequence[Instance], windows: Sequence[ResolvedWindow] = ()
    ) -> None:
        self.store = RunStore.open(run_dir)
        record_run_config(self.store, config)
        record_windows(self.store, windows)
        for instance in instances:
            self.store.add_instance(instance.instance_id, instance.repo, instance.model_dump(mode="json"))
        self.budget = BudgetGuard.for_run(config.budget, self.store)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._reservations: dict[int, tuple[str, object]] = {}
        self._attempts: Counter[str] = Counter()
        self._events: deque[PipelineEvent] = deque()

    def store_call(self, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """One store method, by name; only the data methods are reachable."""
        if method not in STORE_METHODS:
            raise AttributeError(f"the run store has no remote method {method!r}")
        return getattr(self.store, method)(*args, **kwargs)

    def begin_attempt(self, instance_id: str) -> int:
        """An attempt of ``instance_id`` starts: drop what a lost earlier attempt still held; its number."""
        with self._lock:
            stale = [rid for rid, (owner, _) in self._reservations.items() if owner == instance_id]
            held = [self._reservations.pop(rid)[1] for rid in stale]
            self._attempts[instance_id] += 1
            attempt = self._attempts[instance_id]
        for reservation in held:
            self.budget.settle(reservation, None)
        if held:
            log.warning("%s: released %d budget reservation(s) of a lost attempt", instance_id, len(held))
        return attempt

    def reserve(self, owner: str, tag: CallTag, worst_case_usd: float | None) -> int:
        reservation = self.budget.reserve(tag, worst_case_usd)
        with self._lock:
            rid = next(self._ids)
            self._reservations[rid] = (owner, reservation)
        return rid

    def settle(self, rid: int, actual_usd: float | None) -> None:
        with self._lock:
            entry = self._reservations.pop(rid, None)
        if entry is not None:  # None: released already because the attempt was given up for lost
            self.budget.settle(entry[1], actual_usd)

    def remaining(self, instance_id: str | None = None) -> float | None:
        return self.budget.remaining(instance_id)

    def push_event(self, event: PipelineEvent) -> None:
        self._events.append(event)

    def drain_events(self) -> list[PipelineEvent]:
        """Events pushed since the last drain, oldest first."""
        events: list[PipelineEvent] = []
        while self._events:
            events.append(self._events.popleft())
        return events

    def record_failure(self, instance_id: str, kind: str, message: str) -> None:
        """An instance whose task never returned (retries used up, or no worker could run it)."""
        self.begin_attempt(instance_id)  # nothing of it is in flight any more
        states = {row["instance_id"]: row for row in self.store.instance_states()}
        stage = states[instance_id]["stage"] if instance_id in states else "context"
        self.store.set_instance_state(instance_id, stage, "failed", kind, message[:2000])
        self._events.append(PipelineEvent(instance_id, stage, "failed", message[:200]))

    def close(self) -> None:
        self.store.close()


class RemoteStore:
    """The run store as a worker sees it: every call is answered by the driver's :class:`RunState`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._transport("store_call", method, args, kwargs)

    def get_meta(self, key: str) -> str | None:
        return self._call("get_meta", key)

    def set_meta(self, key: str, value: str) -> None:
        self._call("set_meta", key, value)

    def add_instance(self, instance_id: str, repo: str, data: dict[str, Any]) -> None:
        self._call("add_instance", instance_id, repo, data)

    def set_instance_state(
        self, instance_id: str, stage: str, status: str, failure_kind: str | None = None, failure: str | None = None
    ) -> None:
        self._call("set_instance_state", instance_id, stage, status, failure_kind, failure)

    def instance_states(self) -> list[dict[str, Any]]:
        return self._call("instance_states")

    def instance_data(self, instance_id: str) -> dict[str, Any]:
        return self._call("instance_data", instance_id)

    def record_call(self, record: CallRecord, cache_response: str | None = None) -> None:
        self._call("record_call", record, cache_response)

    def start_call(self, record: CallRecord) -> int:
        return self._call("start_call", record)

    def finish_call(self, call_id: int, record: CallRecord, cache_response: str | None = None) -> None:
        self._call("finish_call", call_id, record, cache_response)

    def cached_response(self, request_hash: str) -> str | None:
        return self._call("cached_response", request_hash)

    def calls(self, **where: str | None) -> list[CallRecord]:
        return self._call("calls", **where)

    def ledger(self, group_by: Sequence[str] = ("stage", "model"), **where: str | None) -> list[LedgerRow]:
        return self._call("ledger", tuple(group_by), **where)

    def total_cost(self, **where: str | None) -> float:
        return self._call("total_cost", **where)

    def put_context_decision(self, decision: ContextDecision) -> None:
        self._call("put_context_decision", decision)

    def context_decisions(
        self, instance_id: str, model: str | None = None, prompt_version: str | None = None
    ) -> list[ContextDecision]:
        return self._call("context_decisions", instance_id, model, prompt_version)

    def token_counts(self, tokenizer: str, blobs: Sequence[str]) -> dict[str, int]:
        return self._call("token_counts", tokenizer, list(blobs))

    def put_token_counts(self, tokenizer: str, counts: Mapping[str, int]) -> None:
        self._call("put_token_counts", tokenizer, dict(counts))

    def put_result(self, instance_id: str, stage: str, key: str, data: Any) -> None:
        self._call("put_result", instance_id, stage, key, data)

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None:
        return self._call("get_result", instance_id, stage, key)

    def save_trajectory(self, record: TrajectoryRecord) -> None:
        self._call("save_trajectory", record)

    def save_turn(self, turn: TurnRecord, trajectory: TrajectoryRecord | None = None) -> None:
        self._call("save_turn", turn, trajectory)

    def turns(self, trajectory_id: str) -> list[TurnRecord]:
        return self._call("turns", trajectory_id)

    def trajectory(self, trajectory_id: str) -> TrajectoryRecord | None:
        return self._call("trajectory", trajectory_id)

    def trajectories(self, instance_id: str | None = None, kind: str | None = None) -> list[TrajectoryRecord]:
        return self._call("trajectories", instance_id, kind)

    def add_candidate(
        self, candidate_id: str, instance_id: str, source: str, patch: str, patch_hash: str, data: dict[str, Any]
    ) -> None:
        self._call("add_candidate", candidate_id, instance_id, source, patch, patch_hash, data)

    def candidates(self, instance_id: str) -> list[dict[str, Any]]:
        return self._call("candidates", instance_id)

    def put_execution(self, execution: TestExecution) -> None:
        self._call("put_execution", execution)

    def get_execution(self, env_key: str, patch_hash: str, test_hash: str, attempt: int = 0) -> TestExecution | None:
        return self._call("get_execution", env_key, patch_hash, test_hash, attempt)

    def put_selection(self, instance_id: str, candidate_id: str | None, method: str, data: dict[str, Any]) -> None:
        self._call("put_selection", instance_id, candidate_id, method, data)

    def selection(self, instance_id: str) -> dict[str, Any] | None:
        return self._call("selection", instance_id)

    def selections(self) -> list[dict[str, Any]]:
        return self._call("selections")


class RemoteBudget:
    """Implements :class:`~codemonkeys.llm.gateway.SpendGuard` (and ``remaining``) against the driver's budget.

    Budgets stay global and live: every worker reserves from the same guard.
    """

    def __init__(self, transport: Transport, owner: str) -> None:
        self._transport = transport
        self._owner = owner

    def reserve(self, tag: CallTag, worst_case_usd: float | None) -> object:
        return self._transport("reserve", self._owner, tag, worst_case_usd)

    def settle(self, reservation: object, actual_usd: float | None) -> None:
        self._transport("settle", reservation, actual_usd)

    def remaining(self, instance_id: str | None = None) -> float | None:
        return self._transport("remaining", instance_id)


def local_transport(state: RunState) -> Transport:
    """Calls ``state`` in this process (tests, and a single-machine stand-in for the actor)."""

    def call(method: str, *args: Any) -> Any:
        return getattr(state, method)(*args)

    return call

