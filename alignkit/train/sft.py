"""Supervised fine-tuning: cross-entropy on completion (assistant) tokens only.

The recipe, top to bottom: read and validate records, load the model (optionally wrap it with
LoRA), encode every record through the one chat-template path, optionally pack several examples
per row, run the shared loop, save a ``save_pretrained`` folder.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Sequence

import torch

from alignkit.data import Encoded, TooLongError, collate, encode_sft_record, pack_greedy, read_records
from alignkit.models import apply_lora, load_model, save_model, sequence_logprobs
from alignkit.models.loading import trainable_parameters
from alignkit.train.config import SFTConfig
from alignkit.train.loop import train

log = logging.getLogger(__name__)


def record_texts(records: Sequence[dict[str, Any]]) -> list[str]:
    """All text in SFT/pair/binary records: what the tiny model's tokenizer is trained on."""
    texts: list[str] = []
    for r in records:
        for key in ("prompt", "completion", "chosen", "rejected"):
            value = r.get(key)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(str(m.get("content", "")) for m in value if isinstance(m, dict))
        for m in r.get("messages") or []:
            texts.append(str(m.get("content", "")))
        for c in r.get("completions") or []:
            texts.append(str(c))
    return texts


def split_eval(records: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deterministic held-out slice: same seed, same split (so resumed runs see the same data)."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(fraction * len(records))))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def encode_all(tokenizer: Any, records: Sequence[dict[str, Any]], max_length: int, template: str) -> tuple[list[Encoded], int]:
    """Encode records; too-long ones (no completion token fits) are counted, not silently lost."""
    encoded, too_long = [], 0
    for record in records:
        try:
            encoded.append(encode_sft_record(tokenizer, record, max_length, template))  # type: ignore[arg-type]
        except TooLongError:
            too_long += 1
    return encoded, too_long


class SFTObjective:
    """Mean negative log-likelihood per completion token of the batch."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def collate(self, units: Sequence[list[Encoded]]) -> dict[str, torch.Tensor]:
        return collate(list(units), self.pad_id)

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
        config.model, allow_download=config.allow_download, dtype=config.dtype,
        tiny_texts=record_texts(records), seed=config.seed,
    )
    if (lora := config.lora_settings()) is not None:
        model = apply_lora(model, lora)
    trainable, total = trainable_parameters(model)
    log.info("training %d of %d parameters (%.1f%%)", trainable, total, 100 * trainable / total)

    train_encoded, too_long = encode_all(tokenizer, train_records, config.max_length, config.template)
    eval_encoded, eval_too_long = encode_all(tokenizer, eval_records, config.max_length, config.template)
    data_report = {
        "records": len(records), "skipped_bad_records": len(loaded.skipped),
        "train_examples": len(train_encoded), "eval_examples": len(eval_encoded),
        "skipped_too_long": too_long + eval_too_long,
    }
    if too_long + eval_too_long:
        log.warning("%d examples have no completion token within --max-length %d; skipped", too_long + eval_too_long, config.max_length)
    log.info("data: %s", data_report)

    objective = SFTObjective(tokenizer.pad_token_id)
    result = train(
        config, model, objective,
        make_units(train_encoded, config.packing, config.max_length),
        make_units(eval_encoded, config.packing, config.max_length),
    )
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    summary = {"stage": "sft", "config": json.loads(config.model_dump_json()), "data": data_report,
               "final": result.history[-1] if result.history else None,
               "eval": result.eval_history[-1] if result.eval_history else None}
    (output / "alignkit_run.json").write_text(json.dumps(summary, indent=2))
    return output
