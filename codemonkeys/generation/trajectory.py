"""The testing and editing state machines (paper section 3.2).

Both are loops of: ask the model, parse, act in the sandbox, tell the model
what happened. State is saved after every turn. A resumed trajectory replays
its saved conversation, so the next request is byte-identical to the one that
was in flight and the response cache answers it for free.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import GenerationConfig, ModelSettings
from ..edits import EditBlock, EditsNotApplied, apply_edits, classify_exit, make_diff
from ..errors import ParseError, TurnLimitReached
from ..llm.types import CallTag, ChatRequest, ChatService, Message
from ..prompting import Prompt
from ..sandbox.truncate import truncate_middle
from ..store.records import TestExecution
from .answers import parse_editing_answer, parse_testing_answer
from .state import ChatTurn, TrajectoryState, TrajectoryStore, save

log = logging.getLogger(__name__)


class SourceFiles(Protocol):
    """Contents of repository files at the base commit; ``None`` for a missing file."""

    async def read(self, path: str) -> str | None: ...


class TestRunnerLike(Protocol):
    __test__ = False

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution: ...


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


def execution_view(execution: TestExecution, limit: int) -> dict[str, Any]:
    """What the model sees of a test run: exit code, outcome, output cut in the middle."""
    output, _ = truncate_middle(execution.output.encode("utf-8", errors="replace"), limit)
    outcome = classify_exit(execution.exit_code, execution.timed_out)
    exit_code = "none (killed by the time limit)" if execution.timed_out else execution.exit_code
    return {"exit_code": exit_code, "outcome": str(outcome).replace("_", " "), "output": output or "(no output)"}


def _request(state: TrajectoryState, model: ModelSettings) -> ChatRequest:
    last = len(state.messages) - 1
    messages = tuple(
        Message(turn.role, turn.content, cache=(index == last)) for index, turn in enumerate(state.messages)
    )
    return ChatRequest(
        messages=messages,
        system=state.system,
        max_tokens=model.max_output_tokens,
        temperature=model.temperature,
        sample=state.index,
        system_cache=True,
    )


async def _ask(deps: TrajectoryDeps, state: TrajectoryState) -> str:
    """One model call; trajectory 0 goes first so the others read its prompt cache."""
    if deps.warm is not None and state.index > 0 and state.calls == 0:
        await deps.warm.wait()
    try:
        tag = CallTag(stage=state.kind, instance_id=state.instance_id, trajectory=state.trajectory_id)
        response = await deps.chat.complete(_request(state, deps.model), tag)
    finally:
        if deps.warm is not None and state.index == 0:
            deps.warm.set()
    state.calls += 1
    state.messages.append(ChatTurn(role="assistant", content=response.text))
    return response.text


def _tell(state: TrajectoryState, text: str) -> None:
    state.messages.append(ChatTurn(role="user", content=text))


def _finish(deps: TrajectoryDeps, state: TrajectoryState, status: str, event: dict[str, object]) -> None:
    state.status = status  # type: ignore[assignment]
    save(deps.store, state, {**event, "status": status})


async def run_testing(deps: TrajectoryDeps, state: TrajectoryState) -> TrajectoryState:
    """Write a reproduction test until the model is content with it or turns run out."""
    limit = deps.config.testing_max_turns
    if deps.warm is not None and state.index == 0 and state.calls > 0:
        deps.warm.set()
    if not state.messages:
        _tell(state, deps.prompt.render("testing_first"))
    while not state.finished:
        if state.calls >= limit:
            if state.test is None:
                raise TurnLimitReached(f"no reproduction test after {limit} calls")
            _finish(deps, state, "limit", {"action": "limit"})
            break
        text = await _ask(deps, state)
        try:
            answer = parse_testing_answer(text)
            if answer.done and state.test is None:
                raise ParseError("there is no test yet: write the test before answering <done/>")
        except ParseError as exc:
            _tell(state, deps.prompt.render("parse_error", error=str(exc)))
            save(deps.store, state, {"action": "parse_error", "error": str(exc)})
            continue
        if answer.done:
            _finish(deps, state, "done", {"action": "done"})
            break
        assert answer.test is not None
        state.test = answer.test.script
        execution = await deps.runner.run("", state.test)
        view = execution_view(execution, deps.config.output_limit_chars)
        _tell(state, deps.prompt.render("testing_feedback", **view))
        save(deps.store, state, {"action": "test", "exit_code": execution.exit_code})
    return state


async def _originals(deps: TrajectoryDeps, state: TrajectoryState, paths: Iterable[str]) -> None:
    for path in paths:
        if path not in state.originals:
            state.originals[path] = await deps.sources.read(path)


def current_files(state: TrajectoryState) -> dict[str, str]:
    """The files as the draft leaves them (originals overlaid by the draft; deleted ones dropped)."""
    files = {path: text for path, text in state.originals.items() if text is not None}
    for path, text in state.draft.items():
        if text is None:
            files.pop(path, None)
        else:
            files[path] = text
    return files


def draft_diff(state: TrajectoryState) -> str:
    """The candidate: the draft against the base commit."""
    originals = {path: text for path, text in state.originals.items() if text is not None}
    return make_diff(originals, state.draft)


async def _apply(deps: TrajectoryDeps, state: TrajectoryState, edits: list[EditBlock]) -> str | None:
    """Apply edits to the draft; the error message for the model when they do not apply."""
    await _originals(deps, state, (edit.path for edit in edits))
    try:
        changed = apply_edits(current_files(state), edits)
    except EditsNotApplied as exc:
        return str(exc)
    state.draft.update(changed)
    return None


async def _run_both(deps: TrajectoryDeps, state: TrajectoryState) -> tuple[TestExecution, TestExecution]:
    assert state.test is not None
    original, edited = await asyncio.gather(
        deps.runner.run("", state.test), deps.runner.run(draft_diff(state), state.test)
    )
    return original, edited


async def run_editing(deps: TrajectoryDeps, state: TrajectoryState) -> TrajectoryState:
    """Iterate on a draft edit, running the test on original and edited code each turn."""
    limit = deps.config.max_iterations
    if deps.warm is not None and state.index == 0 and state.calls > 0:
        deps.warm.set()
    if not state.messages:
        assert state.test is not None, "an editing trajectory starts from a test"
        original = await deps.runner.run("", state.test)
        view = execution_view(original, deps.config.output_limit_chars)
        _tell(state, deps.prompt.render("editing_first", test=state.test, original=view))
        save(deps.store, state, {"action": "start", "exit_code": original.exit_code})
    while not state.finished:
        if state.calls >= limit:
            _finish(deps, state, "limit", {"action": "limit"})
            break
        text = await _ask(deps, state)
        try:
            answer = parse_editing_answer(text)
        except ParseError as exc:
            _tell(state, deps.prompt.render("parse_error", error=str(exc)))
            save(deps.store, state, {"action": "parse_error", "error": str(exc)})
            continue
        if answer.done:
            _finish(deps, state, "done", {"action": "done"})
            break
        note = ""
        if answer.edits:
            error = await _apply(deps, state, answer.edits)
            if error is not None:
                note = f"Your edits were not applied, so the code is as before them:\n{error}"
        state.test_changed = answer.test is not None
        if answer.test is not None:
            state.test = answer.test.script
        original, edited = await _run_both(deps, state)
        limit_chars = deps.config.output_limit_chars
        _tell(
            state,
            deps.prompt.render(
                "editing_feedback",
                test_changed=state.test_changed,
                diff=draft_diff(state),
                original=execution_view(original, limit_chars),
                edited=execution_view(edited, limit_chars),
                note=note,
            ),
        )
        save(deps.store, state, {"action": "edit", "applied": not note, "exit_code": edited.exit_code})
    return state
