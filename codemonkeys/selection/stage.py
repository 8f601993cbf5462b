"""Selection for one instance: execution matrix, test voting, then the selection trajectory.

1. Candidates with an empty or unreadable patch are dropped (counted); the
   others are merged by normalized patch.
2. Zero distinct candidates: nothing is selected (recorded as such, never as
   an empty patch). One: it is selected without running anything.
3. Every test runs on every distinct candidate and on the original code
   (:func:`~.matrix.run_matrix`, cached per cell); candidates are ranked by
   votes (:func:`~.voting.rank_candidates`) and the top ``k`` go on, or all of
   them when the config says so (``selection.candidates`` /
   ``ensemble_candidates``: the paper's ensembles skip the vote).
4. With two or more left, the selection trajectory chooses among them. They
   are shown in patch-hash order, which carries no vote information, with one
   example test picked without looking at the votes. If the trajectory fails
   (unreadable answers until the turn limit, provider errors after retries) or
   ends at the context window without a choice, the top-voted candidate is
   selected and the reason recorded.

Every step is idempotent: cells come from the cache, a finished trajectory
from the store, so running selection again costs nothing. A trajectory that
failed for infrastructure reasons is tried again; a model failure stands.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..boundary import guarded, reopened
from ..config import ModelSettings, SelectionConfig
from ..edits import files_touched, normalize_patch
from ..errors import DataError
from ..execution.runner import ORIGINAL, test_hash
from ..agent import SourceFiles, TestRunnerLike, TrajectoryStore, save
from ..llm.types import ChatService
from ..prompting import Prompt
from ..sandbox.truncate import truncate_middle
from ..store.records import TrajectoryRecord
from .matrix import ExecutionMatrix, TestCase, make_tests, run_matrix
from .trajectory import (
    SelectionState,
    SelectionTrajectoryDeps,
    inputs_key,
    load,
    run_selection,
    run_views,
)
from .voting import (
    Candidate,
    CandidateGroup,
    RankedCandidate,
    counted_tests,
    group_candidates,
    rank_candidates,
)

log = logging.getLogger(__name__)

STAGE = "selection"


class SelectionStore(TrajectoryStore, Protocol):
    """The part of the store selection writes to."""

    def put_selection(self, instance_id: str, candidate_id: str | None, method: str, data: dict[str, Any]) -> None: ...


@dataclass
class SelectionDeps:
    chat: ChatService
    store: SelectionStore
    runner: TestRunnerLike
    sources: SourceFiles
    prompt: Prompt
    model: ModelSettings
    config: SelectionConfig


@dataclass(frozen=True)
class SelectionInputs:
    instance_id: str
    issue: str
    candidates: Sequence[Candidate]
    tests: Sequence[str]
    ensemble: bool = False  # picks ``selection.ensemble_candidates`` over ``selection.candidates``


@dataclass
class SelectionOutcome:
    """What was selected and why; ``record()`` is what the store keeps."""

    instance_id: str
    method: str
    group: CandidateGroup | None = None
    ranking: list[RankedCandidate] = field(default_factory=list)
    top: list[RankedCandidate] = field(default_factory=list)
    matrix: ExecutionMatrix | None = None
    reason: str | None = None
    trajectory_id: str | None = None
    skipped_empty: int = 0
    skipped_unparsable: int = 0

    @property
    def candidate_id(self) -> str | None:
        """The selected candidate (the first id of its group), ``None`` when nothing was selected."""
        return None if self.group is None else self.group.member_ids[0]

    def record(self) -> dict[str, Any]:
        matrix = self.matrix
        return {
            "method": self.method,
            "key": None if self.group is None else self.group.key,
            "members": [] if self.group is None else list(self.group.member_ids),
            "reason": self.reason,
            "trajectory": self.trajectory_id,
            "top_k": [r.key for r in self.top],
            "ranking": [
                {
                    "key": r.key,
                    "votes": r.votes,
                    "changed_lines": r.group.changed_lines,
                    "members": list(r.group.member_ids),
                    "passing_tests": list(r.passing_tests),
                }
                for r in self.ranking
            ],
            "tests": 0 if matrix is None else len(matrix.tests),
            "counted_tests": [] if matrix is None else counted_tests(matrix.original, [t.id for t in matrix.tests]),
            "cells": 0 if matrix is None else matrix.cells,
            # Every cell's outcome by test id and column (a group key or "original"), for the inspector's grid.
            "outcomes": {} if matrix is None else {
                t: {c: str(o) for c, o in row.items()} for t, row in matrix.outcomes.items()
            },
            "flaky": [] if matrix is None else [
                {"test": f.test_id, "column": f.column, "outcomes": [str(o) for o in f.outcomes]} for f in matrix.flaky
            ],
            "skipped_empty": self.skipped_empty,
            "skipped_unparsable": self.skipped_unparsable,
        }


def usable_candidates(candidates: Sequence[Candidate]) -> tuple[list[Candidate], int, int]:
    """Candidates with a non-empty, readable patch; and how many were empty or unreadable."""
    kept: list[Candidate] = []
    empty = unparsable = 0
    for candidate in candidates:
        try:
            normal = normalize_patch(candidate.patch) if candidate.patch.strip() else ""
        except DataError:
            unparsable += 1
            continue
        if not normal:
            empty += 1
            continue
        kept.append(candidate)
    return kept, empty, unparsable


def example_test(matrix: ExecutionMatrix) -> TestCase | None:
    """The test shown with the candidates, picked without looking at any candidate's votes.

    The counted test (one that fails on the original code) with the smallest
    content hash; else the first test; else none. Choosing a test that backs the
    vote leader would invite the selector to confirm the vote instead of judging.
    """
    if not matrix.tests:
        return None
    counted = set(counted_tests(matrix.original, [t.id for t in matrix.tests]))
    voting = [t for t in matrix.tests if t.id in counted]
    return min(voting or matrix.tests, key=lambda t: test_hash(t.script))


def presentation_order(candidates: Sequence[RankedCandidate]) -> list[RankedCandidate]:
    """The order the selector sees: by patch hash, so position says nothing about votes."""
    return sorted(candidates, key=lambda r: r.key)


async def _files(deps: SelectionDeps, groups: Sequence[CandidateGroup]) -> list[dict[str, str]]:
    """The files the candidates edit, at the base commit (new files have nothing to show)."""
    paths = sorted({path for group in groups for path in files_touched(group.patch)})
    contents = await asyncio.gather(*(deps.sources.read(path) for path in paths))
    files = []
    for path, content in zip(paths, contents, strict=True):
        if content is not None:
            text, _ = truncate_middle(content.encode("utf-8"), deps.config.file_limit_chars)
            files.append({"path": path, "content": text})
    return files


async def _system(
    deps: SelectionDeps, inputs: SelectionInputs, shown: list[RankedCandidate], matrix: ExecutionMatrix, test: TestCase | None
) -> str:
    """The system prompt: issue, edited files, numbered diffs, and ``test`` with its runs."""
    runs: list[dict[str, Any]] = []
    if test is not None:
        columns = [("original code", ORIGINAL), *((f"candidate {i}", r.key) for i, r in enumerate(shown, 1))]
        runs = run_views(
            [(label, matrix.execution(test.id, column)) for label, column in columns],
            deps.config.output_limit_chars,
        )
    script = None if test is None else (test.script if test.script.endswith("\n") else test.script + "\n")
    return deps.prompt.render(
        "selection_system",
        issue=inputs.issue,
        files=await _files(deps, [r.group for r in shown]),
        candidates=[{"number": i, "diff": r.group.patch} for i, r in enumerate(shown, 1)],
        test=script,
        runs=runs,
        total_tests=len(matrix.tests),
    )


async def _trajectory(deps: SelectionDeps, state: SelectionState) -> SelectionState:
    """Run the trajectory at the trajectory boundary: failures recorded on it, never raised."""
    tdeps = SelectionTrajectoryDeps(deps.chat, deps.store, deps.runner, deps.prompt, deps.model, deps.config)
    return await guarded(lambda s: run_selection(tdeps, s), state, lambda s, event: save(deps.store, s, event))


async def select_instance(deps: SelectionDeps, inputs: SelectionInputs) -> SelectionOutcome:
    """Select one candidate for an instance and record the selection in the store."""
    kept, empty, unparsable = usable_candidates(inputs.candidates)
    outcome = SelectionOutcome(inputs.instance_id, "none", skipped_empty=empty, skipped_unparsable=unparsable)
    groups = group_candidates(kept)
    if not groups:
        outcome.reason = f"no candidate with a non-empty patch ({len(inputs.candidates)} given)"
    elif len(groups) == 1:
        outcome.method, outcome.group = "single_candidate", groups[0]
        outcome.ranking = outcome.top = rank_candidates(groups, {}, {})
    else:
        await _vote_and_choose(deps, inputs, groups, outcome)
    deps.store.put_selection(inputs.instance_id, outcome.candidate_id, outcome.method, outcome.record())
    return outcome


async def _vote_and_choose(
    deps: SelectionDeps, inputs: SelectionInputs, groups: list[CandidateGroup], outcome: SelectionOutcome
) -> None:
    matrix = await run_matrix(deps.runner, make_tests(inputs.tests), groups, reruns=deps.config.flaky_reruns)
    ranking = rank_candidates(groups, matrix.results, matrix.original)
    pool = deps.config.ensemble_candidates if inputs.ensemble else deps.config.candidates
    top = ranking[: deps.config.top_k] if pool == "top_k" else ranking
    outcome.matrix, outcome.ranking, outcome.top = matrix, ranking, top
    if len(top) == 1:
        outcome.method, outcome.group = "top_vote", top[0].group
        return
    shown = presentation_order(top)
    test = example_test(matrix)
    key = inputs_key(
        deps.prompt.version, deps.chat.name, deps.model.model_dump(), inputs.issue,
        [r.key for r in shown], None if test is None else test_hash(test.script),
    )
    saved = load(deps.store, inputs.instance_id, key)
    if saved is None:  # the prompt reads files from a sandbox: only build it for a new trajectory
        saved = SelectionState(
            instance_id=inputs.instance_id, key=key, system=await _system(deps, inputs, shown, matrix, test),
            candidates=[r.key for r in shown], patches=[r.group.patch for r in shown],
        )
    state = await _trajectory(deps, reopened(saved))
    outcome.trajectory_id = state.trajectory_id
    if state.status == "done" and state.choice is not None:
        outcome.method, outcome.group = "selection_trajectory", shown[state.choice - 1].group
    else:
        outcome.method, outcome.group = "fallback_top_vote", top[0].group
        outcome.reason = f"{state.failure_kind}: {state.failure}"



# --- what the store holds for an instance -----------------------------------------------

IMPORTED_TESTS = "imported_tests"


class SelectionSource(Protocol):
    """The part of the store candidates and tests are read from."""

    def candidates(self, instance_id: str) -> list[dict[str, Any]]: ...

    def trajectories(self, instance_id: str | None = None, kind: str | None = None) -> list[TrajectoryRecord]: ...

    def get_result(self, instance_id: str, stage: str, key: str) -> Any | None: ...


def stored_candidates(store: SelectionSource, instance_id: str) -> list[Candidate]:
    """Every candidate recorded for the instance (generation, submissions, imports)."""
    return [Candidate(id=row["candidate_id"], patch=row["patch"]) for row in store.candidates(instance_id)]


def stored_tests(store: SelectionSource, instance_id: str) -> list[str]:
    """The tests that vote: each generation pipeline's final test (the editing phase may
    have replaced the testing phase's), then tests imported from another run."""
    final: dict[int, str] = {}
    for kind in ("testing", "editing"):  # editing second: its test is the later one
        for record in store.trajectories(instance_id, kind):
            test = json.loads(record.state).get("test")
            if isinstance(test, str) and test.strip():
                final[record.index] = test
    imported = store.get_result(instance_id, STAGE, IMPORTED_TESTS) or []
    return [final[i] for i in sorted(final)] + [t for t in imported if isinstance(t, str)]
