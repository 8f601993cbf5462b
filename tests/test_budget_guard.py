"""The live budget guard: worst-case reservations against run, instance, trajectory and stage limits."""

from __future__ import annotations

import pytest

from codemonkeys.budget import BudgetGuard
from codemonkeys.config import BudgetConfig
from codemonkeys.errors import BudgetExceeded
from codemonkeys.llm.types import CallTag
from codemonkeys.store.records import LedgerRow


def _row(instance: str | None, stage: str, trajectory: str | None, cost: float) -> LedgerRow:
    return LedgerRow((instance, stage, trajectory), 1, 0, 0, 0, 0, 0, 0, cost, 0)


def test_in_flight_worst_cases_count_until_settled() -> None:
    guard = BudgetGuard(BudgetConfig(total_usd=1.0))
    first = guard.reserve(CallTag("editing", "a"), 0.6)
    with pytest.raises(BudgetExceeded, match="run budget"):
        guard.reserve(CallTag("editing", "b"), 0.5)  # 0.6 in flight + 0.5 > 1.0
    guard.settle(first, 0.1)  # it cost far less than its worst case
    second = guard.reserve(CallTag("editing", "b"), 0.5)
    guard.settle(second, 0.5)
    assert guard.spent_total == pytest.approx(0.6)
    assert guard.remaining() == pytest.approx(0.4)


def test_instance_trajectory_and_stage_limits() -> None:
    guard = BudgetGuard(BudgetConfig(total_usd=10.0, per_instance_usd=1.0, per_trajectory_usd=0.3, stage_shares={"selection": 0.01}))
    guard.settle(guard.reserve(CallTag("editing", "a", "a/editing/0"), 0.25), 0.25)
    with pytest.raises(BudgetExceeded, match="trajectory a/editing/0"):
        guard.reserve(CallTag("editing", "a", "a/editing/0"), 0.1)
    guard.settle(guard.reserve(CallTag("editing", "a", "a/editing/1"), 0.1), 0.1)  # another trajectory may go on
    with pytest.raises(BudgetExceeded, match="stage selection"):
        guard.reserve(CallTag("selection", "b"), 0.2)  # 1% of $10
    guard.settle(guard.reserve(CallTag("editing", "a", "a/editing/2"), 0.29), 0.29)
    guard.settle(guard.reserve(CallTag("editing", "a", "a/editing/3"), 0.29), 0.29)
    with pytest.raises(BudgetExceeded, match="instance a"):
        guard.reserve(CallTag("editing", "a", "a/editing/4"), 0.1)
    assert guard.remaining("a") == pytest.approx(1.0 - 0.93)


def test_a_rerun_starts_from_the_ledger_and_a_failed_call_costs_nothing() -> None:
    rows = [_row("a", "editing", "a/editing/0", 0.4), _row("b", "testing", "b/testing/0", 0.3), _row(None, "ranking", None, 0.1)]
    guard = BudgetGuard.from_ledger(BudgetConfig(total_usd=1.0, per_instance_usd=0.5), rows)
    assert guard.spent_total == pytest.approx(0.8)
    assert guard.remaining("a") == pytest.approx(0.1)
    reservation = guard.reserve(CallTag("editing", "a"), 0.1)
    guard.settle(reservation, None)  # failed: nothing spent, reservation released
    assert guard.spent_total == pytest.approx(0.8)
    with pytest.raises(BudgetExceeded):
        guard.reserve(CallTag("editing", "a"), 0.15)


def test_unpriced_models_are_not_blocked() -> None:
    guard = BudgetGuard(BudgetConfig(total_usd=0.01))
    guard.settle(guard.reserve(CallTag("relevance", "a"), None), None)
    assert guard.spent_total == 0.0
