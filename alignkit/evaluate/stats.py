"""Small confidence-interval helpers shared by win rates and HHH metrics.

Two kinds of interval, chosen by what is measured:

* rates of a yes/no event (harmful compliance, hallucination, over-refusal): the Wilson score
  interval. It is closed-form (no randomness), stays inside [0, 1] and, unlike the normal
  approximation, does not collapse to a zero-width interval when the rate is 0 or 1 — exactly the
  case we hope to see for a well-aligned model.
* means of bounded scores (helpfulness, ...): a bootstrap percentile interval, which makes no
  normality assumption about the scores.
* a mean over a handful of repeated runs (benchmark seeds): Student's t interval, since a
  bootstrap over 4-8 values is unreliable.
* a rate that must be *shown* small (spammers admitted by screening): the exact Clopper–Pearson
  interval, conservative where Wilson's can undercover near 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np


def z_value(ci: float) -> float:
    """Two-sided normal quantile for a ``ci`` interval (1.96 for 0.95)."""
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci} must be strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + ci / 2)


def wilson_interval(successes: float, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (NaNs when ``n == 0``)."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = z_value(ci)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact ends: no 1e-17 round-off
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return (lo, hi)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no overflow at large n)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)
    terms = (log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1))
    return min(1.0, sum(math.exp(x) for x in terms))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper & Pearson 1934) two-sided interval for a binomial rate seen as ``k`` of ``n``.

    Why exact: the rates screening is judged by (spammers admitted) are near 0, where the normal
    interval collapses to a point and Wilson's can fall short of its level. The bounds are the ``p``
    at which ``P(X >= k) = a/2`` (lower) and ``P(X <= k) = a/2`` (upper), ``a = 1 - confidence``,
    found by bisection on the binomial tail (each tail is monotone in ``p``; no scipy at run time:
    ``scipy.stats`` costs 1.6 s to import); 0 and 1 at the ends. For ``k = 0`` the upper bound is
    ``1 - (a/2) ** (1/n)``: 0 of 300 still allows 1.22 %. A one-sided 95 % bound is the upper end of
    the two-sided 90 % interval.
    """
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2

    def solve(too_low: Callable[[float], bool]) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if too_low(mid) else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(lambda p: 1.0 - _binomial_cdf(k - 1, n, p) < tail)
    high = 1.0 if k == n else solve(lambda p: _binomial_cdf(k, n, p) > tail)
    return low, high


def bootstrap_mean_interval(values: Sequence[float], ci: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs when empty)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    z_value(ci)  # validates ci
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return (float(lo), float(hi))


# Two-sided 95 % Student-t quantiles by degrees of freedom (no scipy at run time); past 30 the
# normal value is within 4 %.
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    25: 2.060,
    30: 2.042,
}


def t_interval_95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % Student-t half-width of ``values`` (half-width NaN for fewer than 2)."""
    x = [float(v) for v in values]
    if not x:
        raise ValueError("t_interval_95 needs at least one value")
    if len(x) < 2:
        return x[0], float("nan")
    df = len(x) - 1
    # An untabled df takes the next smaller tabled one: a slightly wider, safe interval.
    t = 1.96 if df > 30 else _T95[max(k for k in _T95 if k <= df)]
    return statistics.fmean(x), t * statistics.stdev(x) / math.sqrt(len(x))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than two points or no spread."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return float("nan")

    def ranks(v: Sequence[float]) -> np.ndarray:
        a = np.asarray(v, dtype=float)
        order = a.argsort(kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=float)
        for value in np.unique(a):  # ties share their mean rank
            r[a == value] = r[a == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))
