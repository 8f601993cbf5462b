"""The testing and editing trajectories (paper section 3.2): two configurations of the agent loop.

Each configuration names its words (``prompts/generation.j2``), its answer
parser (:mod:`.answers`) and its act; the loop in :mod:`codemonkeys.agent`
owns everything else (re-asks, the turn limit, the context window, saving,
resume).

* Testing: a ``<test>`` runs on the original code; ``<done/>`` ends it, but
  only once there is a test. At the turn limit it keeps its last test, or
  fails (``TurnLimitReached``) when it never wrote one.
* Editing: edits accumulate on a draft; each turn the test (the model may
  replace it) runs on the original and on the edited code, and the model sees
  both runs, the diff and the current text of every file it changed.
  ``<done/>``, the turn limit and the context window all keep the draft.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..agent import Agent, Finished, LoopDeps, Observation, SourceFiles, TestRunnerLike, execution_view
from ..config import GenerationConfig, ModelSettings
from ..edits import EditBlock, EditsNotApplied, apply_edits, make_diff
from ..errors import ParseError, TurnLimitReached
from ..llm.types import ChatService
from ..prompting import Prompt
from ..store.records import TestExecution
from .answers import EditingAnswer, TestingAnswer, parse_editing_answer, parse_testing_answer
from .state import TrajectoryState, TrajectoryStore
from .views import file_view

__all__ = [
    "EditingTrajectory",
    "SourceFiles",
    "TestRunnerLike",
    "TestingTrajectory",
    "TrajectoryDeps",
    "changed_files",
    "current_files",
    "draft_diff",
    "execution_view",
    "run_editing",
    "run_testing",
]


@dataclass
class TrajectoryDeps:
    """What a trajectory talks to; all of it behind narrow protocols."""

    chat: ChatService
    store: TrajectoryStore
    runner: TestRunnerLike
    sources: SourceFiles
    prompt: Prompt
    model: ModelSettings
    config: GenerationConfig
    warm: asyncio.Event | None = None

    def loop(self) -> LoopDeps:
        return LoopDeps(self.chat, self.store, self.model, self.warm)


class TestingTrajectory:
    """Write a reproduction test until the model is content with it."""

    __test__ = False

    def __init__(self, deps: TrajectoryDeps) -> None:
        self.deps = deps

    @property
    def max_turns(self) -> int:
        return self.deps.config.testing_max_turns

    async def first(self, state: TrajectoryState) -> Observation:
        return Observation(self.deps.prompt.render("testing_first"), {"action": "start"})

    def parse(self, text: str, state: TrajectoryState) -> TestingAnswer:
        answer = parse_testing_answer(text)
        if answer.done and state.test is None:
            raise ParseError("there is no test yet: write the test before answering <done/>")
        return answer

    async def act(self, answer: TestingAnswer, state: TrajectoryState) -> Observation:
        if answer.done:
            raise Finished("done")
        assert answer.test is not None
        state.test = answer.test.script
        execution = await self.deps.runner.run("", state.test)
        view = execution_view(execution, self.deps.config.output_limit_chars)
        event = {"action": "test", "exit_code": execution.exit_code, "test": state.test, "original": view}
        return Observation(self.deps.prompt.render("testing_feedback", **view), event)

    def reask(self, error: ParseError, state: TrajectoryState) -> str:
        return self.deps.prompt.render("parse_error", error=str(error))

    def limit_reached(self, state: TrajectoryState) -> Finished | TurnLimitReached:
        if state.test is None:
            return TurnLimitReached(f"no reproduction test after {self.max_turns} calls")
        return Finished("limit")


def current_files(state: TrajectoryState) -> dict[str, str]:
    """The files as the draft leaves them (originals overlaid by the draft; deleted ones dropped)."""
    files = {path: text for path, text in state.originals.items() if text is not None}
    for path, text in state.draft.items():
        if text is None:
            files.pop(path, None)
        else:
            files[path] = text
    return files


def changed_files(state: TrajectoryState, limit_chars: int) -> list[dict[str, Any]]:
    """Every file the draft changed, by path, with its exact current text (see :mod:`.views`)."""
    return [
        file_view(path, state.originals.get(path), state.draft[path], limit_chars) for path in sorted(state.draft)
    ]


def draft_diff(state: TrajectoryState) -> str:
    """The candidate: the draft against the base commit."""
    originals = {path: text for path, text in state.originals.items() if text is not None}
    return make_diff(originals, state.draft)


class EditingTrajectory:
    """Iterate on a draft edit, running the test on original and edited code each turn."""

    def __init__(self, deps: TrajectoryDeps) -> None:
        self.deps = deps

    @property
    def max_turns(self) -> int:
        return self.deps.config.max_iterations

    def _view(self, execution: TestExecution) -> dict[str, object]:
        return execution_view(execution, self.deps.config.output_limit_chars)

    async def first(self, state: TrajectoryState) -> Observation:
        assert state.test is not None, "an editing trajectory starts from a test"
        original = await self.deps.runner.run("", state.test)
        view = self._view(original)
        text = self.deps.prompt.render("editing_first", test=state.test, original=view)
        return Observation(text, {"action": "start", "exit_code": original.exit_code, "test": state.test, "original": view})

    def parse(self, text: str, state: TrajectoryState) -> EditingAnswer:
        return parse_editing_answer(text)

    async def act(self, answer: EditingAnswer, state: TrajectoryState) -> Observation:
        if answer.done:
            raise Finished("done")
        note = ""
        error = None
        if answer.edits:
            error = await self._apply(state, answer.edits)
            if error is not None:
                note = f"Your edits were not applied, so the code is as before them:\n{error}"
        state.test_changed = answer.test is not None
        if answer.test is not None:
            state.test = answer.test.script
        diff = draft_diff(state)
        original, edited = await self._run_both(state, diff)
        views = {"original": self._view(original), "edited": self._view(edited)}
        text = self.deps.prompt.render(
            "editing_feedback",
            test_changed=state.test_changed,
            diff=diff,
            files=changed_files(state, self.deps.config.changed_file_limit_chars),
            note=note,
            **views,
        )
        # The inspector (codemonkeys show) reads these: the runs, the test as it stood, why edits failed.
        event = {
            "action": "edit", "applied": not note, "exit_code": edited.exit_code, "edits": len(answer.edits),
            "error": error, "test": state.test, "test_changed": state.test_changed, **views,
        }
        return Observation(text, event)

    def reask(self, error: ParseError, state: TrajectoryState) -> str:
        return self.deps.prompt.render("parse_error", error=str(error))

    def limit_reached(self, state: TrajectoryState) -> Finished | TurnLimitReached:
        return Finished("limit")

    async def _originals(self, state: TrajectoryState, paths: Iterable[str]) -> None:
        for path in paths:
            if path not in state.originals:
                state.originals[path] = await self.deps.sources.read(path)

    async def _apply(self, state: TrajectoryState, edits: list[EditBlock]) -> str | None:
        """Apply edits to the draft; the error message for the model when they do not apply."""
        await self._originals(state, (edit.path for edit in edits))
        try:
            changed = apply_edits(current_files(state), edits)
        except EditsNotApplied as exc:
            return str(exc)
        state.draft.update(changed)
        return None

    async def _run_both(self, state: TrajectoryState, diff: str) -> tuple[TestExecution, TestExecution]:
        assert state.test is not None
        original, edited = await asyncio.gather(
            self.deps.runner.run("", state.test), self.deps.runner.run(diff, state.test)
        )
        return original, edited


async def run_testing(deps: TrajectoryDeps, state: TrajectoryState) -> TrajectoryState:
    """Run (or resume) a testing trajectory to its end."""
    return await Agent(deps.loop(), TestingTrajectory(deps)).run(state)


async def run_editing(deps: TrajectoryDeps, state: TrajectoryState) -> TrajectoryState:
    """Run (or resume) an editing trajectory to its end."""
    return await Agent(deps.loop(), EditingTrajectory(deps)).run(state)
