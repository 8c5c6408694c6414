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
