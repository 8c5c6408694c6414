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


def _brute_force_log_likelihood(rows, priors, conf, known=None, pseudo=None):
    """log p(all judgments) by enumerating every item's true label, written independently of the
    vectorised E-step: sum over items of log sum_k prior_k prod_j conf[w_j][k][given_j]."""
    known = known or {}
    by_item = {}
    for item, w, lab in rows:
        by_item.setdefault(item, []).append((w, lab))
    total = 0.0
    for item, given in by_item.items():
        terms = {}
        for k in priors:
            p = priors[k]
            for w, lab in given:
                p *= conf[w][k][lab]
            terms[k] = p
        total += math.log(terms[known[item]]) if item in known else math.log(sum(terms.values()))
    if pseudo:
        total += sum(pseudo[k][g] * math.log(conf[w][k][g]) for w in conf for k in conf[w] for g in conf[w][k])
    return total


def test_dawid_skene_log_likelihood_by_hand():
    # Round 1 scores the parameters fitted to the majority vote; work them out from the counts.
    rows = [(1, "a", "x"), (1, "b", "x"), (1, "c", "y"), (2, "a", "y"), (2, "b", "y"), (3, "a", "x"), (3, "c", "x")]
    ds = DawidSkene(n_iter=1, eps=1e-12).fit(rows)
    post = {1: {"x": 2 / 3, "y": 1 / 3}, 2: {"x": 0.0, "y": 1.0}, 3: {"x": 1.0, "y": 0.0}}
    priors = {k: sum(p[k] for p in post.values()) / 3 for k in ("x", "y")}
    conf = {}
    for w in "abc":
        counts = {k: {g: sum(post[i][k] for i, ww, lab in rows if ww == w and lab == g) for g in "xy"} for k in "xy"}
        conf[w] = {k: {g: max(counts[k][g], 1e-12) / sum(max(c, 1e-12) for c in counts[k].values()) for g in "xy"} for k in "xy"}
    assert ds.log_likelihood_[0] == pytest.approx(_brute_force_log_likelihood(rows, priors, conf) / len(rows), rel=1e-9)
    # With a known label and a Dirichlet prior the objective is the penalised one, still by hand.
    ds = DawidSkene(n_iter=1, prior_strength=2.0, prior_accuracy=0.8).fit(rows, known={1: "y"})
    post[1] = {"x": 0.0, "y": 1.0}
    priors = {k: sum(p[k] for p in post.values()) / 3 for k in ("x", "y")}
    pseudo = {k: {g: 2.0 * (0.8 if k == g else 0.2) for g in "xy"} for k in "xy"}
    for w in "abc":
        counts = {
            k: {g: sum(post[i][k] for i, ww, lab in rows if ww == w and lab == g) + pseudo[k][g] for g in "xy"} for k in "xy"
        }
        conf[w] = {k: {g: counts[k][g] / sum(counts[k].values()) for g in "xy"} for k in "xy"}
    expected = _brute_force_log_likelihood(rows, priors, conf, known={1: "y"}, pseudo=pseudo) / len(rows)
    assert ds.log_likelihood_[0] == pytest.approx(expected, rel=1e-9)


def test_dawid_skene_stops_on_the_likelihood_gain_and_it_never_falls():
    rows, _ = _crowd(n_items=400, seed=5)
    ds = DawidSkene(tol=1e-7, prior_strength=5.0).fit(rows)
    ll = np.array(ds.log_likelihood_)
    assert ds.converged_ and ds.n_iter_ == len(ll) < 100
    assert np.all(np.diff(ll) > -1e-12)  # EM never lowers the penalised likelihood
    assert ll[-1] - ll[-2] < 1e-7 <= ll[-2] - ll[-3]  # it stopped at the first round under tol
    capped = DawidSkene(n_iter=2, tol=0.0).fit(rows)
    assert capped.n_iter_ == 2 and not capped.converged_


def test_dawid_skene_stops_when_crowdkit_does():
    # The issue: on a big crowd the old rule (largest posterior change) ran every round; crowd-kit
    # stops on the gain of its evidence lower bound per judgment. Same rule, same tolerance here.
    pd = pytest.importorskip("pandas")
    ck = pytest.importorskip("crowdkit.aggregation")
    rows, truth = _crowd(n_items=3000, seed=11)
    ours = DawidSkene(tol=1e-5).fit(rows)
    ref = ck.DawidSkene(n_iter=100, tol=1e-5)
    ref_labels = ref.fit_predict(pd.DataFrame(rows, columns=["task", "worker", "label"]))
    assert ours.converged_ and abs(ours.n_iter_ - len(ref.loss_history_)) <= 2
    acc_ours = np.mean([ours.labels_[i] == truth[i] for i in ours.labels_])
    acc_ref = np.mean([ref_labels[i] == truth[i] for i in ours.labels_])
    assert abs(acc_ours - acc_ref) <= 0.002


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
