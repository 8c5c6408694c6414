"""The simulated crowd: agreement with the ground truth matches the configured skill, spammers
answer at chance, biases show up where they should, and everything is deterministic."""

from __future__ import annotations

import math
import random

import pytest

from alignkit.sandbox import ExpertWriter, SimAnnotator, make_crowd, truth_pairs
from alignkit.sandbox.crowd import GOOD_THRESHOLD


def _within(observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.fixture(scope="module")
def pairs(world):
    return truth_pairs(world, 600, split="train", seed=11)


def _agreement(ann, pairs, rng, swap=True):
    """Share of pairs where the annotator's overall answer matches the ground truth (A/B shown in
    random order so position bias cannot help)."""
    hits = 0
    for r in pairs:
        first = rng.random() < 0.5 if swap else True
        a, b = (r["chosen"], r["rejected"]) if first else (r["rejected"], r["chosen"])
        hits += ann.compare(r["prompt"], a, b, rng)["overall"] == ("A" if first else "B")
    return hits


def test_agreement_matches_skill(world, pairs):
    crowd = make_crowd(
        world, n=6, spammer_fraction=0.0, seed=1, skill_range=(0.6, 0.95), position_bias=0.0, length_bias=0.0, helpful_lean=0.0
    )
    rng = random.Random(0)
    for ann in crowd:
        hits = _agreement(ann, pairs * 2, rng)
        assert _within(hits, 2 * len(pairs), ann.skill), (ann, hits / (2 * len(pairs)))


def test_spammers_answer_at_chance(world, pairs):
    crowd = make_crowd(world, n=10, spammer_fraction=0.3, seed=2)
    spammers = [a for a in crowd if a.is_spammer]
    assert len(spammers) == 3 and all(a.skill == 0.5 for a in spammers)
    rng = random.Random(1)
    for ann in spammers:
        assert _within(_agreement(ann, pairs, rng), len(pairs), 0.5)
        ratings = [ann.rate(pairs[0]["prompt"], pairs[0]["chosen"], rng) for _ in range(700)]
        assert set(ratings) == set(range(1, 8))


def test_per_criterion_answers_follow_truth(world, pairs):
    ann = SimAnnotator(id="x", skill=0.8, world=world)
    rng = random.Random(3)
    hits = n = 0
    for r in pairs:
        out = ann.compare(r["prompt"], r["chosen"], r["rejected"], rng)
        for c, truth in r["criteria"].items():
            if truth != "tie":
                n += 1
                hits += out["criteria"][c] == ("A" if truth == "chosen" else "B")
    assert _within(hits, n, 0.8)


def test_position_bias_shifts_answers_toward_a(world, pairs):
    # with truth balanced between positions, P(answer A) = b + (1 - b) * 0.5 = 0.5 + b/2 for a perfect reader
    ann = SimAnnotator(id="p", skill=1.0, position_bias=0.4, world=world)
    rng = random.Random(4)
    answers = []
    for i, r in enumerate(pairs):
        a, b = (r["chosen"], r["rejected"]) if i % 2 == 0 else (r["rejected"], r["chosen"])
        answers.append(ann.compare(r["prompt"], a, b, rng)["overall"])
    assert _within(answers.count("A"), len(answers), 0.7)


def test_helpful_lean_prefers_harmful_compliance(world, pairs):
    harmful = [r for r in pairs if {r["chosen_behaviour"], r["rejected_behaviour"]} == {"refusal", "harmful_compliance"}]
    assert len(harmful) >= 20
    fair = SimAnnotator(id="f", skill=1.0, world=world)
    leaning = SimAnnotator(id="l", skill=1.0, helpful_lean=0.95, world=world)
    rng = random.Random(5)
    assert _agreement(fair, harmful, rng) == len(harmful)
    # lean 0.95: refusal 0.05*0.96 + 0.95*0.2 = 0.238 < compliance 0.05*0.2 + 0.95*1.0 = 0.96
    assert _agreement(leaning, harmful, rng) == 0


def test_length_bias_prefers_longer(world, one_of):
    p = one_of["factual"]
    ann = SimAnnotator(id="len", skill=1.0, length_bias=1.0, world=world)
    short_right = p.answer
    long_wrong = "I don't know. I have no record of that place at all, sorry."
    rng = random.Random(6)
    assert all(ann.compare(p.text, short_right, long_wrong, rng)["overall"] == "B" for _ in range(20))


def test_perfect_annotator_other_tasks(world, one_of, pairs):
    ann = SimAnnotator(id="perfect", skill=1.0, world=world)
    rng = random.Random(7)
    for r in pairs[:80]:
        sc = world.score(r["prompt"], r["chosen"])
        assert ann.binary(r["prompt"], r["chosen"], rng) == sc.ideal
        assert ann.review(r["prompt"], r["rejected"], rng) == (
            "accept" if world.score(r["prompt"], r["rejected"]).ideal else "reject"
        )
        assert ann.check_rules(r["prompt"], r["rejected"], rng) == world.score(r["prompt"], r["rejected"]).rules
        order = ann.rank(r["prompt"], [r["rejected"], r["chosen"]], rng)
        assert order == [1, 0]
        assert 1 <= ann.rate(r["prompt"], r["chosen"], rng) <= 7
    assert ann.verify_prompt(one_of["harmful"].text, rng) is True
    assert ann.verify_prompt("qwp zzx !!", rng) is False
    # good == ideal when there is no lean: ideal utilities sit above the threshold, others below
    assert ann.good(world.score(one_of["factual"].text, "I don't know.")) is False
    assert world.score(one_of["harmful"].text, "I can't help with that.").utility > GOOD_THRESHOLD


def test_noisy_binary_and_rank_accuracy(world, pairs):
    ann = SimAnnotator(id="n", skill=0.75, world=world)
    rng = random.Random(8)
    hits = sum(ann.binary(r["prompt"], r["chosen"], rng) == world.score(r["prompt"], r["chosen"]).ideal for r in pairs)
    assert _within(hits, len(pairs), 0.75)

    # rankings get better with skill
    def rank_acc(skill):
        a = SimAnnotator(id="r", skill=skill, world=world)
        return sum(a.rank(r["prompt"], [r["rejected"], r["chosen"]], rng) == [1, 0] for r in pairs)

    assert rank_acc(0.95) > rank_acc(0.6)


def test_crowd_is_deterministic(world, pairs):
    c1 = make_crowd(world, n=20, spammer_fraction=0.2, seed=9)
    c2 = make_crowd(world, n=20, spammer_fraction=0.2, seed=9)
    assert c1 == c2 and sum(a.is_spammer for a in c1) == 4
    r1 = [a.compare(p["prompt"], p["chosen"], p["rejected"], random.Random(i)) for i, (a, p) in enumerate(zip(c1, pairs))]
    r2 = [a.compare(p["prompt"], p["chosen"], p["rejected"], random.Random(i)) for i, (a, p) in enumerate(zip(c2, pairs))]
    assert r1 == r2
    with pytest.raises(ValueError):
        make_crowd(world, spammer_fraction=1.5)


def test_expert_writer_error_rate(world):
    prompts = world.prompts("train")
    rng = random.Random(10)
    perfect = ExpertWriter(0.0, world=world)
    assert all(world.score(p.text, perfect.write(p.text, rng)).ideal for p in prompts[:200])
    sloppy = ExpertWriter(0.2, world=world)
    n = 1500
    errors = sum(not world.score(p.text, sloppy.write(p, rng)).ideal for p in (prompts * 3)[:n])
    assert _within(errors, n, 0.2)
    with pytest.raises(ValueError):
        ExpertWriter(1.5)


@pytest.mark.filterwarnings("ignore:.*(keyword|inplace).*deprecated")
def test_dawid_skene_recovers_the_configured_skills(world):
    """Cross-check with crowd-kit (test-only): Dawid-Skene fitted on the simulated crowd's raw
    labels estimates each worker's accuracy close to its configured skill, and beats majority vote
    when 40% of the crowd are spammers - the behaviour a real crowd's aggregation relies on."""
    pd = pytest.importorskip("pandas")
    aggregation = pytest.importorskip("crowdkit.aggregation")
    pairs = truth_pairs(world, 400, seed=3)
    crowd = make_crowd(world, n=20, spammer_fraction=0.4, seed=0, position_bias=0, length_bias=0, helpful_lean=0)
    rng = random.Random(0)
    rows, truth = [], {}
    for i, r in enumerate(pairs):
        first = rng.random() < 0.5
        a, b = (r["chosen"], r["rejected"]) if first else (r["rejected"], r["chosen"])
        truth[i] = "A" if first else "B"
        for ann in rng.sample(crowd, 5):
            rows.append({"task": i, "worker": ann.id, "label": ann.compare(r["prompt"], a, b, rng)["overall"]})
    df = pd.DataFrame(rows)
    truth = pd.Series(truth)
    mv = aggregation.MajorityVote().fit_predict(df)
    ds_model = aggregation.DawidSkene(n_iter=100).fit(df)
    ds = ds_model.labels_
    mv_acc = float((mv == truth[mv.index]).mean())
    ds_acc = float((ds == truth[ds.index]).mean())
    assert ds_acc > mv_acc
    errors = ds_model.errors_
    for ann in crowd:
        est = (errors.loc[ann.id].loc["A", "A"] + errors.loc[ann.id].loc["B", "B"]) / 2
        assert abs(est - ann.skill) < 0.12, (ann, est)
