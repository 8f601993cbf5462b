"""Generation for one instance: N testing-then-editing trajectories in parallel.

Trajectory ``i`` writes a reproduction test, then edits the code with that
test. The N pipelines run concurrently; within each phase, trajectory 0's
first call goes alone so the shared prompt prefix is in the provider's cache
before the other N-1 read it. Each trajectory is a failure boundary: its
failure is recorded with its kind and the others go on. A rerun resumes
unfinished trajectories and retries those that failed for infrastructure
reasons; model failures stay as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from ..boundary import guarded, reopened
from ..edits import normalize_patch, patch_hash
from .state import TrajectoryState, load, save
from .trajectory import TrajectoryDeps, draft_diff, run_editing, run_testing

log = logging.getLogger(__name__)

SOURCE = "generation"


@dataclass(frozen=True)
class ContextFile:
    """One file of the packed context, shown in full to the editing model."""

    path: str
    content: str


@dataclass(frozen=True)
class GenerationInputs:
    instance_id: str
    issue: str
    files: Sequence[ContextFile] = ()


@dataclass(frozen=True)
class GeneratedCandidate:
    """A trajectory's final edit with the test it was developed against."""

    candidate_id: str
    instance_id: str
    index: int
    patch: str
    test: str
    status: str


@dataclass
class GenerationResult:
    candidates: list[GeneratedCandidate] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


class CandidateSink(Protocol):
    """Where finished candidates go (the store)."""

    def add_candidate(
        self, candidate_id: str, instance_id: str, source: str, patch: str, patch_hash: str, data: dict[str, object]
    ) -> None: ...


def _resume(saved: TrajectoryState | None, fresh: TrajectoryState) -> TrajectoryState:
    """The state to continue from: a new one, the saved one, or the saved one reopened after an infra failure."""
    return fresh if saved is None else reopened(saved)


async def _guarded(deps: TrajectoryDeps, state: TrajectoryState, phase) -> TrajectoryState:  # type: ignore[no-untyped-def]
    """Run one phase at the trajectory boundary; trajectory 0 always releases the warm-up gate."""
    try:
        return await guarded(lambda s: phase(deps, s), state, lambda s, event: save(deps.store, s, event))
    finally:
        if deps.warm is not None and state.index == 0:
            deps.warm.set()  # never leave the others waiting for a failed warm-up


async def testing_trajectory(deps: TrajectoryDeps, instance_id: str, issue: str, index: int) -> TrajectoryState:
    """Run (or resume) testing trajectory ``index``; failures are recorded on it, never raised."""
    system = deps.prompt.render("testing_system", issue=issue)
    fresh = TrajectoryState(instance_id=instance_id, kind="testing", index=index, system=system)
    return await _guarded(deps, _resume(load(deps.store, instance_id, "testing", index), fresh), run_testing)


async def run_pipeline(
    testing: TrajectoryDeps, editing: TrajectoryDeps, inputs: GenerationInputs, index: int
) -> TrajectoryState:
    """Trajectory ``index``: its test first, then its edit."""
    test_state = await testing_trajectory(testing, inputs.instance_id, inputs.issue, index)
    if test_state.status == "failed" or test_state.test is None:
        if editing.warm is not None and index == 0:
            editing.warm.set()  # no editing trajectory 0: the others must not wait for it
        return test_state
    system = editing.prompt.render("editing_system", issue=inputs.issue, files=list(inputs.files))
    fresh = TrajectoryState(
        instance_id=inputs.instance_id, kind="editing", index=index, system=system, test=test_state.test
    )
    saved = load(editing.store, inputs.instance_id, "editing", index)
    return await _guarded(editing, _resume(saved, fresh), run_editing)


def candidate_id(instance_id: str, index: int) -> str:
    return f"{instance_id}/{SOURCE}/{index}"


async def generate(
    testing: TrajectoryDeps,
    editing: TrajectoryDeps,
    sink: CandidateSink,
    inputs: GenerationInputs,
    trajectories: int,
) -> GenerationResult:
    """Run ``trajectories`` pipelines for one instance and record their candidates."""
    testing = replace(testing, warm=asyncio.Event() if testing.config.warm_cache_first else None)
    editing = replace(editing, warm=asyncio.Event() if editing.config.warm_cache_first else None)
    states = await asyncio.gather(*(run_pipeline(testing, editing, inputs, i) for i in range(trajectories)))
    result = GenerationResult()
    for state in states:
        if state.test is not None:
            result.tests.append(state.test)
        if state.status == "failed":
            result.failures[state.trajectory_id] = f"{state.failure_kind}: {state.failure}"
            continue
        if state.kind != "editing":  # the testing phase ended without a test (the context window)
            result.failures[state.trajectory_id] = f"{state.failure_kind or 'model'}: {state.failure or 'no test'}"
            continue
        patch = normalize_patch(draft_diff(state)) if state.draft else ""
        if not patch.strip():
            how = "by the context window" if state.status == "context_limit" else f"({state.status})"
            result.failures[state.trajectory_id] = f"model: the trajectory ended {how} without a change to the code"
            continue
        candidate = GeneratedCandidate(
            candidate_id(inputs.instance_id, state.index), inputs.instance_id, state.index, patch, state.test or "", state.status
        )
        sink.add_candidate(
            candidate.candidate_id,
            candidate.instance_id,
            SOURCE,
            patch,
            patch_hash(patch),
            {"trajectory": state.trajectory_id, "status": state.status, "test": candidate.test},
        )
        result.candidates.append(candidate)
    return result
