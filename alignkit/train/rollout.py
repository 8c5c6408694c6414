"""Rollouts for online RL: sample responses from the policy and keep what the update needs.

We write the sampling loop ourselves instead of calling ``model.generate``: it is a plain loop
(prefill the left-padded prompts, then one token per step through the KV cache), it returns the
log-probability of every sampled token for free, it stops each row at its *first* stop token, and
it skips ``generate``'s per-step logits-processor and stopping-criteria machinery
(``benchmarks/rollout_throughput.py`` measures both on the same batch).

Layout. A rollout is a ``(B, P)`` block of left-padded prompts followed by a ``(B, R)`` block of
right-padded responses, so column ``j`` of every response tensor is the ``j``-th generated token of
every row. All per-token RL quantities (log-probs, KL, values, advantages) live on that ``(B, R)``
grid with ``response_mask`` marking real tokens; the stop token itself is a real token (the policy
must learn to emit it), everything after it is padding.

Temperature. Tokens are sampled from ``softmax(logits / T)`` (optionally top-p filtered) and the
stored log-probs are those of ``softmax(logits / T)``; :func:`rollout_logprobs` rescores with the
same ``T`` through :func:`alignkit.models.sequence_logprobs`' helper, so ratios start at exactly 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignkit.data.batching import left_pad
from alignkit.models.generation import stop_criteria
from alignkit.models.logprobs import LogProbs, logprobs_from_logits, model_logits


@dataclass
class Rollout:
    """Sampled responses of one batch, on the device they were sampled on."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P) 1 for real prompt tokens
    response_ids: torch.Tensor  # (B, R) right-padded with pad_id after the stop token
    response_mask: torch.Tensor  # (B, R) bool, True for generated tokens up to and including the stop token
    logprobs: torch.Tensor  # (B, R) log p_T(token) at sampling time, 0 where masked
    stopped: torch.Tensor  # (B,) bool: the response ended with a stop token (not cut at max_new_tokens)

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1)

    def batch(self, rows: torch.Tensor | slice | None = None) -> dict[str, torch.Tensor]:
        """A forward-pass batch for :func:`model_logits` (and the one log-prob function).

        Left padding goes through ``attention_mask`` and ``position_ids`` (positions count real
        tokens only), so a row's numbers do not depend on how much padding it got.
        """
        rows = slice(None) if rows is None else rows
        prompt_ids, prompt_mask = self.prompt_ids[rows], self.prompt_mask[rows]
        response_ids, response_mask = self.response_ids[rows], self.response_mask[rows]
        input_ids = torch.cat([prompt_ids, response_ids], dim=1)
        attention = torch.cat([prompt_mask.long(), response_mask.long()], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        loss_mask = torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool), response_mask.bool()], dim=1)
        n = input_ids.shape[0]
        row_index = torch.arange(n, device=input_ids.device).unsqueeze(1).expand_as(input_ids)
        sequence_ids = torch.where(attention.bool(), row_index, torch.full_like(row_index, -1))
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "position_ids": positions,
            "loss_mask": loss_mask,
            "sequence_ids": sequence_ids,
            "num_sequences": torch.tensor(n),
        }


def response_slice(logits_or_tokens: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """Columns of a shifted ``(B, L-1, ...)`` tensor that predict the response tokens.

    Position ``t`` of the shifted grid predicts token ``t + 1``, so the first response token
    (column ``P`` of the full sequence) is predicted at ``P - 1``.
    """
    return logits_or_tokens[:, prompt_width - 1 :]


def rollout_logprobs(
    model: torch.nn.Module,
    rollout: Rollout,
    temperature: float,
    rows: torch.Tensor | slice | None = None,
    keep_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, R)`` log-probs of the response tokens under ``model`` at ``temperature``.

    Goes through :func:`alignkit.models.logprobs.logprobs_from_logits` (the one log-prob path);
    with ``keep_logits`` also returns the temperature-scaled ``(B, R, V)`` logits (for entropy).
    """
    batch = rollout.batch(rows)
    lp: LogProbs = logprobs_from_logits(model_logits(model, batch), batch, temperature, keep_logits)
    width = rollout.prompt_ids.shape[1]
    logits = response_slice(lp.logits, width) if keep_logits and lp.logits is not None else None
    return response_slice(lp.token_logps, width), logits


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (to -inf) the tail outside the smallest set of tokens with probability >= top_p."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # Drop a token when the mass strictly before it already reaches top_p (always keeps the top one).
    drop = probs.cumsum(-1) - probs >= top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompts: Sequence[list[int]],
    *,
    pad_id: int,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    stop_strings: Sequence[str] = (),
    tokenizer: Any = None,
) -> Rollout:
    """Sample one response per prompt (token-id lists) with the KV cache.

    Every row stops at its first token in ``stop_ids`` (kept as the last response token), or (with
    ``stop_strings`` and the ``tokenizer`` to decode with) at the token that completes a stop string;
    rows that never stop are cut at ``max_new_tokens`` and flagged in ``Rollout.stopped``. Take
    ``stop_ids``/``stop_strings`` from :func:`alignkit.models.generation.stop_criteria` (the model's
    ``generation_config``, not just the tokenizer's EOS). ``temperature`` must be > 0: the
    log-probs of a greedy policy are not defined.
    """
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings need the tokenizer to decode responses with")
    # A stop string of n characters spans at most n tokens (plus one for a partial first token).
    window = max((len(s) for s in stop_strings), default=0) + 2
    if temperature <= 0:
        raise ValueError(f"rollout temperature must be > 0 (got {temperature}); RL needs a stochastic policy")
    if not prompts:
        raise ValueError("no prompts to sample from")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    padded = left_pad([list(p) for p in prompts], pad_id)
    prompt_ids = padded["input_ids"].to(device)
    prompt_mask = padded["attention_mask"].to(device)
    stops = torch.tensor(sorted(set(stop_ids)), device=device, dtype=torch.long)
    n = prompt_ids.shape[0]

    attention = prompt_mask
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=attention, position_ids=positions, use_cache=True)
    past, next_logits = out.past_key_values, out.logits[:, -1]
    position = positions[:, -1]

    response_ids = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    response_mask = torch.zeros((n, max_new_tokens), dtype=torch.bool, device=device)
    logprobs = torch.zeros((n, max_new_tokens), dtype=torch.float32, device=device)
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    rows = torch.arange(n, device=device)  # original index of each row still in the running batch
    finished = torch.zeros(n, dtype=torch.bool, device=device)  # per running row
    can_compact = hasattr(past, "batch_select_indices")
    width = 0
    for step in range(max_new_tokens):
        scaled = next_logits.float() / temperature
        logp_all = scaled.log_softmax(-1)
        filtered = top_p_filter(scaled, top_p) if top_p < 1.0 else scaled
        token = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)
        live = ~finished
        at = rows[live]
        response_ids[at, step] = token[live]
        response_mask[at, step] = True
        logprobs[at, step] = logp_all.gather(1, token[:, None]).squeeze(1)[live]
        width = step + 1
        newly = live & torch.isin(token, stops)
        if stop_strings:
            for r in live.nonzero().squeeze(1).tolist():
                tail = tokenizer.decode(response_ids[rows[r], max(0, step + 1 - window) : step + 1].tolist())
                if any(s in tail for s in stop_strings):
                    newly[r] = True
        stopped[rows[newly]] = True
        finished = finished | newly
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        if can_compact and bool(newly.any()):
            # Drop finished rows from the batch and the KV cache: later steps only pay for rows
            # still generating (RL responses vary a lot in length).
            keep = (~finished).nonzero().squeeze(1)
            past.batch_select_indices(keep)
            attention, position, token = attention[keep], position[keep], token[keep]
            rows, finished = rows[keep], finished[keep]
        # Without compaction, finished rows keep feeding tokens whose outputs are never read.
        attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
        position = position + 1
        out = model(
            input_ids=token[:, None],
            attention_mask=attention,
            position_ids=position[:, None],
            past_key_values=past,
            use_cache=True,
        )
        past, next_logits = out.past_key_values, out.logits[:, -1]
    model.train(was_training)
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids[:, :width],
        response_mask=response_mask[:, :width],
        logprobs=logprobs[:, :width],
        stopped=stopped,
    )


def decode_responses(tokenizer: Any, rollout: Rollout, stop_ids: Sequence[int], stop_strings: Sequence[str] = ()) -> list[str]:
    """Response texts without the stop token (or stop string) and padding (what reward functions see)."""
    stops = set(stop_ids)
    texts = []
    for ids, mask in zip(rollout.response_ids.tolist(), rollout.response_mask.tolist()):
        kept = [t for t, m in zip(ids, mask) if m and t not in stops]
        text = tokenizer.decode(kept, skip_special_tokens=True)
        ends = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
        texts.append((text[: min(ends)] if ends else text).strip())
    return texts


def stop_token_ids(tokenizer: Any, extra: Sequence[str] = (), model: torch.nn.Module | None = None) -> list[int]:
    """Stop ids: every EOS id of ``model.generation_config`` (e.g. Gemma's ``<end_of_turn>``) and of
    the tokenizer, plus ``extra`` stop strings, each of which must be a single token here."""
    criteria = stop_criteria(model, tokenizer, extra)
    if criteria.strings:
        raise ValueError(f"stop token(s) {list(criteria.strings)} are not single tokens of this tokenizer")
    return list(criteria.token_ids)
