"""RL prompt sets: a preference file in any shape alignkit reads doubles as the prompts of ppo/rloo/grpo."""

from __future__ import annotations

import json

import pytest

from alignkit.data.io import DataError
from alignkit.train.rl_loop import read_prompts


def test_preference_files_are_prompt_sets(tmp_path):
    hh = tmp_path / "hh.jsonl"
    hh.write_text(
        json.dumps({"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi there\n\nAssistant: No"})
        + "\n"
    )
    assert read_prompts(hh) == [[{"role": "user", "content": "Hi there"}]]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "What colour is the sky?", "chosen": "Blue.", "rejected": "Green."}) + "\n")
    assert read_prompts(pairs) == ["What colour is the sky?"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "?"}) + "\n")
    with pytest.raises(DataError, match="prompt"):
        read_prompts(bad)
