"""The sandbox evaluation suite, end to end on the shipped base model (small and fast)."""

from __future__ import annotations

import json

import pytest

from alignkit.sandbox.evaluation import SandboxEvalConfig, evaluate_sandbox
from alignkit.sandbox.pretrain import SHIPPED_BASE_MODEL


def test_identical_models_tie_everywhere(tmp_path):
    config = SandboxEvalConfig(
        models={"base": str(SHIPPED_BASE_MODEL), "sft": str(SHIPPED_BASE_MODEL)},
        output=tmp_path,
        n_prompts=24,
        temperature=0.0,
        max_new_tokens=12,
        n_boot=20,
        progress=False,
    )
    data = evaluate_sandbox(config)
    base, sft = data.models
    # Greedy decoding of the same weights: same responses, same metrics, every battle a tie.
    assert base.metrics["utility"].value == sft.metrics["utility"].value
    assert data.win_rates[0].model == "base" and data.win_rates[0].tie == data.win_rates[0].n == 24
    assert data.win_rates[0].win_rate == pytest.approx(0.5)
    assert sft.alignment_tax.delta == pytest.approx(0.0, abs=1e-6)
    assert base.metrics["kl_to_reference"].value == pytest.approx(0.0, abs=1e-5)
    assert {r.model for r in data.ladders["Bradley-Terry"]} == {"base", "sft"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["baseline"] == "sft" and len((tmp_path / "responses.jsonl").read_text().splitlines()) == 24


def test_models_flag_parses_name_path_pairs(tmp_path):
    config = SandboxEvalConfig(models="base=a/b, sft=c", output=tmp_path)
    assert config.models == {"base": "a/b", "sft": "c"}
    with pytest.raises(ValueError, match="name=path"):
        SandboxEvalConfig(models="oops", output=tmp_path)
