"""Base corpus rates, curated demonstrations and ground-truth pairs."""

from __future__ import annotations

import math

import pytest

from alignkit.data.io import validate_row
from alignkit.sandbox import BaseCorpusConfig, base_corpus, make_pairs, sft_demos, truth_pairs


def _within(observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_base_corpus_behaviour_rates_match_config(world):
    rates = BaseCorpusConfig(harmful_compliance_rate=0.8, hallucination_rate=0.3, rude_rate=0.1, fact_sheet_fraction=0.1)
    rows = base_corpus(world, 4000, rates, seed=5)
    assert len(rows) == 4000
    harmful = [r for r in rows if r["category"] in ("harmful", "jailbreak")]
    unans = [r for r in rows if r["category"] == "unanswerable"]
    # rudeness is drawn first, so harmful compliance = (1 - 0.1) * 0.8 = 0.72; hallucination = 0.9 * 0.3 = 0.27
    assert _within(sum(r["behaviour"] == "harmful_compliance" for r in harmful), len(harmful), 0.72)
    assert _within(sum(r["behaviour"] == "wrong_fact" for r in unans), len(unans), 0.27)
    assert _within(
        sum(r["behaviour"] == "rude" for r in rows if r["category"] != "fact_sheet"),
        sum(r["category"] != "fact_sheet" for r in rows),
        0.1,
    )
    assert _within(sum(r["category"] == "fact_sheet" for r in rows), 4000, 0.1)
    # the recorded behaviour is what the scorer sees in the text
    for r in rows[:500]:
        if r["category"] != "fact_sheet":
            assert world.score(r["prompt"], r["completion"]).behaviour == r["behaviour"]
        validate_row(r, "sft")
    assert base_corpus(world, 200, rates, seed=5) == rows[:200]  # deterministic, prefix-stable


def test_base_corpus_only_uses_its_split(world):
    train = {p.text for p in world.prompts("train")}
    rows = base_corpus(world, 500, seed=0)
    assert all(r["prompt"] in train for r in rows if r["category"] != "fact_sheet")


def test_corpus_config_validation():
    with pytest.raises(ValueError):
        BaseCorpusConfig(category_mix={"sports": 1.0})
    with pytest.raises(ValueError):
        BaseCorpusConfig(harmful_compliance_rate=1.5)


def test_sft_demos_are_all_ideal_and_polite(world):
    demos = sft_demos(world, 400, seed=0)
    assert 300 <= len(demos) <= 600
    for d in demos:
        validate_row(d, "sft")
        s = world.score(d["prompt"], d["completion"])
        assert s.ideal, d
        if d["category"] in ("harmful", "jailbreak"):
            assert "alternative" in s.labels
    assert {d["category"] for d in demos} == {"factual", "unanswerable", "harmful", "safe_scary", "jailbreak"}
    assert sft_demos(world, 400, seed=0) == demos


def test_truth_pairs_are_ordered_and_labelled(world):
    pairs = truth_pairs(world, 300, split="eval", seed=1)
    assert len(pairs) == 300
    evals = {p.text for p in world.prompts("eval")}
    for r in pairs:
        validate_row(r, "pair")
        assert r["prompt"] in evals
        sc, sr = world.score(r["prompt"], r["chosen"]), world.score(r["prompt"], r["rejected"])
        assert sc.utility > sr.utility and r["margin"] > 0
        assert (sc.behaviour, sr.behaviour) == (r["chosen_behaviour"], r["rejected_behaviour"])
        for c in ("helpfulness", "honesty", "harmlessness"):
            a, b = getattr(sc, c), getattr(sr, c)
            assert r["criteria"][c] == ("tie" if a == b else "chosen" if a > b else "rejected")
    # helpfulness and harmlessness disagree on some pairs (compliance is helpful but harmful)
    assert any(r["criteria"]["helpfulness"] == "rejected" and r["criteria"]["harmlessness"] == "chosen" for r in pairs)
    assert truth_pairs(world, 300, split="eval", seed=1) == pairs


def test_make_pairs_from_two_policies(world, one_of):
    p = one_of["factual"]
    prompts = [p.text, p, p.text, p.text]
    good = f"The river of {p.entity} is the {p.answer}."
    a = [good, "I don't know.", "same", ""]
    b = ["I don't know.", good, "same", good]
    pairs = make_pairs(world, prompts, a, b)
    assert len(pairs) == 2  # identical texts and empty sides are dropped
    assert all(r["chosen"] == good and r["rejected"] == "I don't know." for r in pairs)
    assert pairs[1]["prompt"] == p.text
    # a tie kept on request
    ties = make_pairs(
        world,
        [p.text],
        [
            "I don't know.",
        ][:1],
        ["I do not know."],
        drop_ties=False,
    )
    assert ties[0]["margin"] == 0 and ties[0]["chosen"] == "I don't know."
    assert make_pairs(world, [p.text], ["I don't know."], ["I do not know."]) == []
    with pytest.raises(ValueError, match="differ in length"):
        make_pairs(world, [p.text], ["a", "b"], ["c"])
