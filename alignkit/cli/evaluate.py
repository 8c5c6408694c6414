"""``alignkit evaluate`` (your prompts with a judge, or the sandbox) and ``alignkit report`` (results JSON -> HTML).

``alignkit evaluate --prompts FILE --models ... --judge ...`` evaluates your models on your prompts
(:mod:`alignkit.evaluate.judged`); without ``--prompts`` it evaluates on the sandbox's held-out
prompts with the ground-truth scorer (:mod:`alignkit.sandbox.evaluation`). One command, one flag
set: the union of both configs' fields, where a field both share and whose defaults differ
defaults to "the mode's default".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, Field, create_model

from alignkit.cli.common import config_command, load, load_config
from alignkit.data.errors import DataError
from alignkit.evaluate.config import JudgedEvalConfig
from alignkit.sandbox.config import SandboxEvalConfig


class ReportConfig(BaseModel):
    data: Path = Field(description="JSON file with the report data (alignkit.evaluate.ReportData)")
    output: Path = Field(Path("report.html"), description="where to write the self-contained HTML report")


def run_report(config: ReportConfig) -> None:
    """Write a self-contained HTML evaluation report from a results JSON file."""
    load_report_data, write_report = (
        load("alignkit.evaluate.report:load_report_data"),
        load("alignkit.evaluate.report:write_report"),
    )
    try:
        data = load_report_data(config.data)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    path = write_report(config.output, data)
    typer.echo(f"wrote {path}")


def _flag_type(*fields: Any) -> Any:
    # Booleans keep their type (typer makes --x/--no-x); everything else passes through as given and
    # is validated by the mode's own config (its validators, e.g. --models a=x,b=y, included).
    return bool | None if all(f.annotation in (bool, bool | None) for f in fields) else Any


def _union_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    judged, sandbox = JudgedEvalConfig.model_fields, SandboxEvalConfig.model_fields
    for name in [*judged, *(n for n in sandbox if n not in judged)]:
        j, s = judged.get(name), sandbox.get(name)
        if j is not None and s is not None:
            if j.default == s.default:
                desc = j.description
            else:
                desc = f"{j.description} (default with --prompts: {j.default}; on the sandbox: {s.default})"
            fields[name] = (_flag_type(j, s), Field(None, description=desc))
        else:
            f = j or s
            assert f is not None
            mode = "with --prompts" if j is not None else "sandbox only"
            fields[name] = (_flag_type(f), Field(None, description=f"{f.description} ({mode})"))
    return fields


EvaluateConfig = create_model("EvaluateConfig", **_union_fields())


def run_evaluate(config: BaseModel) -> None:
    """Evaluate models: on your prompts with a judge (``--prompts``), or on the sandbox; writes a report."""
    given = {k: v for k, v in config.model_dump().items() if v is not None}
    if given.get("prompts") is not None:
        extra = sorted(set(given) - set(JudgedEvalConfig.model_fields))
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            raise DataError(flag, None, None, "a setting of the sandbox evaluation only, not with --prompts")
        judged = load_config(JudgedEvalConfig, None, given)
        assert isinstance(judged, JudgedEvalConfig)
        data = load("alignkit.evaluate.judged:evaluate_prompts")(judged)
        out = judged.output
    else:
        extra = sorted(set(given) - set(SandboxEvalConfig.model_fields))
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            raise DataError(flag, None, None, "a setting of the judged evaluation: give --prompts FILE with it")
        sandbox = load_config(SandboxEvalConfig, None, given)
        assert isinstance(sandbox, SandboxEvalConfig)
        data = load("alignkit.sandbox.evaluation:evaluate_sandbox")(sandbox)
        out = sandbox.output
    report = load("alignkit.evaluate.report:write_report")(Path(out) / "report.html", data)
    typer.echo(f"results: {Path(out) / 'results.json'}\nreport: {report}")


def register(app: typer.Typer) -> None:
    config_command(app, "report", ReportConfig, run_report)
    config_command(
        app,
        "evaluate",
        EvaluateConfig,
        run_evaluate,
        help="Evaluate models: --prompts FILE --models a=PATH,b=URL#model --judge SPEC for your prompts, "
        "or --models name=path,... alone on the held-out sandbox prompts; writes results.json and report.html.",
    )
