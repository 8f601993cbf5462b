"""Hard budgets, enforced live before each call starts.

A call may start only if what has been spent, plus the worst case of every call
in flight, plus its own worst case, still fits each limit that applies to it
(run total, its instance, its trajectory, its stage's share). Spending can
therefore pass a limit only by what calls already in flight turn out to cost
below their worst case, i.e. never past the limit itself.

Trajectory limits are keyed by (instance, trajectory): trajectory ids such as
``ranking-0`` repeat in every instance. A model without a price cannot be held
to a budget: the run refuses to start (:func:`check_priced`) unless the user
prices it or sets ``budget.allow_unpriced``; only then does an unpriced call
reserve nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .config import BudgetConfig
from .errors import BudgetExceeded, ConfigError
from .llm.types import CallTag
from .store.records import LedgerRow

log = logging.getLogger(__name__)


class Ledger(Protocol):
    def ledger(self, group_by: Sequence[str] = ..., **where: str | None) -> list[LedgerRow]: ...


@dataclass
class _Reservation:
    tag: CallTag
    amount: float


@dataclass
class BudgetGuard:
    """Implements :class:`~codemonkeys.llm.gateway.SpendGuard` for one run."""

    config: BudgetConfig
    spent_total: float = 0.0
    spent_by_instance: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    spent_by_stage: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    spent_by_trajectory: dict[tuple[str | None, str], float] = field(default_factory=lambda: defaultdict(float))
    _reserved_total: float = 0.0
    _reserved_by_instance: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _reserved_by_stage: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _reserved_by_trajectory: dict[tuple[str | None, str], float] = field(default_factory=lambda: defaultdict(float))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _unpriced_warned: bool = False

    @classmethod
    def from_ledger(cls, config: BudgetConfig, rows: list[LedgerRow]) -> BudgetGuard:
        """Start from what earlier attempts of the run already spent.

        ``rows`` are grouped by (instance_id, stage, trajectory): see :meth:`for_run`.
        """
        guard = cls(config)
        for row in rows:
            instance_id, stage, trajectory = row.group
            guard.spent_total += row.cost_usd
            if instance_id is not None:
                guard.spent_by_instance[instance_id] += row.cost_usd
            if stage is not None:
                guard.spent_by_stage[stage] += row.cost_usd
            if trajectory is not None:
                guard.spent_by_trajectory[(instance_id, trajectory)] += row.cost_usd
        return guard

    @classmethod
    def for_run(cls, config: BudgetConfig, ledger: Ledger) -> BudgetGuard:
        """The guard of a run, starting from everything its ledger already holds."""
        return cls.from_ledger(config, ledger.ledger(group_by=("instance_id", "stage", "trajectory")))

    def stage_limit(self, stage: str) -> float | None:
        share = self.config.stage_shares.get(stage)
        if share is None or self.config.total_usd is None:
            return None
        return self.config.total_usd * share

    def _check(self, label: str, limit: float | None, spent: float, reserved: float, amount: float) -> None:
        if limit is not None and spent + reserved + amount > limit + 1e-12:
            raise BudgetExceeded(
                f"{label} budget ${limit:.2f} would be passed: spent ${spent:.4f}, "
                f"in flight up to ${reserved:.4f}, this call up to ${amount:.4f}"
            )

    def reserve(self, tag: CallTag, worst_case_usd: float | None) -> object:
        """Hold the worst case of a call, or raise :class:`BudgetExceeded`."""
        if worst_case_usd is None:
            if self.config.limited and not self.config.allow_unpriced:
                raise ConfigError(
                    "a model without a price cannot be held to the budget: set pricing.<model> "
                    "(0 for a self-hosted model) or budget.allow_unpriced=true"
                )
            if not self._unpriced_warned and self.config.limited:
                log.warning("a model without a price is in use (budget.allow_unpriced): its cost is unknown")
                self._unpriced_warned = True
            worst_case_usd = 0.0
        with self._lock:
            self._check("run", self.config.total_usd, self.spent_total, self._reserved_total, worst_case_usd)
            if tag.instance_id is not None:
                self._check(
                    f"instance {tag.instance_id}",
                    self.config.per_instance_usd,
                    self.spent_by_instance[tag.instance_id],
                    self._reserved_by_instance[tag.instance_id],
                    worst_case_usd,
                )
            if tag.trajectory is not None:
                key = (tag.instance_id, tag.trajectory)
                self._check(
                    f"trajectory {tag.trajectory}" + (f" of {tag.instance_id}" if tag.instance_id else ""),
                    self.config.per_trajectory_usd,
                    self.spent_by_trajectory[key],
                    self._reserved_by_trajectory[key],
                    worst_case_usd,
                )
            self._check(
                f"stage {tag.stage}",
                self.stage_limit(tag.stage),
                self.spent_by_stage[tag.stage],
                self._reserved_by_stage[tag.stage],
                worst_case_usd,
            )
            self._reserved_total += worst_case_usd
            self._reserved_by_stage[tag.stage] += worst_case_usd
            if tag.instance_id is not None:
                self._reserved_by_instance[tag.instance_id] += worst_case_usd
            if tag.trajectory is not None:
                self._reserved_by_trajectory[(tag.instance_id, tag.trajectory)] += worst_case_usd
        return _Reservation(tag, worst_case_usd)

    def settle(self, reservation: object, actual_usd: float | None) -> None:
        """Release a reservation and book what the call actually cost.

        A call whose outcome is unknown (cancelled in flight) is settled at its
        reservation: the provider may have billed it.
        """
        assert isinstance(reservation, _Reservation)
        tag, amount = reservation.tag, reservation.amount
        actual = actual_usd or 0.0
        with self._lock:
            self._reserved_total -= amount
            self._reserved_by_stage[tag.stage] -= amount
            self.spent_total += actual
            self.spent_by_stage[tag.stage] += actual
            if tag.instance_id is not None:
                self._reserved_by_instance[tag.instance_id] -= amount
                self.spent_by_instance[tag.instance_id] += actual
            if tag.trajectory is not None:
                key = (tag.instance_id, tag.trajectory)
                self._reserved_by_trajectory[key] -= amount
                self.spent_by_trajectory[key] += actual

    def remaining(self, instance_id: str | None = None) -> float | None:
        """What is left to spend overall (and for ``instance_id``), ``None`` when unlimited."""
        limits = []
        with self._lock:
            if self.config.total_usd is not None:
                limits.append(self.config.total_usd - self.spent_total - self._reserved_total)
            if instance_id is not None and self.config.per_instance_usd is not None:
                limits.append(
                    self.config.per_instance_usd
                    - self.spent_by_instance[instance_id]
                    - self._reserved_by_instance[instance_id]
                )
        return max(0.0, min(limits)) if limits else None


def check_priced(config: BudgetConfig, models: dict[str, bool]) -> None:
    """Refuse, before anything starts, a budgeted run with a model that has no price.

    ``models`` maps each stage's model string to whether the price table knows it.
    """
    if not config.limited or config.allow_unpriced:
        return
    unpriced = sorted(model for model, priced in models.items() if not priced)
    if unpriced:
        raise ConfigError(
            f"no price for {', '.join(unpriced)} under a budget: set pricing.<model> "
            "(input/output USD per million tokens; 0 for a self-hosted model) or budget.allow_unpriced=true"
        )
