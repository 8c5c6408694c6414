"""Aggregators against hand-worked cases and reference implementations (crowd-kit, choix)."""

import math

import numpy as np
import pytest

from alignkit.feedback.aggregate import ComparisonAggregator, DawidSkene, MajorityVote, ranking_to_comparisons


def _crowd(n_items=150, seed=0):
    """Items with 3 labels; 3 good workers (0.85), 2 mediocre (0.6), 2 spammers (uniform)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_items)
    skills = {"g1": 0.85, "g2": 0.85, "g3": 0.85, "m1": 0.6, "m2": 0.6, "s1": None, "s2": None}
    rows = []
    for i, t in enumerate(truth):
        for w, sk in skills.items():
            if rng.random() < 0.7:  # not everybody labels everything
                lab = (
                    int(rng.integers(0, 3))
                    if sk is None
                    else (int(t) if rng.random() < sk else int((t + rng.integers(1, 3)) % 3))
                )
                rows.append((i, w, lab))
    return rows, truth


def test_majority_vote_by_hand_reports_ties():
    rows = [(1, "a", "x"), (1, "b", "x"), (1, "c", "y"), (2, "a", "x"), (2, "b", "y")]
    mv = MajorityVote(seed=0).fit(rows)
    assert mv.predict([1]) == {1: "x"}
    assert mv.probas_[1] == pytest.approx({"x": 2 / 3, "y": 1 / 3})
    assert mv.ties_ == {2}  # reported, not silently resolved by order
    # Weighted: c's weight 3 beats a + b (1 + 1).
    assert MajorityVote(weights={"a": 1, "b": 1, "c": 3}).fit(rows).labels_[1] == "y"
    # The tie-break is a seeded coin: over seeds both outcomes appear (not "first seen" every time).
    assert {MajorityVote(seed=s).fit(rows).labels_[2] for s in range(20)} == {"x", "y"}


def test_majority_vote_matches_crowdkit_on_untied_items():
    pd = pytest.importorskip("pandas")
    ck = pytest.importorskip("crowdkit.aggregation")
    rows, _ = _crowd()
    mv = MajorityVote().fit(rows)
    ref = ck.MajorityVote().fit_predict(pd.DataFrame(rows, columns=["task", "worker", "label"]))
    untied = [i for i in mv.labels_ if i not in mv.ties_]
    assert len(untied) > 100
    assert all(mv.labels_[i] == ref[i] for i in untied)


def test_dawid_skene_matches_crowdkit():
    pd = pytest.importorskip("pandas")
    ck = pytest.importorskip("crowdkit.aggregation")
    rows, _ = _crowd()
    ours = DawidSkene(n_iter=100, tol=1e-5).fit(rows)
    ref_model = ck.DawidSkene(n_iter=100, tol=1e-5)
    ref = ref_model.fit_predict(pd.DataFrame(rows, columns=["task", "worker", "label"]))
    same = sum(ours.labels_[i] == ref[i] for i in ours.labels_) / len(ours.labels_)
    assert same >= 0.99
    ref_probas = ref_model.probas_
    diffs = [abs(ours.probas_[i][lab] - ref_probas.loc[i, lab]) for i in ours.probas_ for lab in (0, 1, 2)]
    assert np.median(diffs) < 1e-3


def test_dawid_skene_beats_majority_with_spammers_and_learns_them():
    rows, truth = _crowd(n_items=300, seed=3)
    ds = DawidSkene().fit(rows)
    mv = MajorityVote().fit(rows)
    acc = lambda labels: np.mean([labels[i] == truth[i] for i in range(len(truth))])  # noqa: E731
    assert acc(ds.labels_) > acc(mv.labels_)
    assert ds.skills_["g1"] > 0.75 and ds.skills_["s1"] < 0.5


def test_dawid_skene_clamps_known_labels_and_prior():
    rows = [(1, "a", "x"), (1, "b", "y"), (2, "a", "x"), (2, "b", "x")]
    ds = DawidSkene().fit(rows, known={1: "y"})
    assert ds.probas_[1] == {"x": 0.0, "y": 1.0}
    # A known label nobody gave still becomes a class.
    assert DawidSkene().fit(rows, known={3: "z"}).classes_ == ["x", "y", "z"]
    # With a strong prior every annotator is believed ~prior_accuracy, which is majority vote.
    rows, _ = _crowd(seed=5)
    strong = DawidSkene(prior_strength=1e6).fit(rows)
    mv = MajorityVote().fit(rows)
    agree = [strong.labels_[i] == mv.labels_[i] for i in mv.labels_ if i not in mv.ties_]
    assert np.mean(agree) == 1.0


def test_bradley_terry_matches_choix_without_ties():
    choix = pytest.importorskip("choix")
    rng = np.random.default_rng(0)
    strength = np.array([1.0, 0.5, 0.0, -0.5, -1.0])
    data, comps = [], []
    for _ in range(400):
        i, j = rng.choice(5, 2, replace=False)
        win = rng.random() < 1 / (1 + math.exp(strength[j] - strength[i]))
        data.append((int(i), int(j)) if win else (int(j), int(i)))
        comps.append((int(i), int(j), "A" if win else "B"))
    ref = choix.ilsr_pairwise(5, data, alpha=0.0)
    ref = ref - ref.mean()
    bt = ComparisonAggregator().fit(comps)
    ours = np.array([bt.scores_[i] for i in range(5)])
    assert np.allclose(ours, ref, atol=1e-5)
    assert bt.rank() == [0, 1, 2, 3, 4]


def test_bradley_terry_ties_by_hand():
    # Two items, 6 wins of x, 3 of y, 2 ties.
    comps = [("x", "y", "A")] * 6 + [("x", "y", "B")] * 3 + [("x", "y", "tie")] * 2
    # half: x has 7 "wins", y 4 -> p_x / p_y = 7 / 4 -> score gap log(7/4)
    half = ComparisonAggregator(ties="half").fit(comps)
    assert half.scores_["x"] - half.scores_["y"] == pytest.approx(math.log(7 / 4), abs=1e-8)
    # Davidson, 2 items is saturated: p_x/p_y = w/l = 2, nu = t / sqrt(w l) = 2 / sqrt(18)
    dav = ComparisonAggregator(ties="davidson").fit(comps)
    assert dav.scores_["x"] - dav.scores_["y"] == pytest.approx(math.log(2), abs=1e-6)
    assert dav.nu_ == pytest.approx(2 / math.sqrt(18), abs=1e-6)
    p = dav.predict_proba([("x", "y")])[0]
    assert p == pytest.approx([6 / 11, 2 / 11, 3 / 11], abs=1e-6)  # the observed frequencies


def test_bradley_terry_prior_keeps_undefeated_finite_and_errors():
    bt = ComparisonAggregator(alpha=1.0).fit([("a", "b", "A")] * 5)
    assert math.isfinite(bt.scores_["a"]) and bt.scores_["a"] > bt.scores_["b"]
    with pytest.raises(ValueError, match="outcome"):
        ComparisonAggregator().fit([("a", "b", "C")])
    with pytest.raises(ValueError, match="itself"):
        ComparisonAggregator().fit([("a", "a", "A")])


def test_ranking_to_comparisons():
    assert ranking_to_comparisons([2, 0, 1]) == [(2, 0, "A"), (2, 1, "A"), (0, 1, "A")]
