"""Safety alignment in the Red-Instruct style: learn the safe answers, push away from the harmful ones.

Red-Instruct (Bhardwaj & Poria, 2023, "Red-Teaming Large Language Models using Chain of
Utterances for Safety-Alignment") fine-tunes on *blue* (harmless) conversations with the usual
negative log-likelihood and applies gradient ascent on *red* (harmful) ones. Plain gradient ascent
has no floor: the harmful sequences' NLL can grow without limit and drag the whole model with it
(the collapse unlearning papers report). We bound it per token:

    loss = mean_{safe tokens} ℓ_t  -  λ · mean_{harmful tokens} min(ℓ_t, τ),     ℓ_t = -log p(y_t)

so a harmful token stops receiving gradient once its probability is below ``exp(-τ)`` and the
ascent term lies in ``[-λτ, 0]``; the loss is bounded below by ``-λτ``. Helpful rows
(``--helpful-data``, e.g. the SFT demonstrations) join the NLL term, which keeps the model's
helpfulness from paying for its refusals (the alignment tax is measured, not assumed away).

Data: binary records (``prompt``, ``completion``, ``label``), as ``alignkit redteam`` exports in
``red_instruct.jsonl``; pairs are read as one safe (chosen) and one harmful (rejected) row each.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit.data import Encoded, TooLongError, encode_example, read_records
from alignkit.data.batching import packed_batch
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models import apply_lora, load_model, save_model, sequence_logprobs
from alignkit.train.config import SafeAlignConfig
from alignkit.train.kto import read_binary
from alignkit.train.loop import train
from alignkit.train.summary import write_run_summary

log = logging.getLogger(__name__)


def safe_align_loss(
    token_logps: torch.Tensor, safe_mask: torch.Tensor, harmful_mask: torch.Tensor, harmful_coef: float, clamp: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``mean_safe(-logp) - harmful_coef * mean_harmful(min(-logp, clamp))`` (see the module docstring).

    Masks select target tokens; positions outside them may hold anything (even ``-inf``): they are
    selected away, never multiplied by zero. An empty side contributes 0.
    """
    if token_logps.shape != safe_mask.shape or token_logps.shape != harmful_mask.shape:
        raise ValueError(
            f"shapes differ: logps {tuple(token_logps.shape)}, masks {tuple(safe_mask.shape)}/{tuple(harmful_mask.shape)}"
        )
    zero = token_logps.new_zeros(())
    safe_nll = -token_logps[safe_mask]
    harm_nll = -token_logps[harmful_mask]
    safe = safe_nll.mean() if safe_nll.numel() else zero
    ascent = harm_nll.clamp(max=clamp).mean() if harm_nll.numel() else zero
    loss = safe - harmful_coef * ascent
    metrics = {
        "nll_safe": safe.detach(),
        "nll_harmful": harm_nll.mean().detach() if harm_nll.numel() else zero.detach(),
        "ascent": ascent.detach(),
        # Share of harmful tokens already past the clamp (no gradient): how "done" the unlearning is.
        "clamped": (harm_nll >= clamp).float().mean().detach() if harm_nll.numel() else zero.detach(),
    }
    return loss, metrics


@dataclass
class LabelledSequence:
    encoded: Encoded
    safe: bool


def encode_rows(
    tokenizer: Any, rows: Sequence[dict[str, Any]], max_length: int, template: str
) -> tuple[list[LabelledSequence], int]:
    out, too_long = [], 0
    for r in rows:
        try:
            out.append(
                LabelledSequence(encode_example(tokenizer, r["prompt"], r["completion"], max_length, template), bool(r["label"]))
            )
        except TooLongError:
            too_long += 1
    return out, too_long


class SafeAlignObjective:
    """Labelled sequences packed into rows, one forward pass, :func:`safe_align_loss`."""

    def __init__(self, config: SafeAlignConfig, pad_id: int) -> None:
        self.config, self.pad_id = config, pad_id

    def collate(self, units: Sequence[LabelledSequence]) -> dict[str, torch.Tensor]:
        batch, where = packed_batch([u.encoded for u in units], self.pad_id, self.config.max_length)
        safe = torch.zeros(len(units), dtype=torch.bool)
        safe[where] = torch.tensor([u.safe for u in units])
        batch["safe"] = safe  # in packed sequence order
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        lp = sequence_logprobs(model, batch)
        seq = batch["sequence_ids"][:, 1:]
        real = lp.mask & (seq >= 0)
        is_safe = batch["safe"].to(seq.device)[seq.clamp(min=0)]
        loss, metrics = safe_align_loss(
            lp.token_logps, real & is_safe, real & ~is_safe, self.config.harmful_coef, self.config.ascent_clamp
        )
        out = {k: float(v) for k, v in metrics.items()}
        out["tokens"] = float((batch["sequence_ids"] >= 0).sum())
        return loss, out


def read_safe_align_rows(config: SafeAlignConfig) -> tuple[list[dict[str, Any]], Counter]:
    rows, skipped = read_binary(config.data, config.on_bad_record)
    if config.helpful_data is not None:
        helpful = read_records(config.helpful_data, kind="sft", on_error=config.on_bad_record)
        skipped["helpful_bad"] += len(helpful.skipped)
        rows = rows + [
            {"prompt": r["prompt"], "completion": r["completion"], "label": True}
            for r in helpful.records
            if r.get("prompt") is not None
        ]
    return rows, skipped


def run_safe_align(config: SafeAlignConfig) -> Path:
    """Train and save; returns the output folder (loadable with ``from_pretrained``)."""
    torch.manual_seed(config.seed)
    rows, skipped = read_safe_align_rows(config)
    if config.eval_data is not None:
        train_rows, eval_rows = rows, read_binary(config.eval_data, config.on_bad_record)[0]
    else:
        train_rows, eval_rows = split_eval(rows, config.eval_fraction, config.seed)
    model, tokenizer = load_model(
        config.model, allow_download=config.allow_download, dtype=config.dtype, tiny_texts=record_texts(rows), seed=config.seed
    )
    if (lora := config.lora_settings()) is not None:
        model = apply_lora(model, lora)
    train_seqs, too_long = encode_rows(tokenizer, train_rows, config.max_length, config.template)
    eval_seqs, eval_too_long = encode_rows(tokenizer, eval_rows, config.max_length, config.template)
    data_report = {
        "rows": len(rows),
        "safe_rows": sum(1 for r in rows if r["label"]),
        "harmful_rows": sum(1 for r in rows if not r["label"]),
        "train": len(train_seqs),
        "eval": len(eval_seqs),
        "skipped": {**dict(skipped), "too_long": too_long + eval_too_long},
    }
    log.info("data: %s", data_report)
    result = train(config, model, SafeAlignObjective(config, tokenizer.pad_token_id), train_seqs, eval_seqs)
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    write_run_summary(output, "safe_align", config, result, data=data_report)
    return output
