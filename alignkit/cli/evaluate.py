"""``alignkit evaluate`` (models on the sandbox) and ``alignkit report`` (results JSON -> HTML)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel, Field


class ReportConfig(BaseModel):
    data: Path = Field(description="JSON file with the report data (alignkit.evaluate.ReportData)")
    output: Path = Field(Path("report.html"), description="where to write the self-contained HTML report")


def run_report(config: ReportConfig) -> None:
    """Write a self-contained HTML evaluation report from a results JSON file."""
    from alignkit.evaluate.report import load_report_data, write_report

    try:
        data = load_report_data(config.data)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    path = write_report(config.output, data)
    typer.echo(f"wrote {path}")


def run_evaluate(config) -> None:
    """Evaluate models on the sandbox: HHH metrics with CIs, ladders, win rates, alignment tax."""
    from alignkit.evaluate.report import write_report
    from alignkit.evaluate.suite import evaluate_sandbox

    data = evaluate_sandbox(config)
    report = write_report(config.output / "report.html", data)
    typer.echo(f"results: {config.output / 'results.json'}\nreport: {report}")


def register(app: typer.Typer) -> None:
    from alignkit.cli.common import config_command
    from alignkit.evaluate.suite import SandboxEvalConfig

    config_command(app, "report", ReportConfig, run_report)
    config_command(app, "evaluate", SandboxEvalConfig, run_evaluate,
                   help="Evaluate models (--models name=path,...) on held-out sandbox prompts and write a report.")
