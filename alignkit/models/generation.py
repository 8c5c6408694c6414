"""Batched sampling of responses, for the sandbox, evaluation and AI feedback.

Prompts go through the same chat-template path as training (``encode_prompt``), are left-padded so
every row ends at the same column, and generation stops at EOS. Online RL has its own rollout
code that also returns token ids and log-probs; this is the plain text-in, text-out path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from tqdm.auto import tqdm

from alignkit.data.batching import left_pad
from alignkit.data.chat import TemplateMode, encode_prompt


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, Any]]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    template: TemplateMode = "chat",
    progress: bool = False,
) -> list[str]:
    """Sample one response per prompt (greedy when ``temperature == 0``)."""
    model.eval()
    device = next(model.parameters()).device
    outputs: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="generate"):
            chunk = [encode_prompt(tokenizer, p, template) for p in prompts[start : start + batch_size]]
            batch = {k: v.to(device) for k, v in left_pad(chunk, tokenizer.pad_token_id).items()}
            sampled = cast(Any, model).generate(  # transformers method, not in torch.nn.Module's type
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=top_p if temperature > 0 else None,
                top_k=0 if temperature > 0 else None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = sampled[:, batch["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return [o.strip() for o in outputs]
