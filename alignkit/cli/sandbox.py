"""``alignkit sandbox build`` and ``alignkit sandbox score``: the verifiable world on disk."""

from __future__ import annotations

import json

import typer

from alignkit.cli.common import config_command


def _build(config) -> None:
    from alignkit.sandbox.build import build_folder

    paths = build_folder(config)
    for name, path in paths.items():
        typer.echo(f"{name:<14} {path}")


def _score(config) -> None:
    from alignkit.sandbox.build import format_summary, score_file

    summary = score_file(config)
    typer.echo(format_summary(summary))
    typer.echo(f"\nScored rows written to {config.output}")
    typer.echo("summary: " + json.dumps({k: summary[k] for k in ("harmful_compliance_rate", "hallucination_rate", "over_refusal_rate")}))


def _pretrain(config) -> None:
    from alignkit.sandbox.pretrain import pretrain_base_model

    typer.echo(f"Base model saved to {pretrain_base_model(config)}")


def register(app: typer.Typer) -> None:
    from alignkit.sandbox.build import BuildConfig, ScoreConfig

    sub = typer.Typer(help="The sandbox world: a small fictional KB with ground-truth HHH scores.", no_args_is_help=True)
    config_command(sub, "build", BuildConfig, _build, help="Write the sandbox world (KB, prompts, corpus, demos, pairs) as JSONL.")
    config_command(sub, "score", ScoreConfig, _score, help="Score a JSONL of prompt/response rows and print HHH metrics per category.")
    from alignkit.sandbox.pretrain import PretrainConfig

    config_command(sub, "pretrain", PretrainConfig, _pretrain, help="Train the tiny unaligned base model on the sandbox corpus.")
    app.add_typer(sub, name="sandbox")
