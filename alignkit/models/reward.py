"""Reading a reward model: one score per (prompt, response), and :class:`RewardScorer` for RL and evaluation.

A reward is read at the end of the response, from the head's per-token output
(:func:`alignkit.models.heads.per_token_scores`) at the last real token of each sequence, located
from ``sequence_ids``; so chosen and rejected sequences can be *packed* padding-free into rows,
positions restarting per sequence. For the same reason over-long sequences lose their *beginning*
(left truncation), in training and in :class:`RewardScorer` alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification

from alignkit.data.batching import packed_batch
from alignkit.data.chat import Encoded, encode_example
from alignkit.models.heads import per_token_scores
from alignkit.models.loading import load_tokenizer
from alignkit.models.packing import packing_is_exact

STATS_FILE = "reward_stats.json"


def truncate_left(encoded: Encoded, max_length: int) -> Encoded:
    if len(encoded) <= max_length:
        return encoded
    return Encoded(encoded.input_ids[-max_length:], encoded.loss_mask[-max_length:])


def encode_response(tokenizer: Any, prompt: Any, response: Any, max_length: int, template: str) -> Encoded:
    return truncate_left(encode_example(tokenizer, prompt, response, None, template), max_length)  # type: ignore[arg-type]


def last_token_index(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat index (into ``input_ids.view(-1)``) of each sequence's last token, in sequence order."""
    flat = batch["sequence_ids"].reshape(-1)
    positions = torch.arange(flat.numel(), device=flat.device)
    real = flat >= 0
    n = int(batch["num_sequences"])
    return torch.zeros(n, dtype=torch.long, device=flat.device).scatter_reduce(
        0, flat[real], positions[real], "amax", include_self=False
    )


def sequence_rewards(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reward of every sequence of a collated (possibly packed) batch, in sequence order."""
    per_token = per_token_scores(
        model, input_ids=batch["input_ids"], position_ids=batch.get("position_ids"), attention_mask=batch.get("attention_mask")
    )  # (rows, length)
    index = batch["last_token"] if "last_token" in batch else last_token_index(batch)
    return per_token.reshape(-1)[index]


@torch.no_grad()
def score_sequences(
    model: torch.nn.Module,
    sequences: Sequence[Encoded],
    pad_id: int,
    max_length: int,
    batch_size: int = 16,
    progress: bool = False,
) -> list[float]:
    """Rewards of encoded sequences (input order), packed (where exact for ``model``) and length-sorted for speed."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [0.0] * len(sequences)
    pack = packing_is_exact(model)[0]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    for chunk in tqdm(chunks, desc="reward", disable=not progress):
        batch, where = packed_batch([sequences[i] for i in chunk], pad_id, max_length, pack)
        batch = {k: v.to(device) for k, v in batch.items()}
        rewards = sequence_rewards(model, batch)[where.to(device)].cpu().tolist()
        for i, r in zip(chunk, rewards):
            out[i] = r
    model.train(was_training)
    return out


class RewardScorer:
    """Scores (prompt, response) pairs with a saved reward model, for RL and evaluation.

    ``normalize=True`` returns ``(r - mean) / std`` with the statistics stored at training time,
    so rewards from different reward models live on a comparable scale.
    """

    def __init__(
        self,
        path: str | Path,
        normalize: bool = False,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        template: str | None = None,
        max_length: int | None = None,
    ) -> None:
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
