"""``alignkit benchmark create|freeze|run``: expert benchmarks through the feedback store."""

from __future__ import annotations

from typing import Any

import typer

from alignkit.cli.common import config_command
from alignkit.monitor.config import BenchmarkCreateConfig, BenchmarkFreezeConfig, BenchmarkRunConfig


def _run_done(config: BenchmarkRunConfig, r: dict[str, Any]) -> str:
    lines = [f"{r['benchmark']} ({(r['sha256'] or '')[:12]}): mean grade 1..5 [95% CI]"]
    for model, per in r["models"].items():
        cells = ", ".join(f"{c} {v['mean']:.2f} [{v['ci_low']:.2f}, {v['ci_high']:.2f}]" for c, v in per.items())
        lines.append(f"  {model}: {cells}")
    return "\n".join(lines + [f"results: {config.output}"])


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Expert benchmarks: criteria + rubric, prompts and references from experts, frozen, judged.", no_args_is_help=True
    )
    config_command(
        sub,
        "create",
        BenchmarkCreateConfig,
        "alignkit.monitor.run:run_benchmark_create",
        done="project {result[project]}: {result[tasks]} prompt-writing tasks, criteria {result[criteria]}",
        help="Create the benchmark project (write, verify, reference, review stages).",
    )
    config_command(
        sub,
        "freeze",
        BenchmarkFreezeConfig,
        "alignkit.monitor.run:run_benchmark_freeze",
        done="frozen: {result}",
        help="Freeze into NAME-vN-HASH.json.",
    )
    config_command(
        sub,
        "run",
        BenchmarkRunConfig,
        "alignkit.monitor.run:run_benchmark",
        done=_run_done,
        help="Score models with the rubric judge.",
    )
    app.add_typer(sub, name="benchmark")
