"""The ``alignkit`` command line: one subcommand per stage of the loop.

Each area registers its commands from its own module (``register(app)``) so this file only lists
them; flags are generated from the stage's pydantic config (see :mod:`alignkit.cli.common`).
"""

from __future__ import annotations

import importlib
import logging

import typer

from alignkit.cli.common import AlignkitGroup, set_debug

app = typer.Typer(
    cls=AlignkitGroup, help="alignkit: align language models to be helpful, honest and harmless.", no_args_is_help=True
)

# Modules under alignkit.cli that define ``register(app)``; a module that is missing is skipped so a
# partial install (or a stage still being built) does not break the whole CLI.
COMMAND_MODULES = [
    "train",
    "data",
    "preference",
    "rl",
    "sandbox",
    "feedback",
    "ai",
    "evaluate",
    "ratings",
    "pipeline",
    "web",
    "rag",
    "monitor",
    "benchmark",
    "safety",
]


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="ALIGNKIT_DEBUG", help="Show the full traceback when a command fails (default: one error line)."
    ),
) -> None:
    """alignkit: align language models to be helpful, honest and harmless."""
    set_debug(debug)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"alignkit.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"alignkit.cli.{name}":
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "httpx", "datasets", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()
