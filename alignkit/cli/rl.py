"""Online RL stages as CLI commands: ``alignkit ppo``, ``alignkit rloo`` and ``alignkit grpo``.

Flags come from the configs (:class:`~alignkit.train.ppo.PPOConfig`,
:class:`~alignkit.train.rloo.RLOOConfig`, :class:`~alignkit.train.rloo.GRPOConfig`); ``grpo`` is
``rloo`` with GRPO's defaults (group mean/std baseline, KL in the loss).
"""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command


def _ppo(config):  # imported lazily: keeps ``alignkit --help`` fast
    from alignkit.train.ppo import run_ppo

    typer.echo(f"PPO policy saved to {run_ppo(config)}")


def _rloo(config):
    from alignkit.train.rloo import run_rloo

    typer.echo(f"{config.advantage.upper()} policy saved to {run_rloo(config)}")


def register(app: typer.Typer) -> None:
    from alignkit.train.config import GRPOConfig, PPOConfig, RLOOConfig

    config_command(app, "ppo", PPOConfig, _ppo, help="Online RL with PPO (critic, GAE, KL-shaped reward) on a prompts file.")
    config_command(app, "rloo", RLOOConfig, _rloo, help="Online RL with RLOO: k samples per prompt, leave-one-out baseline.")
    config_command(app, "grpo", GRPOConfig, _rloo, help="Online RL with GRPO: k samples per prompt, group-normalised advantages.")
