"""Feedback-shape conversions: what comes out, what rides along, ties, and errors that name the record."""

from __future__ import annotations

import pytest

from alignkit.data.conversions import pairs_to_binary, rankings_to_pairs, ratings_to_pairs

# --------------------------------------------------------------------------- pairs → binary


def test_pairs_to_binary_one_up_one_down_with_extras():
    pairs = [
        {"prompt": "p0", "chosen": "good", "rejected": "bad", "annotator": "a1", "margin": 2.0},
        {"prompt": "p1", "chosen": "yes", "rejected": "no", "pair_id": "x-7"},
    ]
    out = pairs_to_binary(pairs)
    assert out == [
        {"annotator": "a1", "margin": 2.0, "pair_id": 0, "prompt": "p0", "completion": "good", "label": True},
        {"annotator": "a1", "margin": 2.0, "pair_id": 0, "prompt": "p0", "completion": "bad", "label": False},
        {"pair_id": "x-7", "prompt": "p1", "completion": "yes", "label": True},
        {"pair_id": "x-7", "prompt": "p1", "completion": "no", "label": False},
    ]
    assert pairs[0] == {"prompt": "p0", "chosen": "good", "rejected": "bad", "annotator": "a1", "margin": 2.0}  # not mutated


def test_pairs_to_binary_skips_ties_and_keeps_message_lists():
    msgs = [{"role": "user", "content": "hi"}]
    out = pairs_to_binary(
        [
            {"prompt": msgs, "chosen": "a", "rejected": "b", "tie": True},
            {"prompt": msgs, "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"},
        ]
    )
    assert len(out) == 2 and out[0]["pair_id"] == 1 and out[0]["prompt"] == msgs


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"prompt": "p", "chosen": "a"}, "rejected"),
        ({"prompt": "p", "chosen": " ", "rejected": "b"}, "chosen"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt"),
    ],
)
def test_pairs_to_binary_errors_name_record_and_field(bad, field):
    with pytest.raises(ValueError, match=rf"record 1: field '{field}'"):
        pairs_to_binary([{"prompt": "p", "chosen": "a", "rejected": "b"}, bad])


# --------------------------------------------------------------------------- rankings → pairs


def test_rankings_to_pairs_all_pairs_best_first():
    rankings = [
        {"prompt": "p", "completions": ["A", "B", "C", "D"], "source": "s1"},
        {"prompt": "q", "completions": ["x", "y"], "ranking_id": "r-9"},
    ]
    out = rankings_to_pairs(rankings)
    # 4*3/2 = 6 pairs from the first ranking, 1 from the second
    assert [(p["chosen"], p["rejected"]) for p in out] == [
        ("A", "B"),
        ("A", "C"),
        ("A", "D"),
        ("B", "C"),
        ("B", "D"),
        ("C", "D"),
        ("x", "y"),
    ]
    assert [p["ranking_id"] for p in out] == [0] * 6 + ["r-9"]
    assert [p["margin"] for p in out[:6]] == [1.0, 2.0, 3.0, 1.0, 2.0, 1.0]  # rank gaps
    assert all(p["source"] == "s1" and p["tie"] is False for p in out[:6])
    assert "completions" not in out[0] and "source" not in out[6]


def test_rankings_ties_from_groups_scores_and_ranks():
    # ties groups: B and C tied -> A>B, A>C, A>D, B>D, C>D (5 pairs, B-C dropped)
    by_groups = {"prompt": "p", "completions": ["A", "B", "C", "D"], "ties": [[1, 2]]}
    by_scores = {"prompt": "p", "completions": ["A", "B", "C", "D"], "scores": [9, 5, 5, 1]}
    by_ranks = {"prompt": "p", "completions": ["A", "B", "C", "D"], "ranks": [1, 2, 2, 3]}
    expected = [("A", "B"), ("A", "C"), ("A", "D"), ("B", "D"), ("C", "D")]
    for ranking in (by_groups, by_scores, by_ranks):
        assert [(p["chosen"], p["rejected"]) for p in rankings_to_pairs([ranking])] == expected
    # margins: score differences 9-5, 9-5, 9-1, 5-1, 5-1; rank gaps 1, 1, 2, 1, 1
    assert [p["margin"] for p in rankings_to_pairs([by_scores])] == [4.0, 4.0, 8.0, 4.0, 4.0]
    assert [p["margin"] for p in rankings_to_pairs([by_ranks])] == [1.0, 1.0, 2.0, 1.0, 1.0]
    kept = rankings_to_pairs([by_scores], tie_policy="keep")
    assert len(kept) == 6
    tie = [p for p in kept if p["tie"]]
    assert len(tie) == 1 and (tie[0]["chosen"], tie[0]["rejected"], tie[0]["margin"]) == ("B", "C", 0.0)


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"prompt": "p", "completions": ["only one"]}, "completions"),
        ({"prompt": "p", "completions": ["a", ""]}, r"completions\[1\]"),
        ({"prompt": "p", "completions": ["a", "b", "a"]}, r"completions\[2\]"),
        ({"prompt": "p", "completions": ["a", "b"], "scores": [1]}, "scores"),
        ({"prompt": "p", "completions": ["a", "b"], "scores": [1, 2]}, "scores"),  # not best first
        ({"prompt": "p", "completions": ["a", "b"], "ranks": [2, 1]}, "ranks"),
        ({"prompt": "p", "completions": ["a", "b", "c"], "ties": [[0, 2]]}, "ties"),  # not contiguous
        ({"prompt": "p", "completions": ["a", "b", "c"], "ties": [[0, 5]]}, "ties"),
        ({"prompt": "p", "completions": ["a", "b"], "ties": [[0, 1]], "scores": [1, 1]}, "ties"),
        ({"completions": ["a", "b"]}, "prompt"),
    ],
)
def test_rankings_errors_name_record_and_field(bad, field):
    with pytest.raises(ValueError, match=rf"record 1: field '{field}'"):
        rankings_to_pairs([{"prompt": "ok", "completions": ["a", "b"]}, bad])


def test_rankings_bad_tie_policy():
    with pytest.raises(ValueError, match="tie_policy"):
        rankings_to_pairs([], tie_policy="random")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- ratings → pairs


RATINGS = [
    {"prompt": "p", "completion": "a", "rating": 7, "annotator": "u1", "batch": 3},
    {"prompt": "q", "completion": "z", "rating": 2, "annotator": "u1", "batch": 3},
    {"prompt": "p", "completion": "b", "rating": 4, "annotator": "u2", "batch": 3},
    {"prompt": "p", "completion": "c", "rating": 4, "annotator": "u1", "batch": 3},
    {"prompt": "p", "completion": "d", "rating": 4.5, "annotator": "u1", "batch": 3},
    {"prompt": "q", "completion": "y", "rating": 5, "annotator": "u3", "batch": 3},
]


def test_ratings_to_pairs_by_hand():
    out = ratings_to_pairs(RATINGS, min_gap=1)
    # prompt p: a7 b4 c4 d4.5 -> a>b (3), a>c (3), a>d (2.5); b-c tie dropped; d-b, d-c gap 0.5 < 1 dropped
    # prompt q: y5 > z2 (3)
    assert [(p["chosen"], p["rejected"], p["margin"]) for p in out] == [
        ("a", "b", 3.0),
        ("a", "c", 3.0),
        ("a", "d", 2.5),
        ("y", "z", 3.0),
    ]
    assert [p["ranking_id"] for p in out] == [0, 0, 0, 1]
    ab = out[0]
    assert ab["chosen_annotator"] == "u1" and ab["rejected_annotator"] == "u2" and "annotator" not in ab
    assert ab["batch"] == 3 and ab["chosen_rating"] == 7 and ab["rejected_rating"] == 4 and ab["tie"] is False
    ac = out[1]
    assert ac["annotator"] == "u1" and "chosen_annotator" not in ac


def test_ratings_min_gap_and_ties():
    out = ratings_to_pairs(RATINGS, min_gap=0.5, tie_policy="keep")
    pairs = {(p["chosen"], p["rejected"]): p for p in out}
    # gap 0.5 now counts: d(4.5) > b, d > c; the b-c tie is kept with margin 0, first seen (b) as chosen
    assert pairs[("d", "b")]["margin"] == 0.5 and pairs[("d", "c")]["margin"] == 0.5
    assert pairs[("b", "c")]["tie"] is True and pairs[("b", "c")]["margin"] == 0.0
    assert len(out) == 7
    assert len(ratings_to_pairs(RATINGS, min_gap=3)) == 3  # only the gaps of 3: a>b, a>c, y>z
    # the same completion rated twice never pairs with itself
    twice = [{"prompt": "p", "completion": "a", "rating": 1}, {"prompt": "p", "completion": "a", "rating": 5}]
    assert ratings_to_pairs(twice) == []


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"prompt": "p", "completion": "a"}, "rating"),
        ({"prompt": "p", "completion": "a", "rating": "high"}, "rating"),
        ({"prompt": "p", "completion": "a", "rating": True}, "rating"),
        ({"prompt": "p", "completion": "", "rating": 1}, "completion"),
    ],
)
def test_ratings_errors_name_record_and_field(bad, field):
    with pytest.raises(ValueError, match=rf"record 1: field '{field}'"):
        ratings_to_pairs([{"prompt": "p", "completion": "x", "rating": 1}, bad])
    with pytest.raises(ValueError, match="min_gap"):
        ratings_to_pairs([], min_gap=0)


def test_conversions_compose_rankings_to_binary():
    pairs = rankings_to_pairs([{"prompt": "p", "completions": ["A", "B", "C"], "scores": [3, 3, 1]}], tie_policy="keep")
    binary = pairs_to_binary(pairs)
    # pairs A>B (tie, skipped), A>C, B>C -> 2 pairs -> 4 binary records, ranking_id carried through
    assert [(b["completion"], b["label"]) for b in binary] == [("A", True), ("C", False), ("B", True), ("C", False)]
    assert {b["ranking_id"] for b in binary} == {0} and [b["pair_id"] for b in binary] == [1, 1, 2, 2]
