"""How many trajectories an instance can afford: the run degrades instead of emitting empty patches.

Before an instance starts generation, the planner compares what is left of the
budget (the instance's own limit, and its fair share of the run's remainder)
with the expected cost of one trajectory, and cuts the number of trajectories
(then the iterations) to fit. The expected cost comes from trajectories that
already finished in this run when there are any, otherwise from a token model
of one trajectory at the configured prices.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

from ..config import Config
from ..llm.pricing import PriceTable

# Tokens of a typical trajectory beyond the packed context, from the paper's
# per-stage ratios: about half the turn limit is used, answers are ~1.5k tokens,
# and each turn adds ~3k tokens of test output and edits to the conversation.
_TURN_FRACTION = 0.5
_ANSWER_TOKENS = 1500
_TURN_GROWTH_TOKENS = 3000
_ISSUE_TOKENS = 2000


@dataclass(frozen=True)
class Plan:
    """What an instance will run, and why it is less than configured (if it is)."""

    trajectories: int
    max_iterations: int
    configured_trajectories: int
    configured_iterations: int
    expected_trajectory_usd: float | None
    available_usd: float | None
    reason: str = ""

    @property
    def degraded(self) -> bool:
        return (self.trajectories, self.max_iterations) != (self.configured_trajectories, self.configured_iterations)

    @property
    def skipped(self) -> bool:
        return self.trajectories == 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "degraded": self.degraded}


def _call_cost(prices: PriceTable, model: str, shared: int, own: int, output: int) -> float | None:
    price = prices.lookup(model)
    if price is None:
        return None
    cache_read = price.cache_read if price.cache_read is not None else price.input
    return (shared * cache_read + own * price.input + output * price.output) * 1e-6


def modelled_trajectory_cost(
    config: Config, prices: PriceTable, context_tokens: int | None = None
) -> float | None:
    """Expected dollars of one testing + editing trajectory, from token counts and prices.

    ``context_tokens`` is the instance's packed context when known (else the full budget).
    """
    gen = config.generation
    context = config.context.budget_tokens if context_tokens is None else context_tokens
    total = 0.0
    phases = (
        (config.models.testing.model, _ISSUE_TOKENS, gen.testing_max_turns),
        (config.models.editing.model, context + _ISSUE_TOKENS, gen.max_iterations),
    )
    for model, prefix, turns in phases:
        calls = max(1, math.ceil(turns * _TURN_FRACTION))
        for call in range(calls):
            cost = _call_cost(prices, model, prefix, call * _TURN_GROWTH_TOKENS + _ANSWER_TOKENS, _ANSWER_TOKENS)
            if cost is None:
                return None
            total += cost
    return total


def plan_generation(
    config: Config,
    *,
    available_usd: float | None,
    expected_trajectory_usd: float | None,
) -> Plan:
    """Trajectories and iterations for one instance given what it may still spend."""
    gen = config.generation
    base = functools.partial(
        Plan,
        configured_trajectories=gen.trajectories,
        configured_iterations=gen.max_iterations,
        expected_trajectory_usd=expected_trajectory_usd,
        available_usd=available_usd,
    )
    if available_usd is None or not expected_trajectory_usd:
        return base(trajectories=gen.trajectories, max_iterations=gen.max_iterations)
    affordable = math.floor(available_usd / expected_trajectory_usd)
    if affordable >= gen.trajectories:
        return base(trajectories=gen.trajectories, max_iterations=gen.max_iterations)
    if affordable >= 1:
        return base(
            trajectories=affordable,
            max_iterations=gen.max_iterations,
            reason=f"budget: ${available_usd:.2f} left affords {affordable} of {gen.trajectories} trajectories "
            f"at about ${expected_trajectory_usd:.2f} each",
        )
    # Not even one full trajectory: try one shorter trajectory before giving up.
    fraction = available_usd / expected_trajectory_usd
    iterations = math.floor(gen.max_iterations * fraction)
    if iterations >= 2:
        return base(
            trajectories=1,
            max_iterations=iterations,
            reason=f"budget: ${available_usd:.2f} left affords one trajectory of {iterations} iterations",
        )
    return base(
        trajectories=0,
        max_iterations=0,
        reason=f"budget: ${available_usd:.2f} left, one trajectory costs about ${expected_trajectory_usd:.2f}",
    )
