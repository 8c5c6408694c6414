"""``alignkit sandbox build``, ``score`` and ``pretrain``: the verifiable world on disk.

Building and scoring are torch-free and imported directly; pretraining loads the training loop
when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from alignkit.cli.common import config_command
from alignkit.sandbox.build import BuildConfig, ScoreConfig, build_folder, format_summary, score_file
from alignkit.sandbox.config import PretrainConfig


def _built(config: BuildConfig, paths: dict[str, Any]) -> str:
    return "\n".join(f"{name:<14} {path}" for name, path in paths.items())


def _score(config: ScoreConfig) -> None:
    summary = score_file(config)
    typer.echo(format_summary(summary))
    typer.echo(f"\nScored rows written to {config.output}")
    typer.echo(
        "summary: " + json.dumps({k: summary[k] for k in ("harmful_compliance_rate", "hallucination_rate", "over_refusal_rate")})
    )


def _pretrained(config: PretrainConfig, path: Path) -> str:
    return f"Base model saved to {path}"


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="The sandbox world: a small fictional KB with ground-truth HHH scores.", no_args_is_help=True)
    config_command(
        sub,
        "build",
        BuildConfig,
        build_folder,
        done=_built,
        help="Write the sandbox world (KB, prompts, corpus, demos, pairs) as JSONL.",
    )
    config_command(
        sub, "score", ScoreConfig, _score, help="Score a JSONL of prompt/response rows and print HHH metrics per category."
    )
    config_command(
        sub,
        "pretrain",
        PretrainConfig,
        "alignkit.sandbox.pretrain:pretrain_base_model",
        done=_pretrained,
        help="Train the tiny unaligned base model on the sandbox corpus.",
    )
    app.add_typer(sub, name="sandbox")
