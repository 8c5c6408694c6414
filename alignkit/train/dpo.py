"""Direct Preference Optimization (and its IPO / hinge / robust variants) on pairwise data.

The recipe, top to bottom: read pairs (rankings are expanded to pairs), drop bad ones with a count
per reason, encode chosen and rejected through the one chat-template path, get reference
log-probs (precomputed once and cached, a frozen copy, or the LoRA base), run the shared loop,
save a ``save_pretrained`` folder.

Batching is padding-free: the chosen and rejected sequences of a batch are packed end to end into
rows (``pack_greedy``/``collate``; positions restart per sequence so nothing attends across
sequences) and scored in ONE forward pass; ``sequence_ids`` map each sum of log-probs back to its
pair. Where a probe shows it exact (:mod:`alignkit.train.prefix_sharing`), each pair is laid out as
one tree instead, its prompt computed once for both sides (11 % fewer positions on the benchmark).
The loss itself is :func:`alignkit.train.losses.dpo_loss`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit.data import Encoded, TooLongError, encode_example
from alignkit.data.batching import packed_batch
from alignkit.data.pairs import read_pairs
from alignkit.data.records import record_texts
from alignkit.models import load_model, sequence_logprobs
from alignkit.train.config import DPOConfig
from alignkit.train.losses import dpo_loss, nll_loss
from alignkit.train.preference import read_splits, train_against_reference
from alignkit.train.prefix_sharing import shared_prefix_batch
from alignkit.train.reference import Reference

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


@dataclass
class PairExample:
    """One encoded preference pair; ``ref_*`` are filled when reference log-probs are precomputed."""

    chosen: Encoded
    rejected: Encoded
    record: dict[str, Any]
    ref_chosen: float | None = None
    ref_rejected: float | None = None


def encode_pairs(
    tokenizer: Any, records: Sequence[dict[str, Any]], max_length: int, template: str
) -> tuple[list[PairExample], Counter]:
    """Encode both sides of every pair; drop (and count) pairs that cannot be trained on."""
    out: list[PairExample] = []
    skipped: Counter = Counter()
    for record in records:
        try:
            chosen = encode_example(tokenizer, record["prompt"], record["chosen"], max_length, template)
            rejected = encode_example(tokenizer, record["prompt"], record["rejected"], max_length, template)
        except TooLongError:
            skipped["prompt_too_long"] += 1
            continue
        if chosen.input_ids == rejected.input_ids:
            # Truncation to max_length can cut away the only difference between the two.
            skipped["identical_after_truncation"] += 1
            continue
        out.append(PairExample(chosen, rejected, record))
    return out, skipped


def attach_reference(examples: Sequence[PairExample], logps: torch.Tensor) -> None:
    """Store precomputed log-probs (laid out chosen0, rejected0, chosen1, ...) on the examples."""
    pairs = logps.view(-1, 2).tolist()
    for example, (c, r) in zip(examples, pairs):
        example.ref_chosen, example.ref_rejected = c, r


def flat_sequences(examples: Sequence[PairExample]) -> list[Encoded]:
    return [s for e in examples for s in (e.chosen, e.rejected)]


# --------------------------------------------------------------------------- objective


def chosen_token_mask(batch: dict[str, torch.Tensor], token_mask: torch.Tensor, chosen_index: torch.Tensor) -> torch.Tensor:
    """Target-token mask restricted to chosen sequences (aligned with ``LogProbs.token_logps``)."""
    seq = batch["sequence_ids"][:, 1:]
    is_chosen = torch.zeros(int(batch["num_sequences"]), dtype=torch.bool, device=seq.device)
    is_chosen[chosen_index] = True
    return token_mask & (seq >= 0) & is_chosen[seq.clamp(min=0)]


class DPOObjective:
    """Pairs in, one packed forward pass, ``dpo_loss`` (+ optional NLL on chosen) out."""

    shares_prefix = True  # train_against_reference asks prefix_sharing_is_exact and passes share_prefix

    def __init__(
        self, config: DPOConfig, pad_id: int, reference: Reference | None, pack: bool = True, share_prefix: bool = False
    ) -> None:
        self.config = config
        self.pad_id = pad_id
        self.reference = reference
        self.pack = pack  # False for models where packing is not exact (alignkit.models.packing)
        # Each pair as one tree, its prompt run once (alignkit.train.prefix_sharing); only where probed exact.
        self.share_prefix = share_prefix and pack

    def collate(self, units: Sequence[PairExample]) -> dict[str, torch.Tensor]:
        if self.share_prefix:
            batch, where = shared_prefix_batch([(u.chosen, u.rejected) for u in units], self.pad_id)
        else:
            batch, where = packed_batch(flat_sequences(units), self.pad_id, self.config.max_length, self.pack)
        batch["chosen_index"], batch["rejected_index"] = where[0::2], where[1::2]
        if units[0].ref_chosen is not None:
            batch["ref_chosen_logps"] = torch.tensor([u.ref_chosen for u in units], dtype=torch.float32)
            batch["ref_rejected_logps"] = torch.tensor([u.ref_rejected for u in units], dtype=torch.float32)
        return batch

    def weight(self, batch: dict[str, torch.Tensor]) -> float:
        """Pairs: ``dpo_loss`` is a mean over them (the loop normalises by the step's total)."""
        return float(batch["chosen_index"].numel())

    def reference_logps(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "ref_chosen_logps" in batch:
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        if self.reference is None:
            raise RuntimeError("no reference log-probs in the batch and no live reference model")
        ref = self.reference.sequence_logps(model, batch)
        return ref[batch["chosen_index"]], ref[batch["rejected_index"]]

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        ci, ri = batch["chosen_index"], batch["rejected_index"]
        lp = sequence_logprobs(model, batch)
        policy_chosen, policy_rejected = lp.sequence_logps[ci], lp.sequence_logps[ri]
        ref_chosen, ref_rejected = (t.detach() for t in self.reference_logps(model, batch))
        loss, loss_metrics = dpo_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            beta=cfg.beta,
            loss_type=cfg.loss,
            label_smoothing=cfg.label_smoothing,
            chosen_lengths=lp.lengths[ci],
            rejected_lengths=lp.lengths[ri],
        )
        metrics = {k: float(v) for k, v in loss_metrics.items()}
        if cfg.nll_coef > 0:
            nll = nll_loss(lp.token_logps, chosen_token_mask(batch, lp.mask, ci))
            loss = loss + cfg.nll_coef * nll
            metrics["nll"] = float(nll.detach())
        with torch.no_grad():  # rewards/margins/accuracy come from dpo_loss; these are about the policy alone
            chosen_ratio, rejected_ratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
            metrics.update(
                {
                    "logps/chosen": float(policy_chosen.mean()),
                    "logps/rejected": float(policy_rejected.mean()),
                    # Mean log(pi/ref) per sequence: a one-sample estimate of KL on the data, not on samples.
                    "kl": float(torch.cat([chosen_ratio, rejected_ratio]).mean()),
                    "tokens": float((batch["sequence_ids"] >= 0).sum()),
                }
            )
        return loss, metrics


# --------------------------------------------------------------------------- recipe


def run_dpo(config: DPOConfig) -> Path:
    """Train and save; returns the output folder (loadable with ``from_pretrained``)."""
    torch.manual_seed(config.seed)
    records, train_records, eval_records, skipped = read_splits(config, read_pairs)

    model, tokenizer = load_model(
        config.model,
        allow_download=config.allow_download,
        dtype=config.dtype,
        tiny_texts=record_texts(records),
        seed=config.seed,
        attn_implementation=config.attn_implementation,
    )
    rows_read = len(train_records) + len(eval_records) + sum(skipped.values())
    train_examples, train_skipped = encode_pairs(tokenizer, train_records, config.max_length, config.template)
    eval_examples, eval_skipped = encode_pairs(tokenizer, eval_records, config.max_length, config.template)
    skipped += train_skipped + eval_skipped
    data_report = {
        "pairs_read": rows_read,
        "train_pairs": len(train_examples),
        "eval_pairs": len(eval_examples),
        "skipped": dict(skipped),
    }
    if skipped:
        log.warning("skipped %d bad pair(s) before training: %s", sum(skipped.values()), dict(skipped))
    log.info("data: %s", data_report)

    return train_against_reference(
        config,
        "dpo",
        model,
        tokenizer,
        train_examples,
        eval_examples,
        data_report,
        DPOObjective,
        flat_sequences,
        attach_reference,
    )
