"""Student-t intervals for means over benchmark seeds, against scipy's t distribution; the exact
binomial (Clopper–Pearson) interval against worked values and scipy's beta quantiles."""

import math

import pytest
from scipy import stats

from alignkit.evaluate.stats import clopper_pearson, t_interval_95


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12, 21, 31])
def test_t_interval_matches_scipy_where_tabled(n):
    values = [math.sin(i) for i in range(n)]  # any spread of values
    mean, half = t_interval_95(values)
    ref = stats.t.interval(0.95, n - 1, loc=stats.tmean(values), scale=stats.sem(values))
    assert mean == pytest.approx(sum(values) / n)
    assert half == pytest.approx((ref[1] - ref[0]) / 2, rel=2e-4)


def test_t_interval_between_tabled_dfs_is_a_little_wider_and_edges():
    values = [math.cos(i) for i in range(24)]  # df 23 is not tabled: uses df 20's quantile
    _, half = t_interval_95(values)
    exact = stats.t.ppf(0.975, 23) * stats.sem(values)
    assert exact < half < 1.02 * exact
    assert math.isnan(t_interval_95([0.3])[1]) and t_interval_95([0.3])[0] == 0.3
    with pytest.raises(ValueError):
        t_interval_95([])


def test_clopper_pearson_against_worked_values():
    # k = 0: the upper bound solves (1 - p)^n = 0.025, so p = 1 - 0.025^(1/n); at n = 300 that is 1.222 %.
    assert clopper_pearson(0, 300) == pytest.approx((0.0, 1 - 0.025 ** (1 / 300)), abs=1e-12)
    assert clopper_pearson(0, 300)[1] == pytest.approx(0.012221, abs=1e-6)
    # k = n mirrors it.
    assert clopper_pearson(300, 300) == pytest.approx((0.025 ** (1 / 300), 1.0), abs=1e-12)
    # k = 1 of 80: the lower bound solves 1 - (1 - p)^80 = 0.025; the upper solves
    # (1 - p)^80 + 80 p (1 - p)^79 = 0.025 (found here by bisection on the binomial CDF).
    lo, hi = clopper_pearson(1, 80)
    assert lo == pytest.approx(1 - 0.975 ** (1 / 80), rel=1e-9)
    a, b = 0.0, 1.0
    for _ in range(100):
        m = (a + b) / 2
        a, b = (m, b) if (1 - m) ** 80 + 80 * m * (1 - m) ** 79 > 0.025 else (a, m)
    assert hi == pytest.approx(a, rel=1e-9)
    # The textbook 5 of 10 interval: 0.1871 to 0.8129.
    assert clopper_pearson(5, 10) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    # A one-sided 95 % bound is the two-sided 90 % interval's upper end: 0 of 300 -> 1 - 0.05^(1/300) < 1 %.
    assert clopper_pearson(0, 300, confidence=0.90)[1] == pytest.approx(1 - 0.05 ** (1 / 300), abs=1e-12)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


@pytest.mark.parametrize("k,n", [(1, 80), (2, 432), (3, 756), (17, 40), (79, 80), (5, 2000)])
def test_clopper_pearson_matches_scipys_beta_quantiles(k, n):
    # The textbook form: Beta(a/2; k, n - k + 1) and Beta(1 - a/2; k + 1, n - k) (scipy, tests only).
    for confidence in (0.95, 0.90):
        a = 1 - confidence
        lo, hi = clopper_pearson(k, n, confidence)
        assert lo == pytest.approx(stats.beta.ppf(a / 2, k, n - k + 1), rel=1e-9)
        assert hi == pytest.approx(stats.beta.ppf(1 - a / 2, k + 1, n - k), rel=1e-9)
