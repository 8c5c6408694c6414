"""``alignkit data inspect|export``: see how a file will be read, and hand it to other engines.

``inspect`` loads only a tokenizer (``tiny`` is trained in-process on the file's own text, as the
trainers do), so it is quick; ``export`` is torch-free.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from alignkit.cli.common import config_command, load
from alignkit.data.export_engines import ExportConfig, export, read_normalized
from alignkit.data.preview import InspectConfig, inspect_file
from alignkit.data.records import record_texts


def _tokenizer(config: InspectConfig) -> Any:
    if config.model == "tiny":  # trained on the file's own text, as the trainers' tiny model is
        rows, _, _ = read_normalized(config.data, "skip")
        return load("alignkit.models.tiny:train_tokenizer")(record_texts(rows))
    return load("alignkit.models.loading:load_tokenizer")(config.model, config.allow_download)


def _inspect(config: InspectConfig) -> None:
    typer.echo(inspect_file(config, _tokenizer(config)))


def _exported(config: ExportConfig, summary: dict[str, Any]) -> str:
    hints = {
        "verl": "verl: data.train_files=OUTPUT data.prompt_key=prompt (reward: data_source + reward_model.ground_truth)",
        "openrlhf": {
            "pair": "OpenRLHF: --prompt_key prompt --chosen_key chosen --rejected_key rejected --apply_chat_template",
            "ranking": "OpenRLHF: --prompt_key prompt --chosen_key chosen --rejected_key rejected --apply_chat_template",
            "sft": "OpenRLHF: --input_key input --output_key output --apply_chat_template (whole conversations: --multiturn)",
        }.get(summary["kind"], "OpenRLHF: --input_key input --label_key label --apply_chat_template"),
    }
    hint = hints.get(config.to, "")
    return f"wrote {summary['rows']} row(s) to {summary['output']}: {json.dumps(summary)}" + (f"\n{hint}" if hint else "")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Dataset shapes: inspect how a file is read, export it for other engines.", no_args_is_help=True)
    config_command(
        sub,
        "inspect",
        InspectConfig,
        _inspect,
        argument="data",
        help="Print the detected shape and the first example as the model sees it (template rendered, loss mask marked).",
    )
    config_command(
        sub,
        "export",
        ExportConfig,
        export,
        argument="data",
        done=_exported,
        help="Write a file for verl (parquet), OpenRLHF (jsonl), or as alignkit records, pairs or ratings.",
    )
    app.add_typer(sub, name="data")
