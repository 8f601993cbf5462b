"""The selection trajectory: a model compares the top candidates, may run its own tests, then chooses.

Each turn the model either names a candidate (``<choice>N</choice>``) or
writes a test, which runs on the original code and on every candidate
through the cached test runner; the outputs come back side by side. A
malformed answer is re-asked. State is saved after every turn; a resumed
trajectory replays its conversation, so the request in flight when it was
killed is answered by the response cache instead of being paid twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ..config import ModelSettings, SelectionConfig
from ..errors import ParseError, TurnLimitReached
from ..generation.state import ChatTurn, TrajectoryStore
from ..generation.trajectory import TestRunnerLike, execution_view
from ..llm.types import CallTag, ChatRequest, ChatService, Message
from ..prompting import Prompt
from ..store.records import TestExecution, TrajectoryRecord, TurnRecord
from .answer import SelectionChoice, parse_selection_answer

KIND = "selection"
Status = Literal["running", "done", "failed"]


class SelectionState(BaseModel):
    """Everything needed to continue a selection trajectory.

    ``candidates`` are the group keys of the candidates as numbered in the
    prompt (1-based), ``patches`` their diffs; ``key`` digests the inputs, so
    different inputs (more candidates, another model) start a new trajectory.
    """

    instance_id: str
    key: str
    system: str
    candidates: list[str]
    patches: list[str]
    messages: list[ChatTurn] = []
    calls: int = 0
    tests: list[str] = []
    parse_errors: int = 0
    choice: int | None = None
    status: Status = "running"
    failure_kind: str | None = None
    failure: str | None = None

    @property
    def trajectory_id(self) -> str:
        return selection_trajectory_id(self.instance_id, self.key)

    @property
    def finished(self) -> bool:
        return self.status != "running"


def selection_trajectory_id(instance_id: str, key: str) -> str:
    return f"{instance_id}/{KIND}/{key}"


def inputs_key(*parts: object) -> str:
    """A short digest of what determines a trajectory (prompt, candidates, model)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def save(store: TrajectoryStore, state: SelectionState, event: dict[str, object]) -> None:
    """Persist a turn's event and the new state together."""
    record = TrajectoryRecord(
        trajectory_id=state.trajectory_id,
        instance_id=state.instance_id,
        kind=KIND,
        index=0,
        status=state.status,
        failure_kind=state.failure_kind,
        failure=state.failure,
        state=state.model_dump_json(),
    )
    store.save_turn(TurnRecord(state.trajectory_id, state.calls, json.dumps(event)), record)


def load(store: TrajectoryStore, instance_id: str, key: str) -> SelectionState | None:
    record = store.trajectory(selection_trajectory_id(instance_id, key))
    return None if record is None else SelectionState.model_validate_json(record.state)


@dataclass
class SelectionTrajectoryDeps:
    """What the trajectory talks to, behind narrow protocols."""

    chat: ChatService
    store: TrajectoryStore
    runner: TestRunnerLike
    prompt: Prompt
    model: ModelSettings
    config: SelectionConfig


def run_views(
    executions: Sequence[tuple[str, TestExecution]], limit: int
) -> list[dict[str, Any]]:
    """Labelled runs for the prompt, each output cut in the middle past ``limit``."""
    return [{"label": label, **execution_view(execution, limit)} for label, execution in executions]


async def run_on_all(
    runner: TestRunnerLike, patches: Sequence[str], script: str
) -> list[tuple[str, TestExecution]]:
    """One script on the original code and on every candidate, labelled for the prompt."""
    runs = await asyncio.gather(runner.run("", script), *(runner.run(p, script) for p in patches))
    labels = ["original code", *(f"candidate {i}" for i in range(1, len(patches) + 1))]
    return list(zip(labels, runs, strict=True))


def _request(state: SelectionState, model: ModelSettings) -> ChatRequest:
    last = len(state.messages) - 1
    return ChatRequest(
        messages=tuple(Message(t.role, t.content, cache=(i == last)) for i, t in enumerate(state.messages)),
        system=state.system,
        max_tokens=model.max_output_tokens,
        temperature=model.temperature,
        system_cache=True,
    )


async def run_selection(deps: SelectionTrajectoryDeps, state: SelectionState) -> SelectionState:
    """Ask until the model chooses; :class:`TurnLimitReached` when it never does."""
    limit = deps.config.max_turns
    count = len(state.candidates)
    if not state.messages:
        state.messages.append(ChatTurn(role="user", content=deps.prompt.render("selection_first", num_candidates=count)))
        save(deps.store, state, {"action": "start"})
    while not state.finished:
        if state.calls >= limit:
            raise TurnLimitReached(f"no valid choice after {limit} calls ({state.parse_errors} unreadable)")
        tag = CallTag(stage=KIND, instance_id=state.instance_id, trajectory=state.trajectory_id)
        response = await deps.chat.complete(_request(state, deps.model), tag)
        state.calls += 1
        state.messages.append(ChatTurn(role="assistant", content=response.text))
        turns_left = limit - state.calls
        try:
            answer = parse_selection_answer(response.text, count)
        except ParseError as exc:
            state.parse_errors += 1
            error = deps.prompt.render("parse_error", error=str(exc), turns_left=turns_left)
            state.messages.append(ChatTurn(role="user", content=error))
            save(deps.store, state, {"action": "parse_error", "error": str(exc)})
            continue
        if isinstance(answer, SelectionChoice):
            state.choice = answer.candidate
            state.status = "done"
            save(deps.store, state, {"action": "choice", "candidate": answer.candidate, "status": "done"})
            break
        script = answer.test.script
        state.tests.append(script)
        runs = await run_on_all(deps.runner, state.patches, script)
        views = run_views(runs, deps.config.output_limit_chars)
        feedback = deps.prompt.render("selection_feedback", runs=views, turns_left=turns_left)
        state.messages.append(ChatTurn(role="user", content=feedback))
        save(deps.store, state, {"action": "test", "exit_codes": [run.exit_code for _, run in runs]})
    return state
