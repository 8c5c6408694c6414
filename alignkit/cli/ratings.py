"""``alignkit ratings --battles FILE``: Bradley–Terry (headline) and Elo ladders with bootstrap CIs."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command
from alignkit.evaluate.config import RatingsConfig


def register(app: typer.Typer) -> None:
    config_command(
        app,
        "ratings",
        RatingsConfig,
        "alignkit.evaluate.ladder:run_ratings",
        help="Rate models from a FastChat/Arena battles file (model_a, model_b, winner): Bradley–Terry and Elo with CIs.",
        done="ratings: {result}/ratings.md, {result}/ratings.json, {result}/ratings.png",
    )
