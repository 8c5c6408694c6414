"""The judged path on loopback (OpenAI protocol) against the sandbox's ground truth, at a small size."""

import pytest


def test_simulated_judge_over_http_agrees_with_ground_truth(tmp_path):
    pytest.importorskip("alignkit.sandbox")
    from alignkit.sandbox.judge_validation import validate

    r = validate(tmp_path, n_prompts=24, accuracy=0.85, seed=0)
    assert r["comparisons"] == 24 * 10  # 5 models, all pairs, one criterion
    assert r["judge_http_requests"] == 2 * r["comparisons"]  # both orders, nothing else
    # An 85 %-accurate judge with small biases: clearly better than chance, not perfect.
    assert 0.65 < r["agreement_with_truth"] < 0.97
    assert r["judge_consistency"] < 1.0  # it sometimes flips with the order, like real judges
    assert r["ladder_spearman"] > 0.6  # five models, 24 prompts: the middle of the ladder is close
    assert r["judge_ladder"][0] == r["truth_ladder"][0] == "aligned"
