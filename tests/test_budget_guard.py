"""The live budget guard: worst-case reservations against run, instance, trajectory and stage limits."""

from __future__ import annotations

import pytest

from codemonkeys.budget import BudgetGuard, check_priced
from codemonkeys.config import BudgetConfig
from codemonkeys.errors import BudgetExceeded, ConfigError
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


def test_an_unpriced_call_under_a_budget_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="allow_unpriced"):
        BudgetGuard(BudgetConfig(total_usd=0.01)).reserve(CallTag("relevance", "a"), None)
    allowed = BudgetGuard(BudgetConfig(total_usd=0.01, allow_unpriced=True))
    allowed.settle(allowed.reserve(CallTag("relevance", "a"), None), None)
    assert allowed.spent_total == 0.0
    unlimited = BudgetGuard(BudgetConfig())
    unlimited.settle(unlimited.reserve(CallTag("relevance", "a"), None), None)


def test_check_priced_refuses_a_budgeted_run_with_an_unpriced_model_at_start() -> None:
    models = {"anthropic:claude-sonnet-4-5": True, "openai-compatible:qwen@http://localhost:8000/v1": False}
    with pytest.raises(ConfigError, match="no price for openai-compatible:qwen.*pricing.<model>.*allow_unpriced"):
        check_priced(BudgetConfig(per_trajectory_usd=1.0), models)
    check_priced(BudgetConfig(per_trajectory_usd=1.0, allow_unpriced=True), models)
    check_priced(BudgetConfig(), models)  # no budget: unknown cost is only reported
    check_priced(BudgetConfig(total_usd=1.0), {"anthropic:claude-sonnet-4-5": True})


def test_trajectory_limits_are_per_instance_not_per_bare_trajectory_id() -> None:
    """Every instance tags its ranking runs ``ranking-0``..: they must not share one limit."""
    guard = BudgetGuard(BudgetConfig(per_trajectory_usd=0.25))
    for instance in ("a", "b", "c", "d"):
        for _ in range(2):
            guard.settle(guard.reserve(CallTag("ranking", instance, "ranking-0"), 0.1), 0.1)
    with pytest.raises(BudgetExceeded, match="trajectory ranking-0 of a"):
        guard.reserve(CallTag("ranking", "a", "ranking-0"), 0.1)


def test_trajectory_limits_from_the_ledger_are_per_instance() -> None:
    rows = [_row(i, "ranking", "ranking-0", 0.2) for i in ("a", "b", "c")]
    guard = BudgetGuard.from_ledger(BudgetConfig(per_trajectory_usd=0.25), rows)
    guard.settle(guard.reserve(CallTag("ranking", "d", "ranking-0"), 0.2), 0.2)  # a fresh instance
    with pytest.raises(BudgetExceeded):
        guard.reserve(CallTag("ranking", "c", "ranking-0"), 0.1)
