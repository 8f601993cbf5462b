"""Trajectory state, saved after every turn so a killed run resumes where it stopped."""

from __future__ import annotations

import json
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from ..store.records import TrajectoryRecord, TurnRecord

Status = Literal["running", "done", "limit", "failed"]


class ChatTurn(BaseModel):
    """One message of the conversation after the system prompt."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str


class TrajectoryState(BaseModel):
    """Everything needed to continue a trajectory; the conversation is replayed as is.

    ``draft`` holds the new content of each file the edits changed (``None``:
    deleted) and ``originals`` the content at the base commit (``None``: the
    file did not exist), so the candidate diff never needs the sandbox.
    """

    instance_id: str
    kind: Literal["testing", "editing"]
    index: int
    system: str
    messages: list[ChatTurn] = []
    calls: int = 0
    test: str | None = None
    test_changed: bool = False
    draft: dict[str, str | None] = {}
    originals: dict[str, str | None] = {}
    status: Status = "running"
    failure_kind: str | None = None
    failure: str | None = None

    @property
    def trajectory_id(self) -> str:
        return trajectory_id(self.instance_id, self.kind, self.index)

    @property
    def finished(self) -> bool:
        return self.status != "running"


def trajectory_id(instance_id: str, kind: str, index: int) -> str:
    return f"{instance_id}/{kind}/{index}"


class TrajectoryStore(Protocol):
    """The part of the store trajectories use."""

    def save_turn(self, turn: TurnRecord, trajectory: TrajectoryRecord | None = None) -> None: ...

    def trajectory(self, trajectory_id: str) -> TrajectoryRecord | None: ...


def save(store: TrajectoryStore, state: TrajectoryState, event: dict[str, object]) -> None:
    """Persist a turn's event and the new state in one transaction."""
    record = TrajectoryRecord(
        trajectory_id=state.trajectory_id,
        instance_id=state.instance_id,
        kind=state.kind,
        index=state.index,
        status=state.status,
        failure_kind=state.failure_kind,
        failure=state.failure,
        state=state.model_dump_json(),
    )
    store.save_turn(TurnRecord(state.trajectory_id, state.calls, json.dumps(event)), record)


def load(store: TrajectoryStore, instance_id: str, kind: str, index: int) -> TrajectoryState | None:
    """The saved state of a trajectory, ``None`` when it never started."""
    record = store.trajectory(trajectory_id(instance_id, kind, index))
    if record is None:
        return None
    return TrajectoryState.model_validate_json(record.state)
