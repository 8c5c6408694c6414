"""The running batch of a continuous-batching decoder: one KV cache that sequences join and leave.

Why: decoding one request at a time leaves the hardware idle between tokens (one row per forward).
Continuous batching (Orca, Yu et al. 2022, "iteration-level scheduling") runs *one* forward per
step over every sequence in flight; a new request is prefilled and joins at the next step
boundary, a finished one leaves at once, so nobody waits for the longest request of a batch.

Layout is that of :func:`alignkit.train.rollout.sample`: rows are left-padded (every row's newest
token is in the last column), ``attention_mask`` marks real positions and ``position_ids`` count
real tokens only, so a row's numbers do not depend on the padding its neighbours forced on it.
Joining pads the shorter of the two caches on the left to a common width and concatenates along
the batch; leaving selects rows (``batch_select_indices``) and drops columns that became padding
in every remaining row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from alignkit.data.batching import left_pad


def _layers(cache: Any) -> list[Any]:
    """The per-layer key/value holders of a ``transformers`` dynamic cache (``.keys``/``.values``)."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        raise TypeError(f"{type(cache).__name__} is not a dynamic key/value cache; continuous batching needs one")
    return list(layers)


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return F.pad(tensor, pad)


class RunningBatch:
    """Sequences decoding together: their cache, attention mask, positions and next-token logits."""

    def __init__(self, model: torch.nn.Module, pad_id: int) -> None:
        self.model, self.pad_id = model, pad_id
        self.device = next(model.parameters()).device
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)  # (B, L)
        self.positions = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,) position of the newest token
        self.logits = torch.zeros((0, 0), device=self.device)  # (B, V) logits for each row's next token

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @torch.no_grad()
    def join(self, prompts: Sequence[list[int]]) -> None:
        """Prefill ``prompts`` (one forward for all of them) and append them as the last rows."""
        padded = left_pad([list(p) for p in prompts], self.pad_id)
        ids, mask = padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        logits = out.logits[:, -1].float()
        if self.cache is None or len(self) == 0:
            self.cache, self.mask, self.positions, self.logits = out.past_key_values, mask, positions[:, -1], logits
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(_layers(self.cache), _layers(out.past_key_values)):
            # keys/values are (B, heads, L, head_dim): pad L on the left, stack the batches.
            mine.keys = torch.cat([_pad_left(mine.keys, width, 2), _pad_left(theirs.keys, width, 2)])
            mine.values = torch.cat([_pad_left(mine.values, width, 2), _pad_left(theirs.values, width, 2)])
        self.mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)])
        self.positions = torch.cat([self.positions, positions[:, -1]])
        self.logits = torch.cat([self.logits, logits])

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in this order); the others leave the batch and the cache."""
        if len(rows) == len(self) and list(rows) == list(range(len(self))):
            return
        if not rows:
            self.cache = None
            self.mask, self.positions = self.mask[:0, :0], self.positions[:0]
            self.logits = self.logits[:0]
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.logits = self.mask[index], self.positions[index], self.logits[index]
        # Columns that are padding in every remaining row (a long prompt just left): drop them.
        real = self.mask.any(0).nonzero()
        first = int(real[0]) if real.numel() else 0
        if first > 0:
            for layer in _layers(self.cache):
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
            self.mask = self.mask[:, first:]

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> None:
        """Feed each row its newly sampled token; ``logits`` becomes the distribution after it."""
        tokens = tokens.to(self.device)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self), 1)], dim=1)
        self.positions = self.positions + 1
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache, self.logits = out.past_key_values, out.logits[:, -1].float()
