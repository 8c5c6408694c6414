"""Training stages as CLI commands: ``alignkit sft`` (and the preference/RL stages as they land)."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command


def _sft(config):  # imported lazily: keeps ``alignkit --help`` fast
    from alignkit.train.sft import run_sft

    output = run_sft(config)
    typer.echo(f"SFT model saved to {output}")


def register(app: typer.Typer) -> None:
    from alignkit.train.config import SFTConfig

    config_command(app, "sft", SFTConfig, _sft, help="Supervised fine-tuning on prompt/completion or messages data.")
