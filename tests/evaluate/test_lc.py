"""Length-controlled win rate against a hand-worked GLM fit."""

import math

import pytest

from alignkit.evaluate.lc import fit_length_glm, lc_win_rate


def logit(p):
    return math.log(p / (1 - p))


def test_lc_win_rate_matches_hand_worked_saturated_fit():
    # Ten prompts: five where the model's answer is 100 characters longer (it wins 4 of 5) and five
    # where it is 100 shorter (it wins 2 of 5). The differences are ±100, so σ = 100 and the feature
    # is ±tanh(1): two groups, two parameters, so the GLM reproduces each group's frequency:
    #   θ + φ tanh(1) = logit(0.8),  θ − φ tanh(1) = logit(0.4)
    #   θ = (logit 0.8 + logit 0.4) / 2 = (1.386294 − 0.405465) / 2 = 0.490415
    #   φ = (logit 0.8 − logit 0.4) / (2 tanh 1) = 1.791759 / 1.523188 = 1.176322
    #   LC win rate = sigmoid(0.490415) = 0.620204; the raw win rate is 6/10 = 0.6.
    prefs = [1, 1, 1, 1, 0] + [1, 1, 0, 0, 0]
    diffs = [100] * 5 + [-100] * 5
    theta, phi = fit_length_glm(prefs, diffs)
    assert theta == pytest.approx(0.490415, abs=1e-5)
    assert phi == pytest.approx(1.176322, abs=1e-5)
    out = lc_win_rate(prefs, diffs, rounds=50)
    assert out["win_rate"] == pytest.approx(0.6)
    assert out["lc_win_rate"] == pytest.approx(0.620204, abs=1e-5)
    assert out["length_coef"] > 0  # longer answers were preferred
    assert out["lc_ci_low"] <= out["lc_win_rate"] <= out["lc_ci_high"]


def test_lc_removes_a_pure_length_effect_and_keeps_soft_preferences():
    # A judge that only likes length: the model wins when longer, loses when shorter, and is longer
    # on 8 of 10 prompts. Raw win rate 0.8 (with a soft 0.9/0.1 judge: 0.74); LC ≈ 0.5.
    prefs = [0.9] * 8 + [0.1] * 2
    diffs = [50] * 8 + [-50] * 2
    out = lc_win_rate(prefs, diffs, rounds=0)
    assert out["win_rate"] == pytest.approx(0.74)
    # Two groups again: θ ± φ·tanh(±50/σ) reproduce 0.9 and 0.1 exactly, θ = (logit .9 + logit .1)/2 = 0.
    assert out["lc_win_rate"] == pytest.approx(0.5, abs=1e-6)
    # No length variation: LC is the mean preference.
    assert lc_win_rate([1, 0, 1, 1], [3, 3, 3, 3], rounds=0)["lc_win_rate"] == pytest.approx(0.75, abs=1e-6)
    with pytest.raises(ValueError, match="preferences must lie"):
        fit_length_glm([1.5], [0])
