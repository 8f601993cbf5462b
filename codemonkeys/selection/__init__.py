"""Selection: test voting and the answer format (pure core), the execution matrix, the selection stage."""

from .answer import (
    SelectionAnswer,
    SelectionChoice,
    SelectionTest,
    parse_selection_answer,
    render_selection_answer,
)
from .matrix import ExecutionMatrix, FlakyCell, TestCase, cell_outcome, make_tests, run_matrix
from .stage import (
    SelectionDeps,
    SelectionInputs,
    SelectionOutcome,
    select_instance,
    stored_candidates,
    stored_tests,
    example_test,
    presentation_order,
    usable_candidates,
)
from .voting import (
    Candidate,
    CandidateGroup,
    RankedCandidate,
    counted_tests,
    group_candidates,
    rank_candidates,
    top_k,
)

__all__ = [
    "Candidate",
    "CandidateGroup",
    "ExecutionMatrix",
    "FlakyCell",
    "RankedCandidate",
    "SelectionAnswer",
    "SelectionChoice",
    "SelectionDeps",
    "SelectionInputs",
    "SelectionOutcome",
    "SelectionTest",
    "TestCase",
    "cell_outcome",
    "counted_tests",
    "group_candidates",
    "make_tests",
    "parse_selection_answer",
    "rank_candidates",
    "render_selection_answer",
    "run_matrix",
    "select_instance",
    "stored_candidates",
    "stored_tests",
    "top_k",
    "usable_candidates",
    "example_test",
    "presentation_order",
]
