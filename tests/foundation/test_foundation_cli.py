"""Every flag maps to a config field; YAML configs load and flags override them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from alignkit.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "sft_sample.jsonl"
runner = CliRunner()


def test_every_sft_config_field_is_a_flag():
    from alignkit.train.config import SFTConfig

    result = runner.invoke(app, ["sft", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name in SFTConfig.model_fields:
        assert "--" + name.replace("_", "-") in result.output, name


def test_yaml_config_with_cli_override(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(f"model: tiny\ndata: {SAMPLE}\noutput: {tmp_path / 'from_yaml'}\nmax_steps: 50\nprogress: false\n")
    result = runner.invoke(app, ["sft", "--config", str(config), "--max-steps", "2", "--output", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "config.json").exists() and not (tmp_path / "from_yaml").exists()
    steps = (tmp_path / "cli" / "metrics.jsonl").read_text().count('"loss"')
    assert steps == 2


def test_invalid_values_are_reported_per_field(tmp_path):
    result = runner.invoke(app, ["sft", "--data", str(SAMPLE), "--output", str(tmp_path), "--eval-fraction", "1.5"])
    assert result.exit_code == 2
    assert "--eval-fraction" in result.output and "less than 1" in result.output


def test_missing_required_field(tmp_path):
    result = runner.invoke(app, ["sft", "--data", str(SAMPLE)])
    assert result.exit_code == 2 and "--output" in result.output


def test_bad_data_file_error_names_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    result = runner.invoke(app, ["sft", "--data", str(bad), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"error: {bad}:2: completion:" in result.output
