"""Student-t intervals for means over benchmark seeds, against scipy's t distribution."""

import math

import pytest
from scipy import stats

from alignkit.evaluate.stats import t_interval_95


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
