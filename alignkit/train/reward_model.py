"""Reward models: a scalar score per (prompt, response), trained on pairwise preferences.

The recipe, top to bottom: read pairs (or rankings, or per-criterion judgments), orient each pair
by the criterion asked for, group the pairs of one ranking into one training unit, load a causal LM
with a one-output sequence-classification head, run the shared loop on the Bradley-Terry loss
(:func:`alignkit.train.losses.reward_model_loss`), measure held-out pairwise accuracy (per
``category`` and per criterion when records carry them), store reward statistics for RL to
normalise with, and save a folder ``AutoModelForSequenceClassification.from_pretrained`` loads.

Where the reward is read: at the last real token of each sequence, from the head's per-token
output captured by a forward hook (:mod:`alignkit.models.heads`, shared with the PPO critic;
reading a trained model, and :class:`~alignkit.models.reward.RewardScorer`, live in
:mod:`alignkit.models.reward`). Since the position is known exactly, chosen and rejected
sequences are *packed* padding-free into rows like DPO's, with positions restarting per sequence
so nothing attends across sequences.

Rankings. A ranking of k responses gives k(k-1)/2 pairs (InstructGPT); they are kept together as
one unit, so a ranking's pairs always share a batch, and each response is scored once per batch
however many comparisons it takes part in.

Truncation. A reward is read at the end of the response, so over-long sequences lose their
*beginning* (left truncation), in training and in ``RewardScorer`` alike.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignkit.data import Encoded
from alignkit.data.batching import packed_batch
from alignkit.data.pairs import read_pairs
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models.heads import apply_head_lora
from alignkit.models.loading import is_lora, load_reward_model, trainable_parameters
from alignkit.models.packing import decide_packing
from alignkit.models.reward import STATS_FILE, encode_response, last_token_index, score_sequences, sequence_rewards
from alignkit.train.config import RewardConfig
from alignkit.train.loop import train
from alignkit.train.losses import reward_model_loss
from alignkit.train.summary import write_run_summary

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


def judgment_sign(value: Any) -> int:
    """+1 when the judgment prefers ``chosen``, -1 ``rejected``, 0 for a tie or no judgment."""
    if isinstance(value, str):
        return {"chosen": 1, "rejected": -1}.get(value.strip().lower(), 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return (value > 0) - (value < 0)
    return 0


def swapped(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["chosen"], out["rejected"] = record["rejected"], record["chosen"]
    return out


def orient(record: dict[str, Any], criterion: str | None, weights: dict[str, float] | None) -> dict[str, Any] | None:
    """The pair as the chosen criterion sees it (possibly swapped), or None to drop it.

    Two shapes of per-criterion data are understood: one row per criterion (a ``criterion`` field,
    as in battles) or one row with a ``criteria`` dict ``{name: "chosen"|"rejected"|"tie"|±1}``.
    """
    criteria = record.get("criteria")
    if criterion is not None:
        if isinstance(criteria, dict):
            sign = judgment_sign(criteria.get(criterion))
            return None if sign == 0 else record if sign > 0 else swapped(record)
        return record if record.get("criterion") == criterion else None
    if weights and isinstance(criteria, dict):
        score = sum(w * judgment_sign(criteria.get(name)) for name, w in weights.items())
        return None if score == 0 else record if score > 0 else swapped(record)
    return record


@dataclass
class RewardGroup:
    """Responses to one prompt scored together, and the comparisons between them.

    ``comparisons[j] = (better, worse)`` indexes ``sequences``; ``records[j]`` is the pair record
    it came from (for per-category / per-criterion accuracy), ``margins[j]`` its margin.
    """

    sequences: list[Encoded] = field(default_factory=list)
    comparisons: list[tuple[int, int]] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def _key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def build_groups(
    tokenizer: Any, pairs: Sequence[dict[str, Any]], max_length: int, template: str, margin_field: str | None = None
) -> list[RewardGroup]:
    """One group per ranking (pairs sharing a ``ranking_id``), one per stand-alone pair.

    A response appearing in several comparisons of a group is encoded (and later scored) once.
    """
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        rid = pair.get("ranking_id")
        grouped[("ranking", rid) if rid is not None else ("pair", i)].append(pair)
    groups = []
    for members in grouped.values():
        group, slot = RewardGroup(), {}
        for pair in members:
            ends = []
            for side in ("chosen", "rejected"):
                key = _key(pair["prompt"]) + "\x00" + _key(pair[side])
                if key not in slot:
                    slot[key] = len(group.sequences)
                    group.sequences.append(encode_response(tokenizer, pair["prompt"], pair[side], max_length, template))
                ends.append(slot[key])
            group.comparisons.append((ends[0], ends[1]))
            group.margins.append(float(pair.get(margin_field, 0.0) or 0.0) if margin_field else 0.0)
            group.records.append(pair)
        groups.append(group)
    return groups


# --------------------------------------------------------------------------- objective and accuracy


class RewardObjective:
    """Groups in, one packed forward pass, Bradley-Terry loss over every comparison out."""

    def __init__(
        self, pad_id: int, max_length: int, center_coef: float = 0.0, use_margin: bool = False, pack: bool = True
    ) -> None:
        self.pad_id, self.max_length, self.pack = pad_id, max_length, pack
        self.center_coef, self.use_margin = center_coef, use_margin

    def collate(self, units: Sequence[RewardGroup]) -> dict[str, torch.Tensor]:
        sequences = [s for g in units for s in g.sequences]
        batch, where = packed_batch(sequences, self.pad_id, self.max_length, self.pack)
        better, worse, margins, offset = [], [], [], 0
        for g in units:
            better += [offset + b for b, _ in g.comparisons]
            worse += [offset + w for _, w in g.comparisons]
            margins += g.margins
            offset += len(g.sequences)
        batch["chosen_index"] = where[torch.tensor(better)]
        batch["rejected_index"] = where[torch.tensor(worse)]
        batch["margins"] = torch.tensor(margins, dtype=torch.float32)
        batch["last_token"] = last_token_index(batch)
        return batch

    def weight(self, batch: dict[str, torch.Tensor]) -> float:
        """Comparisons (a ranking group holds several): the loss is a mean over them."""
        return float(batch["chosen_index"].numel())

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        rewards = sequence_rewards(model, batch)
        chosen, rejected = rewards[batch["chosen_index"]], rewards[batch["rejected_index"]]
        loss, loss_metrics = reward_model_loss(
            chosen, rejected, margin=batch["margins"] if self.use_margin else None, center_coef=self.center_coef
        )
        metrics = {k: float(v) for k, v in loss_metrics.items()}
        with torch.no_grad():  # accuracy, margin and rewards/* come from reward_model_loss
            metrics.update(
                {
                    "pairs": float(chosen.numel()),
                    "tokens": float((batch["sequence_ids"] >= 0).sum()),
                }
            )
        return loss, metrics


def pairwise_accuracy(
    model: torch.nn.Module, groups: Sequence[RewardGroup], pad_id: int, max_length: int, batch_size: int = 16
) -> dict[str, float]:
    """Held-out share of comparisons the model orders like the data, overall and broken down.

    Breakdowns: ``accuracy/category=<c>`` for records with a ``category`` field,
    ``accuracy/criterion=<c>`` for records with a ``criterion`` field or a ``criteria`` dict (a
    comparison counts for criterion c when c's judgment is not a tie; it is right when the reward
    order agrees with that judgment).
    """
    sequences = [s for g in groups for s in g.sequences]
    rewards = score_sequences(model, sequences, pad_id, max_length, batch_size)
    hits: dict[str, list[int]] = defaultdict(list)
    offset = 0
    for g in groups:
        for (b, w), record in zip(g.comparisons, g.records):
            diff = rewards[offset + b] - rewards[offset + w]
            hits["accuracy"].append(int(diff > 0))
            if record.get("category") is not None:
                hits[f"accuracy/category={record['category']}"].append(int(diff > 0))
            if record.get("criterion") is not None:
                hits[f"accuracy/criterion={record['criterion']}"].append(int(diff > 0))
            if isinstance(record.get("criteria"), dict):
                # ``record`` is oriented already; its criteria judgments refer to its own sides.
                for name, value in record["criteria"].items():
                    if (sign := judgment_sign(value)) != 0:
                        hits[f"accuracy/criterion={name}"].append(int(diff * sign > 0))
        offset += len(g.sequences)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())} | {"comparisons": float(len(hits["accuracy"]))}


def reward_stats(rewards: Sequence[float]) -> dict[str, Any]:
    n = len(rewards)
    mean = sum(rewards) / max(n, 1)
    var = sum((r - mean) ** 2 for r in rewards) / max(n - 1, 1)
    return {"mean": mean, "std": math.sqrt(var), "count": n}


# --------------------------------------------------------------------------- recipe


def load_pairs(config: RewardConfig, path: Path) -> tuple[list[dict[str, Any]], Counter]:
    pairs, skipped = read_pairs(path, config.on_bad_record)
    kept = []
    for pair in pairs:
        oriented = orient(pair, config.criterion, config.criterion_weights)
        if oriented is None:
            skipped["no_judgment_for_criterion"] += 1
        else:
            kept.append(oriented)
    return kept, skipped


def split_pairs(pairs: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out whole rankings (never half of one), so held-out comparisons are truly unseen."""
    units: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for i, p in enumerate(pairs):
        rid = p.get("ranking_id")
        units[rid if rid is not None else ("pair", i)].append(p)
    train_units, eval_units = split_eval(list(units.values()), fraction, seed)
    return [p for u in train_units for p in u], [p for u in eval_units for p in u]


def run_reward_model(config: RewardConfig) -> Path:
    """Train and save a reward model; returns the output folder."""
    torch.manual_seed(config.seed)
    pairs, skipped = load_pairs(config, config.data)
    if config.eval_data is not None:
        train_pairs = pairs
        eval_pairs, eval_skipped = load_pairs(config, config.eval_data)
        skipped += eval_skipped
    else:
        train_pairs, eval_pairs = split_pairs(pairs, config.eval_fraction, config.seed)
    if skipped:
        log.warning("skipped %d record(s) before training: %s", sum(skipped.values()), dict(skipped))
    if not train_pairs:
        raise ValueError(f"{config.data}: no usable pairs left (skipped: {dict(skipped)})")

    model, tokenizer = load_reward_model(
        config.model,
        allow_download=config.allow_download,
        dtype=config.dtype,
        attn_implementation=config.attn_implementation,
        tiny_texts=record_texts(pairs if config.eval_data is None else pairs + eval_pairs),
        seed=config.seed,
    )
    if (lora := config.lora_settings()) is not None:
        model = apply_head_lora(model, lora)
    trainable, total = trainable_parameters(model)
    log.info("training %d of %d parameters (%.1f%%)", trainable, total, 100 * trainable / total)

    train_groups = build_groups(tokenizer, train_pairs, config.max_length, config.template, config.margin_field)
    eval_groups = build_groups(tokenizer, eval_pairs, config.max_length, config.template, config.margin_field)
    objective = RewardObjective(
        tokenizer.pad_token_id, config.max_length, config.center_coef, config.margin_field is not None, decide_packing(model)
    )
    result = train(config, model, objective, train_groups, eval_groups)
    model = result.model
    if is_lora(model):
        model = model.merge_and_unload()  # a plain transformers classifier: RL and evaluation load it directly

    pad = tokenizer.pad_token_id
    accuracy = pairwise_accuracy(model, eval_groups, pad, config.max_length, 2 * config.batch_size) if eval_groups else {}
    reference = [s for g in (eval_groups or train_groups) for s in g.sequences][: config.stats_samples]
    stats = reward_stats(score_sequences(model, reference, pad, config.max_length, 2 * config.batch_size))
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    stats.update(
        {"template": config.template, "max_length": config.max_length, "reference_set": "eval" if eval_groups else "train"}
    )
    (output / STATS_FILE).write_text(json.dumps(stats, indent=2))
    data_report = {
        "train_pairs": len(train_pairs),
        "eval_pairs": len(eval_pairs),
        "train_units": len(train_groups),
        "skipped": dict(skipped),
    }
    write_run_summary(output, "reward_model", config, result, data=data_report, eval_accuracy=accuracy, reward_stats=stats)
    log.info("held-out pairwise accuracy: %s", accuracy)
    return output
