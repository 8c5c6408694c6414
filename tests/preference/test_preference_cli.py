"""`alignkit rm|dpo|kto` run end to end from the command line, flags generated from the configs."""

from __future__ import annotations

import json

from preference_data import arithmetic_pairs, write_jsonl
from typer.testing import CliRunner

from alignkit.cli import app


def test_preference_commands_run_from_the_cli(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs(n=12))
    runner = CliRunner()
    common = ["--data", str(data), "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--no-progress"]
    for command, extra in [
        ("rm", ["--center-coef", "0.01"]),
        ("dpo", ["--loss", "ipo", "--beta", "0.5"]),
        ("kto", ["--undesirable-weight", "1.2"]),
    ]:
        out = tmp_path / command
        result = runner.invoke(app, [command, *common, "--output", str(out), *extra])
        assert result.exit_code == 0, (command, result.output)
        run = json.loads((out / "alignkit_run.json").read_text())
        assert run["final"]["step"] == 2
    assert json.loads((tmp_path / "dpo" / "alignkit_run.json").read_text())["config"]["loss"] == "ipo"
    bad = runner.invoke(app, ["dpo", *common, "--output", str(tmp_path / "x"), "--loss", "nope"])
    assert bad.exit_code != 0
    missing = runner.invoke(app, ["dpo", "--data", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "y")])
    assert missing.exit_code == 2 and "no such file" in missing.output
