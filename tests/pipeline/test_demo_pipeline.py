"""The shipped demo pipeline, end to end at a tiny size: every stage of demo.yaml must still run.

The sizes are overridden with :func:`~alignkit.pipeline.runner.override_params` (the CLI's
``--set``), so the test exercises the same file ``alignkit demo`` runs, only smaller.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.cli.pipeline import DEMO_PIPELINE
from alignkit.pipeline.runner import load_pipeline, override_params, run_pipeline

TINY = {
    "world": {"sft_size": 48},
    "sft": {"max_steps": 2, "batch_size": 4, "warmup_steps": 0},
    "feedback": {"n_items": 24, "n_gold": 8, "n_annotators": 4, "n_screening": 0, "overlap": 2},
    "rm": {"max_steps": 2, "batch_size": 4, "warmup_steps": 0},
    "dpo": {"max_steps": 2, "batch_size": 4, "warmup_steps": 0},
    "kto": {"max_steps": 2, "batch_size": 4, "warmup_steps": 0},
    "ppo": {"max_steps": 1, "rollout_batch_size": 4, "minibatch_size": 4, "ppo_epochs": 1, "max_new_tokens": 8},
    "eval": {"n_prompts": 6, "n_boot": 5, "max_new_tokens": 8, "n_samples": 1},
    **{f"redteam_{m}": {"max_requests": 1, "max_new_tokens": 8, "pair_rounds": 1} for m in ("base", "sft", "dpo", "ppo")},
    "judge_attack": {"max_pairs": 4},
}


def test_demo_pipeline_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    spec = load_pipeline(DEMO_PIPELINE)
    spec.workdir = tmp_path / "demo"
    lines: list[str] = []
    outputs = run_pipeline(override_params(spec, TINY), echo=lines.append)

    assert list(outputs) == [s.name for s in spec.stages]
    assert [line.rsplit(": ", 1)[1].startswith("done") for line in lines if ": done" in line].count(True) == len(spec.stages)
    assert Path(outputs["report"]["report"]).read_text().startswith("<!DOCTYPE html>")
    results = json.loads(Path(outputs["eval"]["results"]).read_text())
    assert [m["name"] for m in results["models"]] == ["base", "sft", "dpo", "kto", "ppo"]
    for stage in ("sft", "rm", "dpo", "kto", "ppo"):
        assert Path(outputs[stage]["model"]).is_dir()

    # Nothing changed: a second run reuses every stage.
    again: list[str] = []
    run_pipeline(override_params(spec, TINY), echo=again.append)
    assert again and all(line.endswith(": cached") for line in again)
