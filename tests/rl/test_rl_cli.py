"""``alignkit ppo`` / ``rloo`` / ``grpo`` through the real typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alignkit.cli import app


@pytest.mark.parametrize("command", ["ppo", "rloo", "grpo"])
def test_rl_commands_train_and_save(tmp_path, prompts_file, monkeypatch, command):
    (tmp_path / "cli_rules.py").write_text("def has_e(prompt, response):\n    return float('e' in response)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / command
    result = CliRunner().invoke(
        app,
        [
            command,
            "--data",
            str(prompts_file),
            "--output",
            str(out),
            "--reward",
            "python:cli_rules:has_e",
            "--max-steps",
            "2",
            "--rollout-batch-size",
            "2",
            "--max-new-tokens",
            "4",
            "--minibatch-size",
            "4",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "policy saved to" in result.output
    run = json.loads((out / "alignkit_run.json").read_text())
    assert run["steps"] == 2 and run["final"]["step"] == 2
    if command == "grpo":
        assert run["config"]["advantage"] == "grpo" and run["config"]["kl_in"] == "loss"


def test_rl_command_reports_bad_prompt_rows(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"question": "no prompt field"}\n')
    result = CliRunner().invoke(app, ["rloo", "--data", str(bad), "--output", str(tmp_path / "o"), "--reward", "sandbox"])
    assert result.exit_code == 2
    assert "bad.jsonl:2: prompt:" in result.output
