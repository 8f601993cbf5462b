"""The deterministic core of selection: test voting and the selection answer format."""

from .answer import (
    SelectionAnswer,
    SelectionChoice,
    SelectionTest,
    parse_selection_answer,
    render_selection_answer,
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
    "RankedCandidate",
    "SelectionAnswer",
    "SelectionChoice",
    "SelectionTest",
    "counted_tests",
    "group_candidates",
    "parse_selection_answer",
    "rank_candidates",
    "render_selection_answer",
    "top_k",
]
