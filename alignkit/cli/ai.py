"""AI-feedback commands: ``alignkit serve``, ``alignkit cai`` and ``alignkit ai-label``."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command


def _serve(config):  # heavy imports stay inside the commands: keeps ``alignkit --help`` fast
    from alignkit.ai.server import serve

    serve(config)


def _cai(config):
    from alignkit.ai.runner import run_cai

    paths = run_cai(config)
    typer.echo(f"SL-CAI traces, SFT data and pairs written to {paths['traces'].parent}")


def _ai_label(config):
    from alignkit.ai.runner import run_ai_label

    counts = run_ai_label(config)
    extra = f", {counts['needs_human']} routed to human review" if config.review_threshold is not None else ""
    typer.echo(f"{counts['labelled']} of {counts['input']} pairs labelled into {config.output}{extra}")


def register(app: typer.Typer) -> None:
    from alignkit.ai.runner import AILabelConfig, CAIConfig
    from alignkit.ai.server import ServeConfig

    config_command(app, "serve", ServeConfig, _serve, help="Serve a model over an OpenAI-compatible HTTP API.")
    config_command(app, "cai", CAIConfig, _cai, help="Supervised Constitutional AI: critique and revise responses.")
    config_command(app, "ai-label", AILabelConfig, _ai_label,
                   help="Label preference pairs with an AI feedback model (soft labels, both orders).")
