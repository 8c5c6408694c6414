"""Online RL stages as CLI commands: ``alignkit ppo``, ``alignkit rloo`` and ``alignkit grpo``.

Flags come from the configs (:class:`~alignkit.train.config.PPOConfig`,
:class:`~alignkit.train.config.RLOOConfig`, :class:`~alignkit.train.config.GRPOConfig`); ``grpo`` is
``rloo`` with GRPO's defaults (group mean/std baseline, KL in the loss).
"""

from __future__ import annotations

from pathlib import Path

import typer

from alignkit.cli.common import config_command
from alignkit.train.config import GRPOConfig, PPOConfig, RLOOConfig


def _rloo_done(config: RLOOConfig, result: Path) -> str:
    return f"{config.advantage.upper()} policy saved to {result}"


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "ppo",
        PPOConfig,
        "alignkit.train.ppo:run_ppo",
        done="PPO policy saved to {result}",
        help="Online RL with PPO (critic, GAE, KL-shaped reward) on a prompts file.",
    )
    config_command(
        app,
        "rloo",
        RLOOConfig,
        "alignkit.train.rloo:run_rloo",
        done=_rloo_done,
        help="Online RL with RLOO: k samples per prompt, leave-one-out baseline.",
    )
    config_command(
        app,
        "grpo",
        GRPOConfig,
        "alignkit.train.rloo:run_rloo",
        done=_rloo_done,
        help="Online RL with GRPO: k samples per prompt, group-normalised advantages.",
    )
