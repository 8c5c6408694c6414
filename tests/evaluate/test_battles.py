"""Battles with hand-built judges and stand-in scorers (no sandbox needed)."""

from types import SimpleNamespace

import pytest

from alignkit.evaluate.battles import CRITERIA, run_battles, scorer_judge, swap_consistent_judge
from alignkit.evaluate.ratings import BradleyTerry, win_rate


def length_judge(prompt, a, b):
    """Longer wins; equal length ties."""
    return "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"


def first_judge(prompt, a, b):
    """Always prefers the first position: the worst position bias."""
    return "A"


MODELS = {"short": ["a", "b", "c"], "mid": ["aa", "bb", "c"], "long": ["aaa", "bbb", "ccc"]}
PROMPTS = ["p0", "p1", "p2"]


def test_run_battles_all_pairs_maps_winners_through_positions():
    battles = run_battles(MODELS, PROMPTS, length_judge, seed=0)
    assert len(battles) == 3 * 3  # 3 pairs x 3 prompts
    for x in battles:
        ra = MODELS[x["model_a"]][x["prompt_index"]]
        rb = MODELS[x["model_b"]][x["prompt_index"]]
        expected = "model_a" if len(ra) > len(rb) else "model_b" if len(rb) > len(ra) else "tie"
        assert x["winner"] == expected
        assert x["criterion"] == "overall"
    # Positions are shuffled: some battle shows the alphabetically later model first.
    assert {x["model_a"] for x in battles} != {"short"} and len({x["model_a"] for x in battles}) > 1
    # short vs mid on p2 is a tie ("c" vs "c").
    assert sum(x["winner"] == "tie" for x in battles) == 1
    bt = BradleyTerry().fit(battles)
    assert bt.ratings_["long"] > bt.ratings_["mid"] > bt.ratings_["short"]


def test_shuffling_neutralises_position_bias_in_expectation():
    models = {"x": ["same"] * 400, "y": ["same"] * 400}
    battles = run_battles(models, ["p"] * 400, first_judge, seed=3)
    wr = win_rate(battles, "x", "y")
    assert 0.4 < wr["win_rate"] < 0.6  # ~ half the time x is shown first
    unshuffled = run_battles(models, ["p"] * 400, first_judge, shuffle_positions=False)
    assert win_rate(unshuffled, "x", "y")["win_rate"] == 1.0


def test_run_battles_against_reference_and_errors():
    battles = run_battles(MODELS, PROMPTS, length_judge, reference="mid")
    assert len(battles) == 2 * 3
    assert all("mid" in (x["model_a"], x["model_b"]) for x in battles)
    with pytest.raises(ValueError, match="model 'mid' has 2 responses for 3 prompts"):
        run_battles({"short": ["a", "b", "c"], "mid": ["a", "b"]}, PROMPTS, length_judge)
    with pytest.raises(ValueError, match="prompt 0, .*judge returned 'left'"):
        run_battles(MODELS, PROMPTS, lambda p, a, b: "left")
    with pytest.raises(ValueError, match="reference 'gpt'"):
        run_battles(MODELS, PROMPTS, length_judge, reference="gpt")


def fake_score(prompt, response):
    """Stand-in for world.score: helpfulness = length/10, honesty high unless 'lie', harmless unless 'bomb'."""
    honesty = 0.0 if "lie" in response else 1.0
    harmless = 0.0 if "bomb" in response else 1.0
    helpful = min(len(response) / 10, 1.0)
    return SimpleNamespace(
        helpfulness=helpful,
        honesty=honesty,
        harmlessness=harmless,
        utility=min(harmless, honesty) * 0.5 + 0.5 * helpful * harmless,
    )


def test_scorer_judge_overall_and_per_criterion():
    judge = scorer_judge(fake_score, criteria=CRITERIA)
    out = judge("q", "a long lie here", "short")
    # utility: a = 0*0.5 + 0.5*1.0 = 0.5 ; b = 0.5 + 0.5*0.5 = 0.75 -> B
    assert out == {"overall": "B", "criteria": {"helpfulness": "A", "honesty": "B", "harmlessness": "tie"}}
    assert scorer_judge(fake_score, criterion="helpfulness")("q", "abc", "abc") == "tie"
    models = {"liar": ["a long lie here"] * 2, "terse": ["short"] * 2}
    battles = run_battles(models, ["q1", "q2"], judge)
    assert len(battles) == 2 * 4  # overall + 3 criteria per prompt
    assert win_rate(battles, "terse", "liar")["win_rate"] == 1.0
    assert win_rate(battles, "liar", "terse", criterion="helpfulness")["win_rate"] == 1.0
    assert win_rate(battles, "liar", "terse", criterion="harmlessness")["win_rate"] == 0.5
    with pytest.raises(ValueError, match="no attribute 'wit'"):
        scorer_judge(fake_score, criterion="wit")("q", "a", "b")


def test_swap_consistent_judge_kills_position_bias_and_counts_flips():
    sj = swap_consistent_judge(first_judge)
    assert sj("q", "x", "y") == "tie"  # A then (swapped) A = B in original order: inconsistent
    assert sj.consistency_rate == 0.0 and sj.first_position_rate == 1.0
    honest = swap_consistent_judge(length_judge)
    assert honest("q", "long", "s") == "A"
    assert honest("q", "s", "long") == "B"
    assert honest("q", "ab", "cd") == "tie"  # tie both ways is consistent
    assert honest.consistency_rate == 1.0
    assert honest.first_position_rate == 0.5  # 4 decisive verdicts, 2 for the first position

    calls = []

    def half_biased(prompt, a, b):
        # Per criterion: helpfulness follows length (consistent), honesty always says A (flips).
        calls.append((a, b))
        return {"overall": length_judge(prompt, a, b), "criteria": {"helpfulness": length_judge(prompt, a, b), "honesty": "A"}}

    sj = swap_consistent_judge(half_biased)
    out = sj("q", "long", "s")
    assert out == {"overall": "A", "criteria": {"helpfulness": "A", "honesty": "tie"}}
    assert calls == [("long", "s"), ("s", "long")]
    assert sj.criteria_consistency == {"helpfulness": 1.0, "honesty": 0.0}
