"""The selection trajectory: a configuration of the agent loop that compares candidates and chooses.

Each turn the model either names a candidate (``<choice>N</choice>``) or
writes a test, which runs on the original code and on every candidate
through the cached test runner; the outputs come back side by side. With two
or more candidates the first answer must be a test (the paper's rule): a
choice made before any test of its own ran is re-asked. The loop in
:mod:`codemonkeys.agent` owns re-asks, the turn limit, the context window,
saving after every turn and resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..agent import Agent, AgentState, Finished, LoopDeps, Observation, TestRunnerLike, TrajectoryStore, execution_view
from ..config import ModelSettings, SelectionConfig
from ..errors import ParseError, TurnLimitReached
from ..llm.types import ChatService
from ..prompting import Prompt
from ..store.records import TestExecution
from .answer import SelectionAnswer, SelectionChoice, parse_selection_answer

KIND = "selection"


class SelectionState(AgentState):
    """Everything needed to continue a selection trajectory.

    ``candidates`` are the group keys of the candidates as numbered in the
    prompt (1-based), ``patches`` their diffs; ``key`` digests the inputs, so
    different inputs (more candidates, another model) start a new trajectory.
    """

    kind: Literal["selection"] = "selection"
    key: str
    candidates: list[str]
    patches: list[str]
    tests: list[str] = []
    choice: int | None = None

    @property
    def trajectory_id(self) -> str:
        return selection_trajectory_id(self.instance_id, self.key)


def selection_trajectory_id(instance_id: str, key: str) -> str:
    return f"{instance_id}/{KIND}/{key}"


def inputs_key(*parts: object) -> str:
    """A short digest of what determines a trajectory (prompt, candidates, model)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


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


def run_views(executions: Sequence[tuple[str, TestExecution]], limit: int) -> list[dict[str, Any]]:
    """Labelled runs for the prompt, each output cut in the middle past ``limit``."""
    return [{"label": label, **execution_view(execution, limit)} for label, execution in executions]


async def run_on_all(runner: TestRunnerLike, patches: Sequence[str], script: str) -> list[tuple[str, TestExecution]]:
    """One script on the original code and on every candidate, labelled for the prompt."""
    runs = await asyncio.gather(runner.run("", script), *(runner.run(p, script) for p in patches))
    labels = ["original code", *(f"candidate {i}" for i in range(1, len(patches) + 1))]
    return list(zip(labels, runs, strict=True))


class SelectionTrajectory:
    """Tests on every candidate until the model chooses; the turn limit without a choice is a model failure."""

    def __init__(self, deps: SelectionTrajectoryDeps) -> None:
        self.deps = deps

    @property
    def max_turns(self) -> int:
        return self.deps.config.max_turns

    def _turns_left(self, state: SelectionState) -> int:
        return self.max_turns - state.calls

    async def first(self, state: SelectionState) -> Observation:
        text = self.deps.prompt.render("selection_first", num_candidates=len(state.candidates))
        return Observation(text, {"action": "start"})

    def parse(self, text: str, state: SelectionState) -> SelectionAnswer:
        count = len(state.candidates)
        answer = parse_selection_answer(text, count)
        if isinstance(answer, SelectionChoice) and count >= 2 and not state.tests:
            raise ParseError(
                "write a test before choosing: your first answer must be a <test>, which runs on the "
                "original code and on every candidate; choose only after you have seen its results"
            )
        return answer

    async def act(self, answer: SelectionAnswer, state: SelectionState) -> Observation:
        if isinstance(answer, SelectionChoice):
            state.choice = answer.candidate
            raise Finished("done", {"candidate": answer.candidate})
        script = answer.test.script
        state.tests.append(script)
        runs = await run_on_all(self.deps.runner, state.patches, script)
        views = run_views(runs, self.deps.config.output_limit_chars)
        text = self.deps.prompt.render("selection_feedback", runs=views, turns_left=self._turns_left(state))
        event = {"action": "test", "exit_codes": [run.exit_code for _, run in runs], "test": script, "runs": views}
        return Observation(text, event)

    def reask(self, error: ParseError, state: SelectionState) -> str:
        return self.deps.prompt.render(
            "parse_error", error=str(error), turns_left=self._turns_left(state), tested=bool(state.tests)
        )

    def limit_reached(self, state: SelectionState) -> Finished | TurnLimitReached:
        return TurnLimitReached(f"no valid choice after {self.max_turns} calls ({state.parse_errors} unreadable)")


async def run_selection(deps: SelectionTrajectoryDeps, state: SelectionState) -> SelectionState:
    """Ask until the model chooses; :class:`TurnLimitReached` when it never does."""
    loop = LoopDeps(deps.chat, deps.store, deps.model)
    return await Agent(loop, SelectionTrajectory(deps)).run(state)
