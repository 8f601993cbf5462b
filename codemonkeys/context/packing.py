"""Packing ranked files into the context budget (pure).

Files go in rank order; a file that does not fit in what is left is skipped
and packing goes on with the next ones, so smaller files further down still
fill the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PackItem:
    """A ranked file and its cost in the context: its tokens plus a per-file overhead."""

    path: str
    tokens: int


@dataclass(slots=True)
class Packing:
    """Which files went in (in rank order), which did not fit, and the tokens used."""

    budget: int
    included: list[PackItem] = field(default_factory=list)
    skipped: list[PackItem] = field(default_factory=list)
    used: int = 0


def pack(ranked: Sequence[PackItem], budget: int, *, overhead: int = 0) -> Packing:
    """Greedy first-fit in rank order; each file costs ``tokens + overhead``."""
    if budget < 0 or overhead < 0:
        raise ValueError("budget and overhead must not be negative")
    result = Packing(budget=budget)
    for item in ranked:
        cost = item.tokens + overhead
        if result.used + cost <= budget:
            result.included.append(item)
            result.used += cost
        else:
            result.skipped.append(item)
    return result


# Tokens of the editing prompt's instructions without the files and the issue
# (prompts/generation.j2, editing_system and the first editing message, measured
# with tiktoken at about 700, doubled for the formats it may grow to include).
EDITING_INSTRUCTIONS_TOKENS = 1_500


@dataclass(frozen=True, slots=True)
class WindowReserve:
    """What the editing conversation needs in its model's window besides the packed files."""

    window: int | None
    max_output_tokens: int
    turns: int
    turn_tokens: int
    instructions_tokens: int = EDITING_INSTRUCTIONS_TOKENS


def window_limit(reserve: WindowReserve, issue_tokens: int) -> int | None:
    """Most tokens the packed files may take so the first prompt plus ``turns`` turns fit the window.

    The window holds the instructions, the issue, the files, ``turns`` turns of
    ``turn_tokens`` each (answer and test output), and the last call's output.
    ``None`` when the window is unknown (the provider's own error then guards).
    """
    if reserve.window is None:
        return None
    rest = (
        reserve.instructions_tokens
        + issue_tokens
        + reserve.turns * reserve.turn_tokens
        + reserve.max_output_tokens
    )
    return max(0, reserve.window - rest)


def packing_budget(budget_tokens: int, limit: int | None) -> int:
    """The hard cap packing uses: ``budget_tokens``, clamped to the window's limit when known."""
    return budget_tokens if limit is None else min(budget_tokens, limit)
