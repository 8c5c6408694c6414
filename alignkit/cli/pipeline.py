"""``alignkit run pipeline.yaml`` and ``alignkit demo`` (the shipped sandbox pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel, Field

from alignkit.cli.common import config_command
from alignkit.pipeline.runner import load_pipeline, override_params, parse_overrides, run_pipeline

DEMO_PIPELINE = Path(__file__).resolve().parents[1] / "pipeline" / "demo.yaml"


class RunConfig(BaseModel):
    pipeline: Path = Field(..., description="Pipeline YAML file.")
    workdir: Path | None = Field(None, description="Override the pipeline's workdir.")
    force: str = Field("", description="Comma-separated stage names to rerun even if cached.")
    set: str = Field("", description="Override stage params: stage.field=value,... (e.g. sft.max_steps=2).")


class DemoConfig(BaseModel):
    workdir: Path = Field(Path("runs/demo"), description="Where stage outputs and the report go.")
    force: str = Field("", description="Comma-separated stage names to rerun even if cached.")
    set: str = Field("", description="Override stage params: stage.field=value,... (e.g. sft.max_steps=2).")


def _run(pipeline: Path, workdir: Path | None, force: str, overrides: str = "") -> dict:
    spec = load_pipeline(pipeline)
    if workdir is not None:
        spec.workdir = workdir
    if overrides:
        try:
            spec = override_params(spec, parse_overrides(overrides))
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--set") from err
    return run_pipeline(spec, force=[s.strip() for s in force.split(",") if s.strip()], echo=typer.echo)


def _run_command(config: RunConfig) -> None:
    _run(config.pipeline, config.workdir, config.force, config.set)


def _demo(config: DemoConfig) -> None:
    outputs = _run(DEMO_PIPELINE, config.workdir, config.force, config.set)
    report = next((o["report"] for o in reversed(list(outputs.values())) if "report" in o), None)
    if report:
        typer.echo(f"\nReport: {Path(report).resolve()}")
    else:
        final = list(outputs.values())[-1]
        typer.echo(f"\nDone. Final stage outputs: {final}")


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "run",
        RunConfig,
        _run_command,
        help="Run a pipeline file; cached stages are skipped, a killed run resumes.",
        argument="pipeline",
    )
    config_command(app, "demo", DemoConfig, _demo, help="Run the whole loop on the built-in sandbox (CPU, a few minutes).")
