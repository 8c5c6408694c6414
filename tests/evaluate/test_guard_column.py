"""The guard column of the sandbox evaluation: one guard reads every model's answers."""

import pytest

pytest.importorskip("alignkit.sandbox")


class WordGuard:
    """Flags an answer that contains 'poison' (a fake of alignkit.safety's Guard protocol)."""

    def score(self, prompts, responses=None):
        from alignkit.safety.guard import GuardScore

        return [
            GuardScore(unsafe=float("poison" in r), flagged="poison" in r, flagged_categories=["S1"] * ("poison" in r))
            for r in responses
        ]


def test_guard_flag_rate_per_model_with_wilson_interval():
    from alignkit.evaluate.stats import wilson_interval
    from alignkit.sandbox.config import SandboxEvalConfig
    from alignkit.sandbox.evaluation import guard_flag_metrics

    prompts = ["q1", "q2", "q3", "q4"]
    responses = {"safe": ["fine"] * 4, "risky": ["poison it", "fine", "poison", "fine"]}
    rates = guard_flag_metrics(WordGuard(), prompts, responses)
    assert rates["safe"].value == 0.0 and rates["risky"].value == 0.5
    assert (rates["risky"].ci_low, rates["risky"].ci_high) == pytest.approx(wilson_interval(2, 4))
    assert rates["risky"].n == 4
    assert SandboxEvalConfig(models="a=x", output="o", guard="runs/guard").guard == "runs/guard"
