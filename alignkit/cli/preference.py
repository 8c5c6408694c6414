"""Offline preference stages as CLI commands: ``alignkit rm``, ``alignkit dpo``, ``alignkit kto``."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command
from alignkit.train.config import DPOConfig, KTOConfig, RewardConfig


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "rm",
        RewardConfig,
        "alignkit.train.reward_model:run_reward_model",
        done="reward model saved to {result}",
        help="Train a reward model on pairwise preferences or rankings (Bradley-Terry loss).",
    )
    config_command(
        app,
        "dpo",
        DPOConfig,
        "alignkit.train.dpo:run_dpo",
        done="DPO model saved to {result}",
        help="Direct preference optimisation on pairs (--loss sigmoid|ipo|hinge|robust).",
    )
    config_command(
        app,
        "kto",
        KTOConfig,
        "alignkit.train.kto:run_kto",
        done="KTO model saved to {result}",
        help="KTO on binary feedback (prompt/completion/label), or pairs split into up/down.",
    )
