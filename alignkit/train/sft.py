"""Supervised fine-tuning: cross-entropy on completion (assistant) tokens only.

The recipe, top to bottom: read and validate records, load the model (optionally wrap it with
LoRA), encode every record through the one chat-template path, optionally pack several examples
per row, run the shared loop, save a ``save_pretrained`` folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alignkit.data import Encoded, TooLongError, collate, encode_sft_record, pack_greedy, read_records
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models import apply_lora, load_model, save_model, sequence_logprobs
from alignkit.models.loading import trainable_parameters
from alignkit.models.packing import decide_packing
from alignkit.train.config import SFTConfig
from alignkit.train.loop import train
from alignkit.train.summary import write_run_summary

log = logging.getLogger(__name__)


def encode_all(tokenizer: Any, records: Sequence[dict[str, Any]], max_length: int, template: str) -> tuple[list[Encoded], int]:
    """Encode records; too-long ones (no completion token fits) are counted, not silently lost."""
    encoded, too_long = [], 0
    for record in records:
        try:
            encoded.append(encode_sft_record(tokenizer, record, max_length, template))
        except TooLongError:
            too_long += 1
    return encoded, too_long


class SFTObjective:
    """Mean negative log-likelihood per completion token of the batch."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def collate(self, units: Sequence[list[Encoded]]) -> dict[str, torch.Tensor]:
        return collate(list(units), self.pad_id)

    def weight(self, batch: dict[str, torch.Tensor]) -> float:
        """Target tokens: the loop normalises by their number over the whole step (all processes)."""
        return float(batch["loss_mask"][:, 1:].sum())

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        lp = sequence_logprobs(model, batch)
        targets = lp.mask.sum()
        loss = -lp.token_logps.sum() / targets.clamp(min=1)
        return loss, {"tokens": float((batch["sequence_ids"] >= 0).sum()), "target_tokens": float(targets)}


def make_units(encoded: list[Encoded], packing: bool, max_length: int) -> list[list[Encoded]]:
    if not packing:
        return [[e] for e in encoded]
    return [[encoded[i] for i in row] for row in pack_greedy(encoded, max_length)]


def run_sft(config: SFTConfig) -> Path:
    """Train and save; returns the output folder (loadable with ``from_pretrained``)."""
    torch.manual_seed(config.seed)
    loaded = read_records(config.data, kind="sft", on_error=config.on_bad_record)
    records = loaded.records
    if config.eval_data is not None:
        train_records, eval_records = records, read_records(config.eval_data, kind="sft", on_error=config.on_bad_record).records
    else:
        train_records, eval_records = split_eval(records, config.eval_fraction, config.seed)

    model, tokenizer = load_model(
        config.model,
        allow_download=config.allow_download,
        dtype=config.dtype,
        attn_implementation=config.attn_implementation,
        tiny_texts=record_texts(records),
        seed=config.seed,
    )
    if (lora := config.lora_settings()) is not None:
        model = apply_lora(model, lora)
    trainable, total = trainable_parameters(model)
    log.info("training %d of %d parameters (%.1f%%)", trainable, total, 100 * trainable / total)

    train_encoded, too_long = encode_all(tokenizer, train_records, config.max_length, config.template)
    eval_encoded, eval_too_long = encode_all(tokenizer, eval_records, config.max_length, config.template)
    data_report = {
        "records": len(records),
        "skipped_bad_records": len(loaded.skipped),
        "train_examples": len(train_encoded),
        "eval_examples": len(eval_encoded),
        "skipped_too_long": too_long + eval_too_long,
    }
    if too_long + eval_too_long:
        log.warning(
            "%d examples have no completion token within --max-length %d; skipped", too_long + eval_too_long, config.max_length
        )
    log.info("data: %s", data_report)

    objective = SFTObjective(tokenizer.pad_token_id)
    packing = decide_packing(model, config.packing)  # --packing is honoured only where it is exact
    result = train(
        config,
        model,
        objective,
        make_units(train_encoded, packing, config.max_length),
        make_units(eval_encoded, packing, config.max_length),
    )
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    write_run_summary(output, "sft", config, result, data=data_report)
    return output
