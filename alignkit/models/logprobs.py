"""The one function that scores completions under a model.

SFT's cross-entropy, reward-model inputs, DPO/KTO log-ratios and PPO's ratios all come from here,
so temperature, masking, packing and the off-by-one shift between logits and targets are handled
in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LogProbs:
    """Log-probabilities of the target tokens of a collated batch.

    ``token_logps[r, t]`` is log p(input_ids[r, t+1] | input_ids[r, :t+1]) where ``mask[r, t]`` is
    True (a completion token) and 0 elsewhere. ``sequence_logps[k]`` sums them for the k-th
    sequence of the batch (see ``alignkit.data.batching``); ``lengths[k]`` counts its targets.
    """

    token_logps: torch.Tensor
    mask: torch.Tensor
    sequence_logps: torch.Tensor
    lengths: torch.Tensor
    logits: torch.Tensor | None = None


# Batch keys handed to the model as kwargs when present: per-tree attention (alignkit.models.tree_attention).
ATTENTION_KWARGS = ("tree_spans", "tree_bias")


def model_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward pass for a collated batch: no KV cache (it would disable packed-sequence masking)."""
    extra = {k: batch[k] for k in ATTENTION_KWARGS if k in batch}
    return model(
        input_ids=batch["input_ids"],
        position_ids=batch.get("position_ids"),
        attention_mask=batch.get("attention_mask"),
        use_cache=False,
        **extra,
    ).logits


def logprobs_from_logits(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float = 1.0, keep_logits: bool = False
) -> LogProbs:
    """Gather target log-probs from logits already computed for ``batch``."""
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # half-precision log-softmax loses the small differences DPO's ratios are made of
    if temperature != 1.0:
        logits = logits / temperature
    targets = batch["input_ids"][:, 1:]
    mask = batch["loss_mask"][:, 1:]
    # log_softmax(x)[y] = x[y] - logsumexp(x): avoids materialising the full log-softmax tensor.
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    token_logps = token_logps * mask
    seq_ids = batch["sequence_ids"][:, 1:][mask]
    n = int(batch["num_sequences"]) if "num_sequences" in batch else int(batch["sequence_ids"].max()) + 1
    sequence_logps = token_logps.new_zeros(n).index_add(0, seq_ids, token_logps[mask])
    lengths = torch.zeros(n, dtype=torch.long, device=mask.device).index_add(0, seq_ids, torch.ones_like(seq_ids))
    return LogProbs(token_logps, mask, sequence_logps, lengths, logits if keep_logits else None)


def sequence_logprobs(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0, keep_logits: bool = False
) -> LogProbs:
    """Per-token and per-sequence log-probs of the completion tokens of ``batch``.

    ``temperature`` must match the one used for sampling when the log-probs feed RL ratios.
    """
    return logprobs_from_logits(model_logits(model, batch), batch, temperature, keep_logits)
