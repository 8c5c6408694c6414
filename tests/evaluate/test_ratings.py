"""Ratings checked by hand on tiny cases and against choix on a random tournament."""

import math

import numpy as np
import pytest

from alignkit.evaluate.ratings import BradleyTerry, EloRating, filter_battles, split_by_criterion, win_rate


def b(a, bb, winner, **kw):
    return {"model_a": a, "model_b": bb, "winner": winner, **kw}


def test_bt_three_wins_one_loss_is_scale_log10_3():
    # MLE of sigmoid(d) = 3/4  ->  d = ln 3 (natural units)  ->  rating gap = 400 * ln3 / ln10 = 400 * log10(3)
    battles = [b("x", "y", "model_a")] * 2 + [b("y", "x", "model_b"), b("x", "y", "model_b")]
    bt = BradleyTerry(reg=0.0).fit(battles)
    assert bt.ratings_["x"] - bt.ratings_["y"] == pytest.approx(400 * math.log10(3), abs=1e-7)
    assert (bt.ratings_["x"] + bt.ratings_["y"]) / 2 == pytest.approx(1000)
    # predict_proba recovers the empirical 3/4.
    assert bt.predict_proba("x", "y") == pytest.approx(0.75, abs=1e-9)


def test_bt_tie_counts_half_each_way():
    # 1 win + 2 ties for x: x has 1 + 2*0.5 = 2 "wins", y has 0 + 1 = 1  ->  p = 2/3, gap = 400 log10(2)
    battles = [b("x", "y", "model_a"), b("x", "y", "tie"), b("y", "x", "tie")]
    bt = BradleyTerry(reg=0.0).fit(battles)
    assert bt.ratings_["x"] - bt.ratings_["y"] == pytest.approx(400 * math.log10(2), abs=1e-7)
    # ties="ignore": only the single win is left, no finite MLE; with reg the gap is finite but large.
    ignore = BradleyTerry(ties="ignore", reg=1e-2).fit(battles)
    assert ignore.ratings_["x"] - ignore.ratings_["y"] > 400 * math.log10(2)


def test_bt_three_player_cycle_is_all_equal():
    battles = [b("a", "b", "model_a"), b("b", "c", "model_a"), b("c", "a", "model_a")]
    bt = BradleyTerry(reg=0.0).fit(battles)
    for v in bt.ratings_.values():
        assert v == pytest.approx(1000, abs=1e-6)


def test_elo_two_games_by_hand():
    # Game 1: x beats y, both 1000: E = 0.5, x += 4 * 0.5 = 1002, y = 998.
    # Game 2: x beats y again: E = 1 / (1 + 10**((998 - 1002) / 400)) = 1 / (1 + 10**-0.01)
    #   10**-0.01 = 0.977237221, E = 0.505756, x += 4 * (1 - 0.505756) = 1.976976 -> 1003.976976
    elo = EloRating().fit([b("x", "y", "model_a"), b("y", "x", "model_b")])
    e2 = 1 / (1 + 10 ** (-0.01))
    assert elo.ratings_["x"] == pytest.approx(1002 + 4 * (1 - e2), abs=1e-9)
    assert elo.ratings_["x"] == pytest.approx(1003.976976, abs=1e-6)
    assert elo.ratings_["y"] == pytest.approx(2000 - elo.ratings_["x"], abs=1e-9)


def test_elo_tie_scores_half():
    # A tie between equals moves nothing; a tie after x leads pulls x down: x=1002,y=998, E=0.505756,
    # x += 4 * (0.5 - 0.505756) = -0.023024.
    elo = EloRating().fit([b("x", "y", "tie")])
    assert elo.ratings_ == {"x": 1000.0, "y": 1000.0}
    elo = EloRating().fit([b("x", "y", "model_a"), b("x", "y", "tie")])
    assert elo.ratings_["x"] == pytest.approx(1002 + 4 * (0.5 - 1 / (1 + 10 ** (-0.01))), abs=1e-9)


def _random_battles(seed, n=400, strengths=(0.0, 0.5, 1.0, -0.7, 1.6)):
    rng = np.random.default_rng(seed)
    names = [f"m{i}" for i in range(len(strengths))]
    out = []
    for _ in range(n):
        i, j = rng.choice(len(names), size=2, replace=False)
        p = 1 / (1 + math.exp(-(strengths[i] - strengths[j])))
        u = rng.random()
        winner = "tie" if u < 0.1 else ("model_a" if u < 0.1 + 0.9 * p else "model_b")
        out.append(b(names[i], names[j], winner))
    return names, out


def test_bt_matches_choix_with_ties_and_regularisation():
    choix = pytest.importorskip("choix")
    names, battles = _random_battles(0)
    idx = {m: i for i, m in enumerate(names)}
    # choix has no tie class: double every battle so a tie is one win each way and a win two wins.
    # Doubling the data doubles our log-likelihood, so our reg/2 |s|^2 maps to choix alpha |s|^2 with
    # alpha = reg (2 x (reg/2)).
    data = []
    for x in battles:
        a, bb = idx[x["model_a"]], idx[x["model_b"]]
        if x["winner"] == "model_a":
            data += [(a, bb), (a, bb)]
        elif x["winner"] == "model_b":
            data += [(bb, a), (bb, a)]
        else:
            data += [(a, bb), (bb, a)]
    reg = 0.05
    ref = choix.opt_pairwise(len(names), data, alpha=reg, tol=1e-10)
    ref = ref - ref.mean()
    bt = BradleyTerry(reg=reg).fit(battles)
    ours = np.array([(bt.ratings_[m] - 1000) * math.log(10) / 400 for m in names])
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    # And the unregularised MLE agrees with choix's I-LSR (an independent algorithm).
    ref2 = choix.ilsr_pairwise(len(names), data, alpha=0.0, tol=1e-12)
    ours2 = BradleyTerry(reg=0.0).fit(battles)
    ours2 = np.array([(ours2.ratings_[m] - 1000) * math.log(10) / 400 for m in names])
    np.testing.assert_allclose(ours2, ref2 - ref2.mean(), atol=1e-4)


def test_bt_recovers_order_and_bootstrap_covers():
    names, battles = _random_battles(1, n=1500)
    bt = BradleyTerry()
    ci = bt.bootstrap(battles, rounds=50, seed=0)
    order = sorted(names, key=bt.ratings_.get)
    assert order == ["m3", "m0", "m1", "m2", "m4"]  # strengths -0.7 < 0 < 0.5 < 1 < 1.6
    for m in names:
        lo, hi = ci[m]
        assert lo < bt.ratings_[m] < hi
        assert hi - lo < 150  # 1500 battles pin ratings to within tens of points
    assert bt.bootstrap_ratings_.shape == (50, 5)
    # Deterministic for a seed, different for another.
    assert BradleyTerry().bootstrap(battles, rounds=50, seed=0) == ci
    assert BradleyTerry().bootstrap(battles, rounds=50, seed=1) != ci


def test_elo_bootstrap_and_anchor():
    names, battles = _random_battles(2, n=600)
    elo = EloRating(anchor="m0")
    ci = elo.bootstrap(battles, rounds=20, seed=0)
    assert elo.ratings_["m0"] == 1000
    assert ci["m0"] == (1000, 1000)
    assert ci["m4"][0] > 1000  # the strongest model is clearly above the anchor


def test_criterion_filtering():
    battles = [b("x", "y", "model_a"), b("x", "y", "model_b", criterion="honesty"), b("x", "y", "model_b", criterion="honesty")]
    assert len(filter_battles(battles)) == 1
    assert len(filter_battles(battles, None)) == 3
    assert set(split_by_criterion(battles)) == {"overall", "honesty"}
    assert BradleyTerry(criterion="honesty", reg=1e-2).fit(battles).ratings_["y"] > 1000


def test_bad_battles_raise_with_index():
    with pytest.raises(ValueError, match="battle 1: winner='A'"):
        BradleyTerry().fit([b("x", "y", "tie"), b("x", "y", "A")])
    with pytest.raises(ValueError, match="battle 0: missing field 'winner'"):
        EloRating().fit([{"model_a": "x", "model_b": "y"}])
    with pytest.raises(ValueError, match="no battles"):
        EloRating().fit([])
    with pytest.raises(KeyError, match="unknown model"):
        EloRating().fit([b("x", "y", "tie")]).predict_proba("x", "z")


def test_win_rate_counts_both_positions_and_ties():
    battles = [
        b("m", "r", "model_a"),
        b("r", "m", "model_a"),
        b("r", "m", "tie"),
        b("m", "r", "model_a"),
        b("m", "other", "model_b"),
    ]
    # m: 2 wins, 1 loss, 1 tie vs r  ->  (2 + 0.5) / 4 = 0.625
    out = win_rate(battles, "m", "r", seed=0)
    assert (out["win"], out["tie"], out["loss"], out["n"]) == (2, 1, 1, 4)
    assert out["win_rate"] == pytest.approx(0.625)
    assert out["ci_low"] <= 0.625 <= out["ci_high"]
    w = win_rate(battles, "m", "r", method="wilson")
    # Wilson, p = 0.625, n = 4, z = 1.959964, z^2 = 3.841459: denom = 1 + z^2/4 = 1.960365,
    # centre = (0.625 + z^2/8) / denom = (0.625 + 0.480182) / 1.960365 = 0.563763,
    # half = z * sqrt(0.234375/4 + z^2/64) / denom = 1.959964 * sqrt(0.118617) / 1.960365 = 0.344337
    assert w["ci_low"] == pytest.approx(0.563763 - 0.344337, abs=1e-5)
    assert w["ci_high"] == pytest.approx(0.563763 + 0.344337, abs=1e-5)
    with pytest.raises(ValueError, match="no battles between"):
        win_rate(battles, "m", "nobody")


def test_win_rate_bootstrap_ci_shrinks_with_n():
    small = win_rate([b("m", "r", "model_a")] * 6 + [b("m", "r", "model_b")] * 4, "m", "r")
    big = win_rate([b("m", "r", "model_a")] * 600 + [b("m", "r", "model_b")] * 400, "m", "r")
    assert small["win_rate"] == big["win_rate"] == pytest.approx(0.6)
    assert (big["ci_high"] - big["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 5


def test_bt_ties_ignore_drops_ties_exactly():
    # 3 wins, 1 loss, 5 ties: ignoring ties leaves 3:1 -> gap 400 log10(3); halving gives 5.5:3.5.
    battles = [b("x", "y", "model_a")] * 3 + [b("x", "y", "model_b")] + [b("x", "y", "tie")] * 5
    assert BradleyTerry(ties="ignore", reg=0).fit(battles).ratings_["x"] - 1000 == pytest.approx(200 * math.log10(3), abs=1e-7)
    assert BradleyTerry(reg=0).fit(battles).ratings_["x"] - 1000 == pytest.approx(200 * math.log10(5.5 / 3.5), abs=1e-7)
