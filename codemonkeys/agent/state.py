"""What every trajectory saves: the conversation, its counters and how it ended.

A trajectory is saved after every turn, so a killed run resumes where it
stopped; the saved conversation is replayed as is, which makes the request in
flight at the kill byte-identical and the response cache answers it.
"""

from __future__ import annotations

import json
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from ..store.records import TrajectoryRecord, TurnRecord

Status = Literal["running", "done", "limit", "context_limit", "failed"]
"""``limit`` and ``context_limit`` keep what the trajectory made (its test, its edit)."""


class ChatTurn(BaseModel):
    """One message of the conversation after the system prompt."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str


class AgentState(BaseModel):
    """The part of a trajectory's state the loop owns; each configuration adds its own fields."""

    instance_id: str
    kind: str
    index: int = 0
    system: str
    messages: list[ChatTurn] = []
    calls: int = 0
    parse_errors: int = 0
    # Server tokens per counted token, the largest seen so far: our offline counter
    # (cl100k) undercounts models with other tokenizers, and the server's own usage
    # tells by how much, so the window check calibrates itself from the first answer.
    token_ratio: float = 1.0
    status: Status = "running"
    failure_kind: str | None = None
    failure: str | None = None

    @property
    def trajectory_id(self) -> str:
        return f"{self.instance_id}/{self.kind}/{self.index}"

    @property
    def finished(self) -> bool:
        return self.status != "running"


class TrajectoryStore(Protocol):
    """The part of the store trajectories use."""

    def save_turn(self, turn: TurnRecord, trajectory: TrajectoryRecord | None = None) -> None: ...

    def trajectory(self, trajectory_id: str) -> TrajectoryRecord | None: ...


def save(store: TrajectoryStore, state: AgentState, event: dict[str, object]) -> None:
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
