"""The execution matrix: every test on every distinct candidate and on the original code.

Cells go through :class:`~codemonkeys.execution.TestRunner`, so each one is
cached in the store by (environment, patch hash, test hash, attempt): a
re-selection or a rerun reads them back instead of executing them. All cells
are submitted at once; the sandbox pool bounds how many run in parallel.

With ``reruns = k`` every cell runs ``1 + k`` times (attempts ``0..k``, each
cached on its own). A cell whose attempts disagree is *flaky*: it is recorded,
and its outcome is the majority, ties going to the non-passing outcome, so a
vote needs a majority of passing runs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..edits import TestOutcome, classify_exit
from ..execution.runner import ORIGINAL, test_hash
from ..store.records import TestExecution
from .voting import CandidateGroup


class CellRunner(Protocol):
    """The part of the test runner the matrix uses."""

    async def run(self, patch: str, script: str, *, attempt: int = 0) -> TestExecution: ...


@dataclass(frozen=True)
class TestCase:
    """A test script with a short, content-derived id."""

    __test__ = False

    id: str
    script: str


def make_tests(scripts: Iterable[str]) -> list[TestCase]:
    """Distinct scripts (by content) as test cases, in first-seen order."""
    seen: dict[str, TestCase] = {}
    for script in scripts:
        if not script.strip():
            continue
        test_id = "t" + test_hash(script)[:12]
        seen.setdefault(test_id, TestCase(test_id, script))
    return list(seen.values())


def cell_outcome(outcomes: Sequence[TestOutcome]) -> TestOutcome:
    """The outcome of a cell from its attempts: the majority; a tie never counts as FIXED."""
    if not outcomes:
        raise ValueError("a cell needs at least one attempt")
    counts = Counter(outcomes)
    best = max(counts.values())
    tied = [outcome for outcome in dict.fromkeys(outcomes) if counts[outcome] == best]
    if len(tied) > 1 and TestOutcome.FIXED in tied:
        tied.remove(TestOutcome.FIXED)
    return tied[0]


@dataclass(frozen=True)
class FlakyCell:
    test_id: str
    column: str
    outcomes: tuple[TestOutcome, ...]


@dataclass
class ExecutionMatrix:
    """Outcomes by test id and column (a group key, or ``ORIGINAL``)."""

    tests: list[TestCase]
    columns: list[str]
    outcomes: dict[str, dict[str, TestOutcome]] = field(default_factory=dict)
    first: dict[tuple[str, str], TestExecution] = field(default_factory=dict)
    flaky: list[FlakyCell] = field(default_factory=list)

    @property
    def original(self) -> dict[str, TestOutcome]:
        """Each test's outcome on the unchanged code (what ``rank_candidates`` calls ``original``)."""
        return {t: row[ORIGINAL] for t, row in self.outcomes.items() if ORIGINAL in row}

    @property
    def results(self) -> dict[str, dict[str, TestOutcome]]:
        """Outcomes on the candidates only (``rank_candidates``' ``results``)."""
        return {t: {c: o for c, o in row.items() if c != ORIGINAL} for t, row in self.outcomes.items()}

    @property
    def cells(self) -> int:
        return len(self.tests) * len(self.columns)

    def execution(self, test_id: str, column: str) -> TestExecution:
        """The first attempt's run of a cell (what a model is shown)."""
        return self.first[(test_id, column)]


async def run_matrix(
    runner: CellRunner,
    tests: Sequence[TestCase],
    groups: Sequence[CandidateGroup],
    *,
    reruns: int = 0,
) -> ExecutionMatrix:
    """Run (or read from the cache) every cell of tests x (original + groups)."""
    if reruns < 0:
        raise ValueError(f"reruns must be >= 0, got {reruns}")
    columns: dict[str, str] = {ORIGINAL: ""}
    for group in groups:
        if group.is_empty:
            raise ValueError("an empty patch is not a candidate: it is the original code")
        columns.setdefault(group.key, group.patch)
    cells = [(test, column) for test in tests for column in columns]
    runs = await asyncio.gather(
        *(
            runner.run(columns[column], test.script, attempt=attempt)
            for test, column in cells
            for attempt in range(reruns + 1)
        )
    )
    matrix = ExecutionMatrix(tests=list(tests), columns=list(columns))
    for index, (test, column) in enumerate(cells):
        attempts = runs[index * (reruns + 1) : (index + 1) * (reruns + 1)]
        outcomes = tuple(classify_exit(run.exit_code, run.timed_out) for run in attempts)
        matrix.outcomes.setdefault(test.id, {})[column] = cell_outcome(outcomes)
        matrix.first[(test.id, column)] = attempts[0]
        if len(set(outcomes)) > 1:
            matrix.flaky.append(FlakyCell(test.id, column, outcomes))
    return matrix

