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


def test_people_mode_with_the_simulated_crowd_recovers_the_ladder(tmp_path):
    pytest.importorskip("alignkit.sandbox")
    from alignkit.sandbox.judge_validation import validate_people

    r = validate_people(tmp_path, n_prompts=12, n_annotators=6, spammer_fraction=0.0, overlap=3)
    assert r["tasks"] == 12 * 10
    assert r["judgments"] >= r["tasks"] * 3  # every task reached its overlap
    assert r["ladder_spearman"] > 0.5
    # The task map is written once: a rerun reads the same tasks back instead of pushing new ones.
    tasks = (tmp_path / "people" / "people_tasks.json").read_text()
    assert '"task_id"' in tasks
