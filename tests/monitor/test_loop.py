"""The sandbox loop end to end at toy size: monitor -> store -> simulated reviewer -> export -> fine-tune."""

from __future__ import annotations

import pytest

from alignkit.sandbox.loop import monitor_loop


@pytest.mark.slow
def test_one_round_of_the_loop(tmp_path):
    result = monitor_loop(tmp_path, rounds=1, stream_size=12, eval_size=6, steps=1)
    first, last = result["rounds"]
    assert first["queued"] == first["reviewed"] == round(first["flagged_rate"]["value"] * 12)
    assert first["corrected"] <= first["reviewed"] and first["flagged_rate"]["n"] == 12
    assert (tmp_path / "round-1" / "model" / "config.json").exists() == (first["corrected"] > 0)
    assert "queued" not in last and last["eval_error_rate"]["n"] == 6


@pytest.mark.slow
def test_a_restarted_round_trains_on_the_corrected_log(tmp_path):
    result = monitor_loop(tmp_path, rounds=1, stream_size=12, eval_size=6, steps=1, restart=True, keep_passed=True, lora=True)
    first, _ = result["rounds"]
    assert first["kept_passed"] == 12 - first["queued"]  # every answer the judge passed is kept
    settings = result["settings"]
    assert settings["restart"] and settings["keep_passed"] and settings["lora"]
    assert first["corrected"] > 0  # the base model errs on a fifth of prompts: 12 of them hold a flag
    data = (tmp_path / "round-1" / "data.jsonl").read_text().splitlines()
    assert len(data) == first["corrected"] + first["kept_passed"]  # corrections + the passed answers
    assert (tmp_path / "round-1" / "model" / "config.json").exists()  # LoRA merged: a plain model
