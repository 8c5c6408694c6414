"""Length-controlled win rate: AlpacaEval 2's GLM on the length difference (Dubois et al., 2024).

LLM judges prefer longer answers, so a raw win rate rewards verbosity. AlpacaEval 2 fits, per
model against the reference, a logistic GLM of the judge's preference on the (standardised,
squashed) length difference and reads the win rate off it *at zero length difference*:

    logit P(model preferred on prompt i) = θ + φ · tanh((len_model_i − len_ref_i) / σ)

with σ the standard deviation of the length differences. The length-controlled win rate is
``sigmoid(θ)``: "what would the preference be if both answers had the same length". (AlpacaEval
also fits an instruction-difficulty term shared across a whole leaderboard; with a handful of
models and prompts it is left out here.) Preferences may be soft (the judge's probability), so
the fit maximises the Bernoulli likelihood of soft targets, which is what AlpacaEval does with its
weighted annotations. Lowering its sensitivity to verbosity raised AlpacaEval's Spearman
correlation with Chatbot Arena from 0.94 to 0.98.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_length_glm(
    preferences: Sequence[float] | Any, length_diffs: Sequence[float] | Any, reg: float = 1e-8
) -> tuple[float, float]:
    """``(θ, φ)`` of the GLM above by Newton's method (``reg``: a tiny ridge for separable data)."""
    y = np.asarray(preferences, dtype=float)
    d = np.asarray(length_diffs, dtype=float)
    if y.size == 0 or y.size != d.size:
        raise ValueError(f"need as many preferences ({y.size}) as length differences ({d.size}), at least one")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("preferences must lie in [0, 1]")
    sd = float(d.std())
    x = np.tanh(d / sd) if sd > 0 else np.zeros_like(d)
    design = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    for _ in range(100):
        p = _sigmoid(design @ w)
        grad = design.T @ (y - p) - reg * w
        if np.max(np.abs(grad)) < 1e-12:
            break
        hess = (design * (p * (1 - p))[:, None]).T @ design + reg * np.eye(2)
        w = w + np.linalg.lstsq(hess, grad, rcond=None)[0]
    return float(w[0]), float(w[1])


def lc_win_rate(
    preferences: Sequence[float], length_diffs: Sequence[float], rounds: int = 200, seed: int = 0, ci: float = 0.95
) -> dict[str, float | int]:
    """Raw and length-controlled win rates with bootstrap CIs over prompts.

    ``preferences[i]`` is P(model preferred over the reference on prompt i) (1, 0, 0.5 for a tie, or
    a judge's probability); ``length_diffs[i]`` is len(model answer) − len(reference answer).
    Returns ``win_rate``, ``lc_win_rate``, their CIs, ``length_coef`` (φ) and ``n``.
    """
    y = np.asarray(preferences, dtype=float)
    d = np.asarray(length_diffs, dtype=float)
    theta, phi = fit_length_glm(y, d)
    rng = np.random.default_rng(seed)
    raw, lc = [], []
    for _ in range(rounds):
        idx = rng.integers(0, y.size, size=y.size)
        raw.append(float(y[idx].mean()))
        lc.append(1 / (1 + math.exp(-fit_length_glm(y[idx], d[idx])[0])))
    q = [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]
    raw_lo, raw_hi = np.percentile(raw, q) if rounds else (math.nan, math.nan)
    lc_lo, lc_hi = np.percentile(lc, q) if rounds else (math.nan, math.nan)
    return {
        "win_rate": float(y.mean()),
        "win_rate_ci_low": float(raw_lo),
        "win_rate_ci_high": float(raw_hi),
        "lc_win_rate": 1 / (1 + math.exp(-theta)),
        "lc_ci_low": float(lc_lo),
        "lc_ci_high": float(lc_hi),
        "length_coef": phi,
        "n": int(y.size),
    }
