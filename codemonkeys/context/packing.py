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
