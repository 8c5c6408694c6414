"""Reward models: a scalar score per (prompt, response), trained on pairwise preferences.

The recipe, top to bottom: read pairs (or rankings, or per-criterion judgments), orient each pair
by the criterion asked for, group the pairs of one ranking into one training unit, load a causal LM
with a one-output sequence-classification head, run the shared loop on the Bradley-Terry loss
(:func:`alignkit.train.losses.reward_model_loss`), measure held-out pairwise accuracy (per
``category`` and per criterion when records carry them), store reward statistics for RL to
normalise with, and save a folder ``AutoModelForSequenceClassification.from_pretrained`` loads.

Where the reward is read. ``transformers``' sequence-classification heads pool at "the last token
that is not the pad token", which silently picks the wrong token when the pad token also ends real
sequences (pad = EOS is the common setup). We instead capture the head's per-token output with a
forward hook and read it at the last real token of each sequence, located from ``sequence_ids``.
The model's own ``forward`` still runs (so LoRA, DDP and autocast behave as usual), and since the
position is known exactly, chosen and rejected sequences are *packed* padding-free into rows like
DPO's, with positions restarting per sequence so nothing attends across sequences.

Rankings. A ranking of k responses gives k(k-1)/2 pairs (InstructGPT); they are kept together as
one unit, so a ranking's pairs always share a batch, and each response is scored once per batch
however many comparisons it takes part in.

Truncation. A reward is read at the end of the response, so over-long sequences lose their
*beginning* (left truncation), in training and in :class:`RewardScorer` alike.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification

from alignkit.data import Encoded, encode_example
from alignkit.data.batching import packed_batch
from alignkit.data.pairs import read_pairs
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models import build_tiny_model, load_tokenizer
from alignkit.models.loading import TINY, is_lora, trainable_parameters
from alignkit.train.config import RewardConfig, TrainingConfig
from alignkit.train.loop import train
from alignkit.train.losses import reward_model_loss
from alignkit.train.summary import write_run_summary

log = logging.getLogger(__name__)

STATS_FILE = "reward_stats.json"


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


def truncate_left(encoded: Encoded, max_length: int) -> Encoded:
    if len(encoded) <= max_length:
        return encoded
    return Encoded(encoded.input_ids[-max_length:], encoded.loss_mask[-max_length:])


def encode_response(tokenizer: Any, prompt: Any, response: Any, max_length: int, template: str) -> Encoded:
    return truncate_left(encode_example(tokenizer, prompt, response, None, template), max_length)  # type: ignore[arg-type]


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


# --------------------------------------------------------------------------- scoring


def score_head(model: torch.nn.Module) -> torch.nn.Module:
    """The classification head (``score`` for decoder LMs, ``classifier`` for some others).

    Under ``peft`` the head is wrapped (``modules_to_save``); the outermost match is the wrapper,
    whose output is whatever copy is active.
    """
    model = getattr(model, "module", model)
    matches = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] in ("score", "classifier")]
    if not matches:
        raise ValueError(f"{type(model).__name__} has no 'score' or 'classifier' head; load it with AutoModelForSequenceClassification")
    return min(matches, key=lambda nm: nm[0].count("."))[1]


def last_token_index(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat index (into ``input_ids.view(-1)``) of each sequence's last token, in sequence order."""
    flat = batch["sequence_ids"].reshape(-1)
    positions = torch.arange(flat.numel(), device=flat.device)
    real = flat >= 0
    n = int(batch["num_sequences"])
    return torch.zeros(n, dtype=torch.long, device=flat.device).scatter_reduce(0, flat[real], positions[real], "amax", include_self=False)


def sequence_rewards(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reward of every sequence of a collated (possibly packed) batch, in sequence order."""
    captured: list[torch.Tensor] = []
    hook = score_head(model).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(input_ids=batch["input_ids"], position_ids=batch.get("position_ids"),
              attention_mask=batch.get("attention_mask"), use_cache=False)
    finally:
        hook.remove()
    per_token = captured[-1][..., 0].float()  # (rows, length): the head's output at every token
    index = batch["last_token"] if "last_token" in batch else last_token_index(batch)
    return per_token.reshape(-1)[index]


class RewardObjective:
    """Groups in, one packed forward pass, Bradley-Terry loss over every comparison out."""

    def __init__(self, pad_id: int, max_length: int, center_coef: float = 0.0, use_margin: bool = False) -> None:
        self.pad_id, self.max_length = pad_id, max_length
        self.center_coef, self.use_margin = center_coef, use_margin

    def collate(self, units: Sequence[RewardGroup]) -> dict[str, torch.Tensor]:
        sequences = [s for g in units for s in g.sequences]
        batch, where = packed_batch(sequences, self.pad_id, self.max_length)
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

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        rewards = sequence_rewards(model, batch)
        chosen, rejected = rewards[batch["chosen_index"]], rewards[batch["rejected_index"]]
        loss, loss_metrics = reward_model_loss(chosen, rejected, margin=batch["margins"] if self.use_margin else None,
                                               center_coef=self.center_coef)
        metrics = {k: float(v) for k, v in loss_metrics.items()}
        with torch.no_grad():
            metrics.update({
                "accuracy": float((chosen > rejected).float().mean()),
                "rewards/chosen": float(chosen.mean()),
                "rewards/rejected": float(rejected.mean()),
                "margins": float((chosen - rejected).mean()),
                "pairs": float(chosen.numel()),
                "tokens": float((batch["sequence_ids"] >= 0).sum()),
            })
        return loss, metrics


@torch.no_grad()
def score_sequences(model: torch.nn.Module, sequences: Sequence[Encoded], pad_id: int, max_length: int,
                    batch_size: int = 16, progress: bool = False) -> list[float]:
    """Rewards of encoded sequences (input order), packed and length-sorted for speed."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [0.0] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    for chunk in tqdm(chunks, desc="reward", disable=not progress):
        batch, where = packed_batch([sequences[i] for i in chunk], pad_id, max_length)
        batch = {k: v.to(device) for k, v in batch.items()}
        rewards = sequence_rewards(model, batch)[where.to(device)].cpu().tolist()
        for i, r in zip(chunk, rewards):
            out[i] = r
    model.train(was_training)
    return out


def pairwise_accuracy(model: torch.nn.Module, groups: Sequence[RewardGroup], pad_id: int, max_length: int,
                      batch_size: int = 16) -> dict[str, float]:
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


# --------------------------------------------------------------------------- model


def load_reward_model(name_or_path: str, *, allow_download: bool = False, dtype: str = "float32",
                      tiny_texts: Iterable[str] = (), seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A causal LM (or a saved reward model) with a one-output sequence-classification head.

    ``"tiny"`` builds the tiny causal LM, saves it to a temporary folder and loads it back through
    ``AutoModelForSequenceClassification`` — the same path a real checkpoint takes. The new head
    is initialised from ``seed`` without touching the global RNG.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if name_or_path == TINY:
            base, tokenizer = build_tiny_model(tiny_texts, seed=seed)
            base.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            path, local_only = tmp, True
        else:
            if not allow_download and not Path(name_or_path).exists():
                raise FileNotFoundError(f"model '{name_or_path}' is not a local folder; pass --allow-download to fetch it from the hub")
            tokenizer = load_tokenizer(name_or_path, allow_download)
            path, local_only = name_or_path, not allow_download
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, local_files_only=local_only,
                dtype="auto" if dtype == "auto" else getattr(torch, dtype),
            )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def apply_reward_lora(model: torch.nn.Module, config: TrainingConfig) -> torch.nn.Module:
    """LoRA for a sequence classifier: adapters on the body, the (new) head fully trainable."""
    from peft import LoraConfig, get_peft_model

    settings = config.lora_settings()
    assert settings is not None
    head = [n for n, _ in model.named_modules() if n.split(".")[-1] in ("score", "classifier")][:1]
    lora = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=settings.target_modules, task_type="SEQ_CLS", modules_to_save=head)
    return get_peft_model(model, lora)


def reward_stats(rewards: Sequence[float]) -> dict[str, float]:
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
    train_units, eval_units = split_eval(list(units.values()), fraction, seed)  # type: ignore[arg-type]
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

    model, tokenizer = load_reward_model(config.model, allow_download=config.allow_download, dtype=config.dtype,
                                         tiny_texts=record_texts(pairs if config.eval_data is None else pairs + eval_pairs), seed=config.seed)
    if config.lora:
        model = apply_reward_lora(model, config)
    trainable, total = trainable_parameters(model)
    log.info("training %d of %d parameters (%.1f%%)", trainable, total, 100 * trainable / total)

    train_groups = build_groups(tokenizer, train_pairs, config.max_length, config.template, config.margin_field)
    eval_groups = build_groups(tokenizer, eval_pairs, config.max_length, config.template, config.margin_field)
    objective = RewardObjective(tokenizer.pad_token_id, config.max_length, config.center_coef, config.margin_field is not None)
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
    stats.update({"template": config.template, "max_length": config.max_length,
                  "reference_set": "eval" if eval_groups else "train"})
    (output / STATS_FILE).write_text(json.dumps(stats, indent=2))
    data_report = {"train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs), "train_units": len(train_groups),
                   "skipped": dict(skipped)}
    write_run_summary(output, "reward_model", config, result, data=data_report, eval_accuracy=accuracy, reward_stats=stats)
    log.info("held-out pairwise accuracy: %s", accuracy)
    return output


# --------------------------------------------------------------------------- inference


class RewardScorer:
    """Scores (prompt, response) pairs with a saved reward model, for RL and evaluation.

    ``normalize=True`` returns ``(r - mean) / std`` with the statistics stored at training time,
    so rewards from different reward models live on a comparable scale.
    """

    def __init__(self, path: str | Path, normalize: bool = False, batch_size: int = 16,
                 device: str | torch.device | None = None, template: str | None = None, max_length: int | None = None) -> None:
        self.path = Path(path)
        stats_path = self.path / STATS_FILE
        self.stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        if normalize and not self.stats:
            raise FileNotFoundError(f"{stats_path}: needed for normalize=True (written by `alignkit rm`)")
        self.normalize, self.batch_size = normalize, batch_size
        self.template = template or self.stats.get("template", "chat")
        self.max_length = max_length or int(self.stats.get("max_length", 512))
        self.tokenizer = load_tokenizer(str(self.path))
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path, local_files_only=True)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()

    def score(self, prompts: Sequence[Any], responses: Sequence[Any]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        sequences = [encode_response(self.tokenizer, p, r, self.max_length, self.template) for p, r in zip(prompts, responses)]
        rewards = score_sequences(self.model, sequences, self.tokenizer.pad_token_id, self.max_length, self.batch_size)
        if self.normalize:
            mean, std = self.stats["mean"], max(self.stats["std"], 1e-8)
            rewards = [(r - mean) / std for r in rewards]
        return rewards
