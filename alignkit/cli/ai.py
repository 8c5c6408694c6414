"""AI-feedback commands: ``alignkit serve``, ``alignkit cai`` and ``alignkit ai-label``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from alignkit.ai.config import AILabelConfig, CAIConfig, RewardServerConfig, ServeConfig
from alignkit.cli.common import config_command


def _cai_done(config: CAIConfig, paths: dict[str, Path]) -> str:
    return f"SL-CAI traces, SFT data and pairs written to {paths['traces'].parent}"


def _ai_label_done(config: AILabelConfig, counts: dict[str, Any]) -> str:
    extra = f", {counts['needs_human']} routed to human review" if config.review_threshold is not None else ""
    return f"{counts['labelled']} of {counts['input']} pairs labelled into {config.output}{extra}"


def register(app: typer.Typer) -> None:
    config_command(
        app, "serve", ServeConfig, "alignkit.ai.server:serve", help="Serve a model over an OpenAI-compatible HTTP API."
    )
    config_command(
        app,
        "reward-server",
        RewardServerConfig,
        "alignkit.ai.serving.reward_server:reward_server",
        help="Serve a reward (rm:PATH, sandbox, python:mod:fn) in OpenRLHF's --remote_rm_url protocol.",
    )
    config_command(
        app,
        "cai",
        CAIConfig,
        "alignkit.ai.runner:run_cai",
        done=_cai_done,
        help="Supervised Constitutional AI: critique and revise responses.",
    )
    config_command(
        app,
        "ai-label",
        AILabelConfig,
        "alignkit.ai.runner:run_ai_label",
        done=_ai_label_done,
        help="Label preference pairs with an AI feedback model (soft labels, both orders).",
    )
