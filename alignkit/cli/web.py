"""``alignkit web``: serve the annotation web app on a feedback store."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command
from alignkit.web.config import WebConfig


def _web(cfg: WebConfig) -> None:
    from alignkit.web.server import ServerError, serve

    try:
        serve(cfg.db, cfg.host, cfg.port, cfg.secret_key, cfg.secure_cookies)
    except ServerError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


def register(app: typer.Typer) -> None:
    config_command(app, "web", WebConfig, _web, help="Serve the annotation web app (API under /api/v1, pages for people).")
