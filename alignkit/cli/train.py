"""Training stages as CLI commands: ``alignkit sft`` (and the preference/RL stages as they land)."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command
from alignkit.train.config import SFTConfig


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "sft",
        SFTConfig,
        "alignkit.train.sft:run_sft",
        done="SFT model saved to {result}",
        help="Supervised fine-tuning on prompt/completion or messages data.",
    )
