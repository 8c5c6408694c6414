"""The recipe DPO and KTO share: read and split the data, get reference log-probs, train, save.

Both objectives compare the policy with a frozen reference (:mod:`alignkit.train.reference`); they
differ only in their data shape (pairs vs. binary labels) and their loss. The parts that do not
depend on either live here, so :mod:`alignkit.train.dpo` and :mod:`alignkit.train.kto` hold only
their own encoding and objective.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alignkit.data.chat import Encoded
from alignkit.data.splits import split_eval
from alignkit.models.loading import apply_lora, save_model, trainable_parameters
from alignkit.models.packing import decide_packing
from alignkit.train.config import PreferenceConfig, ReferenceKind, TrainingConfig
from alignkit.train.loop import train
from alignkit.train.prefix_sharing import prefix_sharing_is_exact
from alignkit.train.reference import Reference, cached_reference_logps, default_reference, precompute_logps
from alignkit.train.summary import write_run_summary

log = logging.getLogger(__name__)

Reader = Callable[[Path, str], tuple[list[dict[str, Any]], Counter]]


def read_splits(
    config: TrainingConfig, read: Reader
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], Counter]:
    """``(all_records, train, eval, skipped)``: ``--eval-data`` if given, else a seeded slice of ``--data``."""
    records, skipped = read(config.data, config.on_bad_record)
    if config.eval_data is not None:
        eval_records, eval_skipped = read(config.eval_data, config.on_bad_record)
        return records, records, eval_records, skipped + eval_skipped
    train_records, eval_records = split_eval(records, config.eval_fraction, config.seed)
    return records, train_records, eval_records, skipped


def prepare_reference(
    config: TrainingConfig,
    kind: ReferenceKind,
    model: torch.nn.Module,
    pad_id: int,
    splits: dict[str, list[Encoded]],
    objective_name: str,
) -> tuple[dict[str, torch.Tensor] | None, bool]:
    """For ``precomputed``: log-probs per split from the cache (or computed now and cached)."""
    if kind != "precomputed":
        return None, False
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device)

    def compute(seqs: Sequence[Encoded]) -> torch.Tensor:
        return precompute_logps(
            model,
            seqs,
            pad_id,
            config.max_length,
            batch_size=4 * config.batch_size,
            progress=config.progress,
            pairs=objective_name == "dpo",  # DPO's sequences come as (chosen, rejected) pairs: prompts shared
        )

    return cached_reference_logps(config.output, model, splits, compute, extra_key=f"{objective_name}:{config.template}")


def train_against_reference(
    config: PreferenceConfig,
    stage: str,
    model: torch.nn.Module,
    tokenizer: Any,
    train_examples: Sequence[Any],
    eval_examples: Sequence[Any],
    data_report: dict[str, Any],
    objective_cls: Any,
    flat: Any,
    attach: Any,
) -> Path:
    """The part DPO and KTO share: reference log-probs, optional LoRA, the loop, saving.

    ``flat(examples)`` lists the sequences whose reference log-probs are needed, and
    ``attach(examples, logps)`` stores precomputed ones back on the examples.
    """
    kind = default_reference(config.reference, config.lora)
    pack = decide_packing(model)  # chosen and rejected share rows only where that is exact
    cache, reused = prepare_reference(
        config, kind, model, tokenizer.pad_token_id, {"train": flat(train_examples), "eval": flat(eval_examples)}, stage
    )
    if cache is not None:
        attach(train_examples, cache["train"])
        attach(eval_examples, cache["eval"])
    reference = Reference(kind, model) if kind == "copy" else Reference(kind) if kind == "adapter" else None
    if (lora := config.lora_settings()) is not None:
        model = apply_lora(model, lora)
    trainable, total = trainable_parameters(model)
    log.info("training %d of %d parameters; reference: %s", trainable, total, kind)

    layout = {"share_prefix": prefix_sharing_is_exact(model)[0]} if getattr(objective_cls, "shares_prefix", False) else {}
    objective = objective_cls(config, tokenizer.pad_token_id, reference, pack=pack, **layout)
    result = train(config, model, objective, train_examples, eval_examples)
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    write_run_summary(output, stage, config, result, data=data_report, reference={"kind": kind, "cache_reused": reused})
    return output
