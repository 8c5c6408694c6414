"""Stage names resolve through the registry; users add stages with ``uses: python:module:function``."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.pipeline.registry import STAGES, StageNotFound, load_target, resolve_stage
from alignkit.pipeline.runner import PipelineSpec, override_params, parse_overrides, run_pipeline

USER_STAGES = """
import json
from pathlib import Path

CALLS = []


def double(params, folder):
    CALLS.append(params["x"])
    out = Path(folder) / "doubled.json"
    out.write_text(json.dumps(params["x"] * 2))
    return {"value": params["x"] * 2, "file": str(out)}


NOT_A_FUNCTION = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "src" / "mystages"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(textwrap.dedent(USER_STAGES))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    yield "mystages.steps"
    for name in ("mystages.steps", "mystages"):
        sys.modules.pop(name, None)


def _spec(tmp_path: Path, x: int, uses: str = "python:mystages.steps:double") -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "workdir": str(tmp_path / "run"),
            "stages": [
                {"name": "a", "uses": uses, "with": {"x": x}},
                {"name": "b", "uses": uses, "with": {"x": "${a.value}"}},
            ],
        }
    )


def test_every_built_in_name_resolves_to_a_module_function_string() -> None:
    # The demo's names, unchanged; the pipeline package never imports the sandbox (strings only).
    assert {
        "sandbox.build",
        "sandbox.base_model",
        "train.sft",
        "feedback.simulate",
        "train.rm",
        "train.dpo",
        "train.kto",
        "train.ppo",
        "evaluate.sandbox",
        "report",
    } <= set(STAGES)
    for uses, target in STAGES.items():
        module, _, function = target.partition(":")
        assert module.startswith("alignkit.") and function, uses
    assert STAGES["sandbox.build"].startswith("alignkit.sandbox.stages:")
    assert STAGES["train.dpo"].startswith("alignkit.pipeline.stages:")
    assert callable(resolve_stage("sandbox.build"))


def test_user_python_stage_runs_and_is_cached(tmp_path: Path, user_module: str) -> None:
    steps = __import__(user_module, fromlist=["CALLS"])
    out = run_pipeline(_spec(tmp_path, 3), echo=lambda s: None)
    assert out["a"]["value"] == 6 and out["b"]["value"] == 12
    assert json.loads(Path(out["b"]["file"]).read_text()) == 12
    assert Path(out["b"]["file"]).parent == tmp_path / "run" / "b"
    assert steps.CALLS == [3, 6]

    lines: list[str] = []
    again = run_pipeline(_spec(tmp_path, 3), echo=lines.append)
    assert again == out and steps.CALLS == [3, 6]  # both cached
    assert all(line.endswith(": cached") for line in lines)

    run_pipeline(_spec(tmp_path, 4), echo=lambda s: None)  # a changed param reruns it and what depends on it
    assert steps.CALLS == [3, 6, 4, 8]


def test_unknown_stage_name_is_a_clear_error_before_anything_runs(tmp_path: Path, user_module: str) -> None:
    spec = PipelineSpec.model_validate(
        {
            "workdir": str(tmp_path / "run"),
            "stages": [
                {"name": "ok", "uses": "python:mystages.steps:double", "with": {"x": 1}},
                {"name": "typo", "uses": "train.dop"},
            ],
        }
    )
    with pytest.raises(ValueError, match=r"stage 'typo': unknown 'uses: train.dop'.*train.dpo.*python:package.module:function"):
        run_pipeline(spec, echo=lambda s: None)
    assert not (tmp_path / "run" / "ok").exists()


@pytest.mark.parametrize(
    "uses, message",
    [
        ("python:mystages.steps", "expected python:package.module:function"),
        ("python:mystages.nothere:double", "cannot import module 'mystages.nothere'"),
        ("python:mystages.steps:triple", "module 'mystages.steps' has no attribute 'triple'"),
        ("python:mystages.steps:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is not callable"),
    ],
)
def test_bad_python_targets_say_what_is_wrong(tmp_path: Path, user_module: str, uses: str, message: str) -> None:
    spec = PipelineSpec.model_validate({"workdir": str(tmp_path / "run"), "stages": [{"name": "s", "uses": uses}]})
    with pytest.raises(ValueError, match=f"stage 's': .*{message}"):
        run_pipeline(spec, echo=lambda s: None)


def test_load_target_needs_module_and_function() -> None:
    with pytest.raises(StageNotFound, match="package.module:function"):
        load_target("json")
    assert load_target("json:dumps") is json.dumps


def test_overrides_replace_stage_params_and_reject_unknown_stages(tmp_path: Path) -> None:
    assert parse_overrides("sft.max_steps=2, eval.models={a: x, b: y}, sft.lr=0.001") == {
        "sft": {"max_steps": 2, "lr": 0.001},
        "eval": {"models": {"a": "x", "b": "y"}},
    }
    with pytest.raises(ValueError, match="stage.field=value"):
        parse_overrides("max_steps=2")
    spec = _spec(tmp_path, 3)
    changed = override_params(spec, {"a": {"x": 5, "y": 1}})
    assert changed.stages[0].with_ == {"x": 5, "y": 1} and spec.stages[0].with_ == {"x": 3}
    assert changed.stages[1].with_ == spec.stages[1].with_
    with pytest.raises(ValueError, match=r"not in the pipeline: \['c'\]"):
        override_params(spec, {"c": {"x": 1}})


def test_cli_run_applies_set_overrides_to_a_user_stage(tmp_path: Path, user_module: str) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"workdir: {tmp_path / 'run'}\nstages:\n  - name: a\n    uses: python:mystages.steps:double\n    with: {{x: 1}}\n"
    )
    result = CliRunner().invoke(app, ["run", "--pipeline", str(pipeline), "--set", "a.x=21"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "a" / "stage.json").read_text())["outputs"]["value"] == 42
    bad = CliRunner().invoke(app, ["run", "--pipeline", str(pipeline), "--set", "b.x=1"])
    assert bad.exit_code != 0 and "not in the pipeline" in bad.output


def test_cli_run_takes_the_pipeline_file_as_an_argument(tmp_path: Path, user_module: str) -> None:
    """The README's ``alignkit run my.yaml``: the file positionally, same as ``--pipeline``."""
    pipeline = tmp_path / "my.yaml"
    pipeline.write_text(
        f"workdir: {tmp_path / 'run'}\nstages:\n  - name: a\n    uses: python:mystages.steps:double\n    with: {{x: 1}}\n"
    )
    result = CliRunner().invoke(app, ["run", str(pipeline), "--set", "a.x=5"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "a" / "stage.json").read_text())["outputs"]["value"] == 10
    typo = tmp_path / "typo.yaml"
    typo.write_text(pipeline.read_text().replace("python:mystages.steps:double", "train.sfft"))
    unknown = CliRunner().invoke(app, ["run", str(typo)])
    assert unknown.exit_code == 2 and "unknown 'uses: train.sfft'" in unknown.output
    assert unknown.exception is None or isinstance(unknown.exception, SystemExit)  # a message, not a traceback
    twice = CliRunner().invoke(app, ["run", str(pipeline), "--pipeline", str(pipeline)])
    assert twice.exit_code != 0 and "given twice" in twice.output
