"""Coverage against the number of trajectories, and its power-law fit.

Coverage at k is the fraction of instances that at least one of k sampled
trajectories solves. With n graded trajectories of which c are correct, the
unbiased estimator of that probability is pass@k = 1 - C(n-c, k) / C(n, k)
(Chen et al. 2021, "Evaluating Large Language Models Trained on Code"), far less
noisy than drawing k of the n once.

The Large Language Monkeys paper found coverage to follow an exponentiated
power law, coverage ≈ exp(a·k^b) with a, b < 0. Taking logs twice makes it a
line, log(-log c) = log(-a) + b·log k, which ordinary least squares fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that k of n samples (c of them correct), drawn without replacement, include a correct one.

    Uses the product form 1 - Π_{i=n-c+1..n} (1 - k/i) from Chen et al., which
    never builds the huge binomials.
    """
    if n < 0 or c < 0 or c > n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


@dataclass(frozen=True)
class Sampled:
    """One instance's graded trajectories: ``n`` run, ``c`` correct."""

    n: int
    c: int


def coverage_curve(instances: Sequence[Sampled], max_k: int | None = None) -> list[tuple[int, float]]:
    """Mean pass@k over instances for k = 1..max_k (default: the largest n).

    An instance that ran fewer than k trajectories (the budget cut it, or it
    failed early) counts with what it had, pass@n_i, and one that ran none
    counts as unsolved: the curve is the coverage this run actually reached,
    not one of a smaller, luckier population.
    """
    if not instances:
        return []
    top = max(s.n for s in instances) if max_k is None else max_k
    curve = []
    for k in range(1, top + 1):
        values = [pass_at_k(s.n, s.c, min(k, s.n)) if s.n > 0 else 0.0 for s in instances]
        curve.append((k, sum(values) / len(values)))
    return curve


@dataclass(frozen=True)
class PowerLawFit:
    """coverage ≈ exp(a·k^b), fitted on ``points`` ks where 0 < coverage < 1."""

    a: float
    b: float
    r2: float
    points: int

    def predict(self, k: float) -> float:
        return math.exp(self.a * k**self.b)


def fit_power_law(curve: Sequence[tuple[int, float]]) -> PowerLawFit | None:
    """Least-squares fit of log(-log c) = log(-a) + b·log k; ``None`` with fewer than two usable points.

    Points with coverage 0 or 1 carry no information on this scale (their
    double log is infinite) and are left out.
    """
    usable = [(k, c) for k, c in curve if 0.0 < c < 1.0]
    if len({k for k, _ in usable}) < 2:
        return None
    x = np.log(np.array([k for k, _ in usable], dtype=float))
    y = np.log(-np.log(np.array([c for _, c in usable], dtype=float)))
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / spread if spread > 0 else 1.0
    return PowerLawFit(a=-math.exp(float(intercept)), b=float(slope), r2=r2, points=len(usable))


@dataclass(frozen=True)
class SelectionVsCoverage:
    """How much of what the trajectories found the selection kept, over the same instances."""

    instances: int
    covered: int
    selected_resolved: int
    expected_random: float

    @property
    def coverage(self) -> float:
        return self.covered / self.instances if self.instances else 0.0

    @property
    def accuracy(self) -> float:
        """Resolved by the selected patch, over all instances (the run's score)."""
        return self.selected_resolved / self.instances if self.instances else 0.0

    @property
    def random_accuracy(self) -> float:
        """What picking one candidate at random would score (pass@1)."""
        return self.expected_random / self.instances if self.instances else 0.0

    @property
    def of_covered(self) -> float:
        """Resolved by the selection, over instances some candidate solves: the selector's own accuracy."""
        return self.selected_resolved / self.covered if self.covered else 0.0


def selection_vs_coverage(rows: Sequence[tuple[Sampled, bool]]) -> SelectionVsCoverage:
    """Compare, per instance, (its graded trajectories, whether its selected patch resolved it)."""
    return SelectionVsCoverage(
        instances=len(rows),
        covered=sum(1 for sampled, _ in rows if sampled.c > 0),
        selected_resolved=sum(1 for _, resolved in rows if resolved),
        expected_random=sum(sampled.c / sampled.n for sampled, _ in rows if sampled.n > 0),
    )
