"""The scalar head shared by reward models and the PPO critic, read at any token.

Both are ``AutoModelForSequenceClassification`` models: a causal-LM backbone and a one-output
``score`` head. ``transformers`` pools that head at "the last token that is not the pad token",
which silently picks the wrong token when the pad token also ends real sequences (pad = EOS is the
common setup), and a critic needs a value at *every* token anyway. So we capture the head's
per-token output with a forward hook (:func:`per_token_scores`) and let each caller pick its
positions: the reward model the last real token of each sequence, the critic the position before
each response token. The model's own ``forward`` still runs, so LoRA, DDP and autocast behave as
usual.
"""

from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from alignkit.models.config import LoraSettings

HEAD_NAMES = ("score", "classifier")


def score_head(model: torch.nn.Module) -> torch.nn.Module:
    """The classification head (``score`` for decoder LMs, ``classifier`` for some others).

    Under ``peft`` the head is wrapped (``modules_to_save``); the outermost match is the wrapper,
    whose output is whatever copy is active.
    """
    model = getattr(model, "module", model)
    matches = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] in HEAD_NAMES]
    if not matches:
        raise ValueError(
            f"{type(model).__name__} has no 'score' or 'classifier' head; load it with AutoModelForSequenceClassification"
        )
    return min(matches, key=lambda nm: nm[0].count("."))[1]


def per_token_scores(model: torch.nn.Module, **inputs: Any) -> torch.Tensor:
    """``(rows, length)``: the head's scalar output at every token (its own pooling is ignored)."""
    captured: list[torch.Tensor] = []
    hook = score_head(model).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(**inputs, use_cache=False)
    finally:
        hook.remove()
    return captured[-1][..., 0].float()


def apply_head_lora(model: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """LoRA for a sequence classifier: adapters on the body, the head fully trainable."""
    head = [n for n, _ in model.named_modules() if n.split(".")[-1] in HEAD_NAMES][:1]
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="SEQ_CLS",
        modules_to_save=head,
    )
    return get_peft_model(model, config)
