"""Agreement metrics against hand-worked values and reference implementations."""

import math

import numpy as np
import pytest

from alignkit.feedback.agreement import cohen_kappa, counts_table, fleiss_kappa, krippendorff_alpha, pairwise_agreement


def test_cohen_kappa_by_hand():
    # 10 items: table [[4, 1], [2, 3]] -> p_o = 7/10; marginals a: (5, 5), b: (6, 4)
    # p_e = .5*.6 + .5*.4 = .5 -> kappa = (.7 - .5) / .5 = 0.4
    a = ["y"] * 5 + ["n"] * 5
    b = ["y", "y", "y", "y", "n", "y", "y", "n", "n", "n"]
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="paired"):
        cohen_kappa(a, b[:3])


def test_cohen_kappa_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 3, 50).tolist()
        b = [x if rng.random() < 0.6 else int(rng.integers(0, 3)) for x in a]
        assert cohen_kappa(a, b) == pytest.approx(sk.cohen_kappa_score(a, b))


def test_fleiss_kappa_wikipedia_example():
    # The worked example of Fleiss (1971) as reproduced on Wikipedia: 10 items, 14 raters -> 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_small_by_hand():
    # 2 items, 2 raters, 2 labels: item1 both "a", item2 split. P_1 = 1, P_2 = 0 -> P_bar = .5
    # p_a = 3/4, p_b = 1/4 -> P_e = 9/16 + 1/16 = 10/16 -> kappa = (.5 - .625) / .375 = -1/3
    assert fleiss_kappa([[2, 0], [1, 1]]) == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[2, 0], [1, 2]])


def test_krippendorff_alpha_by_hand():
    # Items: u1 = (a, a), u2 = (a, b), u3 = (b, b, b). Coincidences (pairs within item / (m_u - 1)):
    # u1: o_aa += 2; u2: o_ab += 1, o_ba += 1; u3: o_bb += 6 / 2 = 3. n_a = 3, n_b = 4, n = 7.
    # D_o = 2 / 7; D_e = (49 - 9 - 16) / (7 * 6) = 24 / 42 -> alpha = 1 - (2/7) / (24/42) = 0.5
    triples = [
        (1, "x", "a"),
        (1, "y", "a"),
        (2, "x", "a"),
        (2, "y", "b"),
        (3, "x", "b"),
        (3, "y", "b"),
        (3, "z", "b"),
        (4, "x", "a"),
    ]  # item 4 has one judgment: not pairable, ignored
    assert krippendorff_alpha(triples) == pytest.approx(0.5)


def test_krippendorff_alpha_matches_reference_package():
    kd = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(1)
    n_raters, n_items = 5, 40
    truth = rng.integers(0, 3, n_items)
    data = np.where(rng.random((n_raters, n_items)) < 0.7, truth, rng.integers(0, 3, (n_raters, n_items))).astype(float)
    data[rng.random(data.shape) < 0.2] = np.nan  # missing judgments
    triples = [(i, r, int(data[r, i])) for r in range(n_raters) for i in range(n_items) if not math.isnan(data[r, i])]
    ref = kd.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha(triples) == pytest.approx(ref, abs=1e-9)


def test_fleiss_equals_krippendorff_shape_and_counts_table():
    triples = [(1, "x", "a"), (1, "y", "a"), (2, "x", "b"), (2, "y", "a")]
    table, items, labels = counts_table(triples)
    assert items == [1, 2] and labels == ["a", "b"] and table.tolist() == [[2, 0], [1, 1]]
    assert pairwise_agreement(triples) == {"x": (1, 2), "y": (1, 2)}
