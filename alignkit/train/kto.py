"""Kahneman-Tversky Optimization on binary feedback (thumbs up / down per completion).

The recipe, top to bottom: read binary records (pairs and rankings are converted with
``pairs_to_binary``), drop and count unusable ones, encode each completion and its *mismatched*
twin (see below), get reference log-probs (shared with DPO: ``alignkit.train.reference``), run the
shared loop on :func:`alignkit.train.losses.kto_loss`, save.

The KL reference point z0. KTO compares each completion's implied reward with z0, an estimate of
KL(policy || reference) obtained from prompt/completion pairs that do *not* belong together:
completion i is scored after prompt i+1. Following TRL, the mismatch is fixed when the data is
prepared (a seeded shuffle, then each example takes the next example's prompt), not redrawn per
batch: that keeps the pairing deterministic and lets the reference side be precomputed and cached
like every other reference log-prob. The policy side is scored without gradients in a separate
forward pass, and ``kto_loss`` detaches and clamps z0 at 0, as in the paper.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit.data import DataError, Encoded, TooLongError, encode_example, read_records
from alignkit.data.batching import packed_batch
from alignkit.data.conversions import pairs_to_binary, rankings_to_pairs
from alignkit.data.io import skip_reason
from alignkit.data.records import record_texts
from alignkit.models import load_model, sequence_logprobs
from alignkit.train.config import KTOConfig
from alignkit.train.losses import kto_loss, kto_weight_warning
from alignkit.train.preference import read_splits, train_against_reference
from alignkit.train.reference import Reference

log = logging.getLogger(__name__)

KL_PREFIX = "kl_"


@dataclass
class BinaryExample:
    """One encoded completion with its label, and its mismatched twin for the KL estimate."""

    sequence: Encoded
    kl_sequence: Encoded
    label: bool
    record: dict[str, Any]
    ref: float | None = None
    kl_ref: float | None = None


def read_binary(path: Path, on_error: str) -> tuple[list[dict[str, Any]], Counter]:
    """Binary records from ``path``; pairs (and rankings, via pairs) become one up and one down each."""
    loaded = read_records(path, on_error=on_error)
    skipped = Counter(skip_reason(e) for e in loaded.skipped)
    records = loaded.records
    if loaded.kind in ("pair", "ranking"):
        pairs = list(rankings_to_pairs(records)) if loaded.kind == "ranking" else records
        records = list(pairs_to_binary(pairs))
    elif loaded.kind != "binary":
        raise DataError(
            path, None, None, f"binary records (prompt/completion/label), pairs or rankings, found {loaded.kind} records"
        )
    return records, skipped


def split_prompt(encoded: Encoded) -> tuple[Encoded, Encoded]:
    """(prompt part, completion part): the completion starts at the first target token."""
    start = encoded.loss_mask.index(True)
    return (
        Encoded(encoded.input_ids[:start], encoded.loss_mask[:start]),
        Encoded(encoded.input_ids[start:], encoded.loss_mask[start:]),
    )


def encode_binary(
    tokenizer: Any, records: Sequence[dict[str, Any]], max_length: int, template: str, seed: int
) -> tuple[list[BinaryExample], Counter]:
    """Encode completions and build each one's mismatched (next prompt, own completion) twin."""
    encoded: list[tuple[Encoded, dict[str, Any]]] = []
    skipped: Counter = Counter()
    for record in records:
        try:
            encoded.append((encode_example(tokenizer, record["prompt"], record["completion"], max_length, template), record))
        except TooLongError:
            skipped["prompt_too_long"] += 1
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)
    examples: list[BinaryExample | None] = [None] * len(encoded)
    for j, i in enumerate(order):
        prompt, _ = split_prompt(encoded[order[(j + 1) % len(order)]][0])
        _, completion = split_prompt(encoded[i][0])
        # The partner prompt is shorter than max_length (its own example had a target token), so
        # at least one completion token survives truncation.
        twin = Encoded(
            (prompt.input_ids + completion.input_ids)[:max_length], (prompt.loss_mask + completion.loss_mask)[:max_length]
        )
        examples[i] = BinaryExample(encoded[i][0], twin, bool(encoded[i][1]["label"]), encoded[i][1])
    return [e for e in examples if e is not None], skipped


def flat_sequences(examples: Sequence[BinaryExample]) -> list[Encoded]:
    return [s for e in examples for s in (e.sequence, e.kl_sequence)]


def attach_reference(examples: Sequence[BinaryExample], logps: torch.Tensor) -> None:
    for example, (ref, kl_ref) in zip(examples, logps.view(-1, 2).tolist()):
        example.ref, example.kl_ref = ref, kl_ref


def sub_batch(batch: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in batch.items() if k.startswith(prefix)}


class KTOObjective:
    """Completions (grad) and their mismatched twins (no grad) in two packed forward passes."""

    def __init__(self, config: KTOConfig, pad_id: int, reference: Reference | None, pack: bool = True) -> None:
        self.config, self.pad_id, self.reference = config, pad_id, reference
        self.pack = pack  # False for models where packing is not exact (alignkit.models.packing)

    def collate(self, units: Sequence[BinaryExample]) -> dict[str, torch.Tensor]:
        batch, where = packed_batch([u.sequence for u in units], self.pad_id, self.config.max_length, self.pack)
        kl_batch, kl_where = packed_batch([u.kl_sequence for u in units], self.pad_id, self.config.max_length, self.pack)
        batch["index"], batch["labels"] = where, torch.tensor([u.label for u in units], dtype=torch.bool)
        batch.update({KL_PREFIX + k: v for k, v in kl_batch.items()})
        batch[KL_PREFIX + "index"] = kl_where
        if units[0].ref is not None:
            batch["ref_logps"] = torch.tensor([u.ref for u in units], dtype=torch.float32)
            batch["ref_kl_logps"] = torch.tensor([u.kl_ref for u in units], dtype=torch.float32)
        return batch

    def weight(self, batch: dict[str, torch.Tensor]) -> float:
        """Examples: ``kto_loss`` is a mean over them (the loop normalises by the step's total)."""
        return float(batch["labels"].numel())

    def reference_logps(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], kl_batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if "ref_logps" in batch:
            return batch["ref_logps"], batch["ref_kl_logps"]
        if self.reference is None:
            raise RuntimeError("no reference log-probs in the batch and no live reference model")
        ref = self.reference.sequence_logps(model, batch)[batch["index"]]
        kl_ref = self.reference.sequence_logps(model, kl_batch)[kl_batch["index"]]
        return ref, kl_ref

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        kl_batch = sub_batch(batch, KL_PREFIX)
        main = {k: v for k, v in batch.items() if not k.startswith(KL_PREFIX)}
        policy = sequence_logprobs(model, main).sequence_logps[batch["index"]]
        with torch.no_grad():
            kl_policy = sequence_logprobs(model, kl_batch).sequence_logps[kl_batch["index"]]
        ref, kl_ref = (t.detach() for t in self.reference_logps(model, main, kl_batch))
        labels = batch["labels"]
        loss, loss_metrics = kto_loss(
            policy,
            ref,
            labels,
            kl_policy,
            kl_ref,
            beta=cfg.beta,
            desirable_weight=cfg.desirable_weight,
            undesirable_weight=cfg.undesirable_weight,
        )
        metrics = {k: float(v) for k, v in loss_metrics.items()}
        with torch.no_grad():  # kl and rewards/* come from kto_loss
            metrics.update(
                {
                    "logps": float(policy.mean()),
                    "tokens": float((main["sequence_ids"] >= 0).sum() + (kl_batch["sequence_ids"] >= 0).sum()),
                }
            )
        return loss, metrics


def run_kto(config: KTOConfig) -> Path:
    """Train and save; returns the output folder (loadable with ``from_pretrained``)."""
    torch.manual_seed(config.seed)
    records, train_records, eval_records, skipped = read_splits(config, read_binary)

    model, tokenizer = load_model(
        config.model,
        allow_download=config.allow_download,
        dtype=config.dtype,
        tiny_texts=record_texts(records),
        seed=config.seed,
        attn_implementation=config.attn_implementation,
    )
    train_examples, train_skipped = encode_binary(tokenizer, train_records, config.max_length, config.template, config.seed)
    eval_examples, eval_skipped = encode_binary(tokenizer, eval_records, config.max_length, config.template, config.seed + 1)
    skipped += train_skipped + eval_skipped
    n_good = sum(e.label for e in train_examples)
    data_report = {
        "train_examples": len(train_examples),
        "desirable": n_good,
        "undesirable": len(train_examples) - n_good,
        "eval_examples": len(eval_examples),
        "skipped": dict(skipped),
    }
    if skipped:
        log.warning("skipped %d bad record(s) before training: %s", sum(skipped.values()), dict(skipped))
    if warning := kto_weight_warning(n_good, len(train_examples) - n_good, config.desirable_weight, config.undesirable_weight):
        log.warning("%s", warning)
        data_report["weight_warning"] = warning
    log.info("data: %s", data_report)

    return train_against_reference(
        config,
        "kto",
        model,
        tokenizer,
        train_examples,
        eval_examples,
        data_report,
        KTOObjective,
        flat_sequences,
        attach_reference,
    )
