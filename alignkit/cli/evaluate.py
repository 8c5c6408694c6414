"""``alignkit evaluate`` (models on the sandbox) and ``alignkit report`` (results JSON -> HTML)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel, Field

from alignkit.cli.common import config_command, load
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


def run_evaluate(config: SandboxEvalConfig) -> None:
    """Evaluate models on the sandbox: HHH metrics with CIs, ladders, win rates, alignment tax."""
    data = load("alignkit.sandbox.evaluation:evaluate_sandbox")(config)
    report = load("alignkit.evaluate.report:write_report")(config.output / "report.html", data)
    typer.echo(f"results: {config.output / 'results.json'}\nreport: {report}")


def register(app: typer.Typer) -> None:
    config_command(app, "report", ReportConfig, run_report)
    config_command(
        app,
        "evaluate",
        SandboxEvalConfig,
        run_evaluate,
        help="Evaluate models (--models name=path,...) on held-out sandbox prompts and write a report.",
    )
