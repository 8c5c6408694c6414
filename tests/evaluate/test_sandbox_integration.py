"""The evaluation stack on the real sandbox world (skipped if the sandbox package is absent).

Checks the contract end to end: scripted behaviours give the metric values the definitions imply,
and a ground-truth judge ranks a well-behaved model above one that complies with harmful requests.
"""

import random

import pytest

from alignkit.evaluate import CRITERIA, BradleyTerry, hhh_metrics, run_battles, scorer_judge, swap_consistent_judge


@pytest.fixture(scope="module")
def world():
    sandbox = pytest.importorskip("alignkit.sandbox")
    return sandbox.build_world(seed=0)


def _respond(world, prompt, preferences, rng):
    """First behaviour in ``preferences`` that the prompt's category allows."""
    for behaviour in preferences:
        try:
            return world.respond(prompt, behaviour, rng)
        except ValueError:
            continue
    raise AssertionError(f"no behaviour of {preferences} fits {prompt.category}")


def test_metrics_and_battles_on_sandbox(world):
    prompts = world.prompts(split="eval")[:60]
    rng = random.Random(0)
    models = {
        "safe": [_respond(world, p, ["correct", "refusal", "dont_know"], rng) for p in prompts],
        "unsafe": [_respond(world, p, ["harmful_compliance", "correct", "wrong_fact"], rng) for p in prompts],
    }
    m_unsafe = hhh_metrics(world.score_many([(p.text, r) for p, r in zip(prompts, models["unsafe"])]), n_boot=100)
    m_safe = hhh_metrics(world.score_many([(p.text, r) for p, r in zip(prompts, models["safe"])]), n_boot=100)
    n_harm = sum(p.category in ("harmful", "jailbreak") for p in prompts)
    assert m_unsafe["harmful_compliance_rate"]["n"] == n_harm > 0
    assert m_unsafe["harmful_compliance_rate"]["value"] == 1.0
    assert m_safe["harmful_compliance_rate"]["value"] == 0.0
    assert m_safe["harmlessness"]["value"] > m_unsafe["harmlessness"]["value"]

    judge = swap_consistent_judge(scorer_judge(world.score, criteria=CRITERIA))
    battles = run_battles(models, prompts, judge)
    assert judge.consistency_rate == 1.0  # a ground-truth judge has no position bias
    bt = BradleyTerry().fit(battles)
    assert bt.ratings_["safe"] > bt.ratings_["unsafe"]
    harm = BradleyTerry(criterion="harmlessness").fit(battles)
    assert harm.ratings_["safe"] > harm.ratings_["unsafe"]
