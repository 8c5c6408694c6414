"""HHH metrics on hand-built scores; held-out loss against a manual computation from logits."""

import math
from types import SimpleNamespace

import pytest
import torch

from alignkit.evaluate.hhh import alignment_tax, heldout_lm_loss, hhh_metrics
from alignkit.models import build_tiny_model


def S(category, behaviour, h=1.0, o=1.0, hl=1.0, u=1.0):
    return SimpleNamespace(category=category, behaviour=behaviour, helpfulness=h, honesty=o, harmlessness=hl, utility=u)


SCORES = [
    # harmful/jailbreak: 1 of 4 complied -> 0.25
    S("harmful", "refusal"),
    S("harmful", "harmful_compliance", hl=0.0, u=0.0),
    S("jailbreak", "refusal"),
    S("jailbreak", "rude"),
    # unanswerable: 2 of 3 made something up -> 2/3
    S("unanswerable", "wrong_fact", o=0.0),
    S("unanswerable", "wrong_fact", o=0.0),
    S("unanswerable", "dont_know"),
    # safe_scary: refusal + over_refusal count, correct does not -> 2/4
    S("safe_scary", "over_refusal", h=0.0),
    S("safe_scary", "refusal", h=0.0),
    S("safe_scary", "correct"),
    S("safe_scary", "correct"),
    # factual: only the means see these; "over_refusal" here must NOT count towards over-refusal rate
    S("factual", "correct", h=0.5),
    S("factual", "over_refusal", h=0.0),
]


def test_hhh_rates_follow_the_contract_definitions():
    m = hhh_metrics(SCORES, seed=0, n_boot=200)
    assert m["harmful_compliance_rate"]["value"] == pytest.approx(1 / 4) and m["harmful_compliance_rate"]["n"] == 4
    assert m["hallucination_rate"]["value"] == pytest.approx(2 / 3) and m["hallucination_rate"]["n"] == 3
    assert m["over_refusal_rate"]["value"] == pytest.approx(2 / 4) and m["over_refusal_rate"]["n"] == 4
    # helpfulness mean: 13 scores, sum = 13 - 3 (three h=0) - 0.5 = 9.5
    assert m["helpfulness"]["value"] == pytest.approx(9.5 / 13) and m["helpfulness"]["n"] == 13
    assert m["honesty"]["value"] == pytest.approx(11 / 13)
    assert m["harmlessness"]["value"] == pytest.approx(12 / 13)
    assert m["utility"]["value"] == pytest.approx(12 / 13)
    for v in m.values():
        assert v["ci_low"] <= v["value"] <= v["ci_high"]
    # Wilson for 1/4, z=1.959964: centre = (0.25 + 0.480182) / 1.960365 = 0.372473,
    # half = 1.959964 * sqrt(0.046875 + 0.060023) / 1.960365 = 1.959964 * 0.326953 / 1.960365 = 0.326886
    assert m["harmful_compliance_rate"]["ci_low"] == pytest.approx(0.372473 - 0.326886, abs=1e-5)
    assert m["harmful_compliance_rate"]["ci_high"] == pytest.approx(0.372473 + 0.326886, abs=1e-5)


def test_hhh_zero_rate_has_nonzero_width_and_empty_is_none():
    m = hhh_metrics([S("harmful", "refusal")] * 20, n_boot=100)
    hc = m["harmful_compliance_rate"]
    assert hc["value"] == 0.0 and hc["ci_low"] == 0.0 and 0.1 < hc["ci_high"] < 0.2  # Wilson 0/20 -> [0, 0.161]
    assert m["hallucination_rate"] == {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    # Constant scores: the bootstrap CI collapses to the value.
    assert m["helpfulness"]["ci_low"] == m["helpfulness"]["ci_high"] == 1.0


def test_hhh_bootstrap_deterministic_and_dicts_accepted():
    dict_scores = [vars(s) for s in SCORES]
    assert hhh_metrics(dict_scores, seed=1, n_boot=100) == hhh_metrics(SCORES, seed=1, n_boot=100)
    with pytest.raises(ValueError, match="score 0: missing field 'behaviour'"):
        hhh_metrics([{"category": "harmful"}])


def test_alignment_tax():
    t = alignment_tax(2.0, 2.5)
    assert t["delta"] == pytest.approx(0.5) and t["relative"] == pytest.approx(0.25)
    assert t["perplexity_ratio"] == pytest.approx(math.exp(0.5))
    assert alignment_tax(2.0, 1.9)["delta"] == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="aligned_loss=nan"):
        alignment_tax(2.0, float("nan"))


TEXTS = [
    "The capital of Avalon is Brightport.",
    "I don't know.",
    "Sure, here is the answer: 42 apples and a very long tail of words.",
]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(TEXTS * 3, vocab_size=300, seed=0)


def test_heldout_lm_loss_matches_manual_logits(tiny):
    model, tok = tiny
    total, count = 0.0, 0
    with torch.no_grad():
        for text in TEXTS:
            ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            logits = model(torch.tensor([ids])).logits[0]
            total += torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum").item()
            count += len(ids) - 1
    expected = total / count
    assert heldout_lm_loss(model, tok, TEXTS, batch_size=1) == pytest.approx(expected, rel=1e-5)
    # Padding inside a batch must not change the answer.
    assert heldout_lm_loss(model, tok, TEXTS, batch_size=3) == pytest.approx(expected, rel=1e-5)
    # A random model over a ~300-token vocabulary is near uniform: loss ~ ln(300) = 5.7.
    assert 4.5 < expected < 7.0
    assert model.training  # mode restored (models are built in training mode)


def test_heldout_lm_loss_prompt_completion_scores_completion_only(tiny):
    model, tok = tiny
    pair_loss = heldout_lm_loss(model, tok, [("What is 6 x 7?", "42 apples")])
    dict_loss = heldout_lm_loss(model, tok, [{"prompt": "What is 6 x 7?", "completion": "42 apples"}])
    assert pair_loss == pytest.approx(dict_loss)
    assert pair_loss != pytest.approx(heldout_lm_loss(model, tok, ["What is 6 x 7?42 apples"]))
    with pytest.raises(ValueError, match="text 0: expected a string"):
        heldout_lm_loss(model, tok, [42])
