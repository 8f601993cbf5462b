"""pass@k, the coverage curve, the exponentiated power-law fit and selection against coverage."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codemonkeys.report.passk import (
    Sampled,
    coverage_curve,
    fit_power_law,
    pass_at_k,
    selection_vs_coverage,
)


def by_binomials(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # pass@1 is c/n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (250, 1, 10, 10 / 250),  # one correct sample: k/n
    ],
)
def test_known_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12)


def test_edges() -> None:
    assert pass_at_k(8, 1, 8) == 1.0  # k = n with one correct: it is always drawn
    assert pass_at_k(8, 0, 8) == 0.0  # k = n with none correct
    assert all(pass_at_k(8, 0, k) == 0.0 for k in range(1, 9))  # c = 0
    assert all(pass_at_k(8, 8, k) == 1.0 for k in range(1, 9))  # c = n
    assert pass_at_k(8, 5, 4) == 1.0  # fewer wrong samples than k: a correct one is always drawn


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_product_form_equals_the_binomial_form(args: tuple[int, int, int]) -> None:
    n, c, k = args
    assert pass_at_k(n, c, k) == pytest.approx(by_binomials(n, c, k), abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 2, 0), (5, 2, 6), (-1, 0, 1)])
def test_impossible_arguments_raise(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_coverage_curve_averages_instances_and_caps_short_ones() -> None:
    curve = coverage_curve([Sampled(4, 1), Sampled(2, 1), Sampled(0, 0)])
    assert [k for k, _ in curve] == [1, 2, 3, 4]
    # k=1: (1/4 + 1/2 + 0) / 3; k=3: (3/4 + pass@2 of the 2-trajectory instance = 1 + 0) / 3
    assert curve[0][1] == pytest.approx((0.25 + 0.5) / 3)
    assert curve[2][1] == pytest.approx((0.75 + 1.0) / 3)
    assert curve[3][1] == pytest.approx((1.0 + 1.0) / 3)
    values = [c for _, c in curve]
    assert values == sorted(values)  # coverage never falls with more samples
    assert coverage_curve([]) == []


@pytest.mark.parametrize(("a", "b"), [(-1.2, -0.35), (-0.4, -0.8), (-2.5, -0.15)])
def test_fit_recovers_a_and_b_of_exact_data(a: float, b: float) -> None:
    curve = [(k, math.exp(a * k**b)) for k in range(1, 101)]
    fit = fit_power_law(curve)
    assert fit is not None
    assert fit.a == pytest.approx(a, rel=1e-9)
    assert fit.b == pytest.approx(b, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.points == 100
    assert fit.predict(37) == pytest.approx(math.exp(a * 37**b))


def test_fit_recovers_a_and_b_from_a_sampled_curve() -> None:
    """Instances whose per-sample success rates make coverage follow exp(a·k^b) only roughly: still close."""
    a, b = -1.0, -0.5
    rng = random.Random(7)
    curve = [(k, min(0.999, max(1e-3, math.exp(a * k**b) * (1 + rng.uniform(-0.01, 0.01))))) for k in range(1, 65)]
    fit = fit_power_law(curve)
    assert fit is not None
    assert fit.a == pytest.approx(a, rel=0.05)
    assert fit.b == pytest.approx(b, rel=0.1)
    assert fit.r2 > 0.95


def test_fit_skips_points_at_zero_and_one_and_needs_two() -> None:
    assert fit_power_law([(1, 0.0), (2, 1.0), (4, 1.0)]) is None
    assert fit_power_law([(1, 0.3), (2, 1.0)]) is None
    fit = fit_power_law([(1, 0.0), (2, math.exp(-2**-0.5)), (4, math.exp(-(4**-0.5))), (8, 1.0)])
    assert fit is not None and fit.points == 2
    assert (fit.a, fit.b) == (pytest.approx(-1.0), pytest.approx(-0.5))


def test_selection_vs_coverage() -> None:
    rows = [(Sampled(4, 2), True), (Sampled(4, 1), False), (Sampled(4, 0), False), (Sampled(0, 0), False)]
    result = selection_vs_coverage(rows)
    assert (result.instances, result.covered, result.selected_resolved) == (4, 2, 1)
    assert result.coverage == 0.5
    assert result.accuracy == 0.25
    assert result.of_covered == 0.5
    assert result.random_accuracy == pytest.approx((0.5 + 0.25) / 4)
