"""Offline preference stages as CLI commands: ``alignkit rm``, ``alignkit dpo``, ``alignkit kto``."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command


# Trainers are imported lazily inside each command: keeps ``alignkit --help`` fast.
def _rm(config):
    from alignkit.train.reward_model import run_reward_model

    output = run_reward_model(config)
    typer.echo(f"reward model saved to {output}")


def _dpo(config):
    from alignkit.train.dpo import run_dpo

    output = run_dpo(config)
    typer.echo(f"DPO model saved to {output}")


def _kto(config):
    from alignkit.train.kto import run_kto

    output = run_kto(config)
    typer.echo(f"KTO model saved to {output}")


def register(app: typer.Typer) -> None:
    from alignkit.train.config import DPOConfig, KTOConfig, RewardConfig

    config_command(app, "rm", RewardConfig, _rm,
                   help="Train a reward model on pairwise preferences or rankings (Bradley-Terry loss).")
    config_command(app, "dpo", DPOConfig, _dpo,
                   help="Direct preference optimisation on pairs (--loss sigmoid|ipo|hinge|robust).")
    config_command(app, "kto", KTOConfig, _kto,
                   help="KTO on binary feedback (prompt/completion/label), or pairs split into up/down.")
