"""Gold comparisons in people mode: the prediction-powered Bradley–Terry fit and its bootstrap
(``BradleyTerry.bootstrap_clustered`` with ``gold_winner``), checked on hand-worked cases and on a
small simulation where the crowd is biased."""

import math

import numpy as np
import pytest

from alignkit.evaluate.ratings import BradleyTerry


def _battles(p_a, gold=None):
    """One battle per prompt between x and y; ``p_a[i]`` = the crowd's P(x better) (no ties);
    ``gold[i]``: the known winner or None."""
    gold = gold or [None] * len(p_a)
    out = []
    for i, (p, g) in enumerate(zip(p_a, gold)):
        b = {"model_a": "x", "model_b": "y", "winner": "model_a" if p >= 0.5 else "model_b", "posterior": [p, 1 - p, 0.0]}
        b["prompt_index"] = i
        if g is not None:
            b["gold_winner"] = g
        out.append(b)
    return out


def test_rectified_fit_hand_worked():
    # Four battles, the crowd says P(x better) = 0.8 on each; gold on the first two says x won
    # the first and the second was a tie. Gold share 1/2, so the outcomes are
    # 0.8 + 2 (1 - 0.8) = 1.2, 0.8 + 2 (0.5 - 0.8) = 0.2, 0.8, 0.8: x scores 3.0 of 4,
    # P(x beats y) = 0.75 and the gap is 400 log10(3) = 190.85 Elo points.
    bt = BradleyTerry(reg=0.0)
    bt.bootstrap_clustered(_battles([0.8] * 4, ["model_a", "tie", None, None]), rounds=0)
    assert bt.ratings_["x"] - bt.ratings_["y"] == pytest.approx(400 * math.log10(3), abs=1e-6)
    # Without gold the same posteriors give 3.2 of 4: 400 log10(3.2 / 0.8) = 240.82.
    bt.bootstrap_clustered(_battles([0.8] * 4), rounds=0)
    assert bt.ratings_["x"] - bt.ratings_["y"] == pytest.approx(400 * math.log10(4), abs=1e-6)


def test_a_rectified_total_outside_the_games_is_clipped_not_an_error():
    # Crowd 0.4 on three battles, 0.9 on the gold one that y won (gold share 1/4):
    # 1.2 + 0.9 + 4 (0 - 0.9) = -1.5 < 0 wins for x: clipped to 0, y far ahead, ratings finite.
    bt = BradleyTerry()
    bt.bootstrap_clustered(_battles([0.4, 0.4, 0.4, 0.9], [None, None, None, "model_b"]), rounds=0)
    gap = bt.ratings_["y"] - bt.ratings_["x"]
    assert math.isfinite(gap) and gap > 1000


def test_gold_that_agrees_with_the_crowd_changes_nothing():
    # When the crowd's expected outcome equals the known answer on every gold battle the rectifier
    # is zero, so point and bootstrap equal the expected-outcome bootstrap (same resampled prompts),
    # except the rounds that drew no gold battle, which are skipped (P = (6/8)^8 = 10 % a round).
    p = [1.0, 0.0, 0.7, 0.4, 0.9, 0.2, 0.6, 0.55]
    gold = ["model_a", "model_b"] + [None] * 6
    with_gold, without = BradleyTerry(), BradleyTerry()
    with_gold.bootstrap_clustered(_battles(p, gold), rounds=50, seed=3)
    without.bootstrap_clustered(_battles(p), rounds=50, seed=3, draw=False)
    assert with_gold.ratings_ == pytest.approx(without.ratings_)
    kept = ~np.isnan(with_gold.bootstrap_ratings_[:, 0])
    assert 30 <= kept.sum() < 50
    assert np.allclose(with_gold.bootstrap_ratings_[kept], without.bootstrap_ratings_[kept])


def test_gold_corrects_a_biased_crowd_and_its_interval_covers():
    # The truth: x beats y with probability 0.6 (a gap of 400 log10 1.5 = 70.4 Elo). The crowd
    # leans to x: its posterior is 0.9 when x truly won and 0.5 when y did, so its expected
    # outcome averages 0.74 (a gap of 182 Elo). 120 battles, 40 of them gold, 60 data sets.
    truth_gap = 400 * math.log10(1.5)
    rng = np.random.default_rng(0)
    covered_gold = covered_crowd = 0
    gaps = []
    reps = 60
    for rep in range(reps):
        won = rng.random(120) < 0.6
        p = np.where(won, 0.9, 0.5)
        gold = ["model_a" if w else "model_b" for w in won[:40]] + [None] * 80
        bt = BradleyTerry()
        bt.bootstrap_clustered(_battles(list(p), gold), rounds=100, seed=rep)
        gaps.append(bt.ratings_["x"] - bt.ratings_["y"])
        samples = bt.bootstrap_ratings_[:, 0] - bt.bootstrap_ratings_[:, 1]
        lo, hi = np.percentile(samples, [2.5, 97.5])
        covered_gold += lo <= truth_gap <= hi
        crowd = BradleyTerry()
        crowd.bootstrap_clustered(_battles(list(p)), rounds=100, seed=rep, draw=False)
        c = crowd.bootstrap_ratings_[:, 0] - crowd.bootstrap_ratings_[:, 1]
        covered_crowd += np.percentile(c, 2.5) <= truth_gap <= np.percentile(c, 97.5)
    # The gap is estimated without the crowd's bias (mean error +5.9 Elo here), and the interval
    # covers near its level: 52 of these 60 sets (87 %; a plain-mean version of the same bootstrap
    # covers 93 % over 1,000 sets, so the percentile bootstrap at 40 gold battles is a little
    # short of 95 %); the test asks for 50 (83 %); the crowd's own interval
    # resampling the same prompts is centred on the biased gap and almost never covers.
    assert abs(np.mean(gaps) - truth_gap) < 15
    assert covered_gold >= 50
    assert covered_crowd <= 6


def test_gold_winner_is_validated_and_davidson_refuses_it():
    with pytest.raises(ValueError, match="gold_winner"):
        BradleyTerry().bootstrap_clustered(_battles([0.5, 0.5], ["x", None]), rounds=0)
    with pytest.raises(ValueError, match="Davidson"):
        BradleyTerry(ties="davidson").bootstrap_clustered(_battles([1.0, 0.0], ["model_a", None]), rounds=0)
