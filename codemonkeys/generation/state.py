"""The state of a testing or editing trajectory, saved after every turn (see :mod:`codemonkeys.agent`)."""

from __future__ import annotations

from typing import Literal

from ..agent.state import AgentState, ChatTurn, Status, TrajectoryStore, save

__all__ = ["ChatTurn", "Status", "TrajectoryState", "TrajectoryStore", "load", "save", "trajectory_id"]


class TrajectoryState(AgentState):
    """Everything needed to continue a trajectory; the conversation is replayed as is.

    ``draft`` holds the new content of each file the edits changed (``None``:
    deleted) and ``originals`` the content at the base commit (``None``: the
    file did not exist), so the candidate diff never needs the sandbox.
    """

    kind: Literal["testing", "editing"]
    test: str | None = None
    test_changed: bool = False
    draft: dict[str, str | None] = {}
    originals: dict[str, str | None] = {}


def trajectory_id(instance_id: str, kind: str, index: int) -> str:
    return f"{instance_id}/{kind}/{index}"


def load(store: TrajectoryStore, instance_id: str, kind: str, index: int) -> TrajectoryState | None:
    """The saved state of a trajectory, ``None`` when it never started."""
    record = store.trajectory(trajectory_id(instance_id, kind, index))
    if record is None:
        return None
    return TrajectoryState.model_validate_json(record.state)
