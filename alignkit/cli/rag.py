"""``alignkit rag index`` and ``alignkit rag ask``: retrieval for domain knowledge."""

from __future__ import annotations

import typer

from alignkit.cli.common import config_command
from alignkit.rag.config import RagAskConfig, RagIndexConfig


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Retrieval-augmented generation: index a collection, answer with cited passages.", no_args_is_help=True
    )
    config_command(
        sub,
        "index",
        RagIndexConfig,
        "alignkit.rag.answer:run_index",
        done="index written to {result}",
        help="Index a collection (BM25, plus a dense index with --encoder).",
    )
    config_command(
        sub,
        "ask",
        RagAskConfig,
        "alignkit.rag.answer:run_ask",
        done="{result[answers]} answers written to {result[output]} ({result[cited]} cite a passage)",
        help="Answer questions with retrieved passages (local model or --backend-url endpoint).",
    )
    app.add_typer(sub, name="rag")
