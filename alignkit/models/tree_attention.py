"""SDPA that attends within each packed tree only, so a row's attention costs the sum of its trees' squares.

A prefix-shared DPO batch (:mod:`alignkit.train.prefix_sharing`) lays several pairs, each one tree,
end to end in a row and passes a 4-D boolean mask. Plain SDPA on CPU applies that mask to the full
``width x width`` score matrix, masked-out blocks included, so one wide row with no padding would
pay ``width**2`` per layer. This attention function runs SDPA once per tree instead, on the tree's
own slice of queries, keys and values with that tree's ``n x n`` additive mask, and writes zeros for
padding positions (they are never scored). It is registered with ``transformers``'
``AttentionInterface`` as ``"sdpa_tree"`` (and ``sdpa_mask`` as its mask builder), and is *exactly*
transformers' SDPA whenever the call carries no ``tree_spans``: every other batch (packed SFT rows,
padded generation) takes the unchanged SDPA path.

The per-tree information travels as two extra model kwargs (``transformers`` >= 5 passes unknown
model kwargs down to the attention function), which :func:`alignkit.models.logprobs.model_logits`
forwards when a batch has them:

* ``tree_spans``: ``(trees, 4)`` long tensor ``(row, start, length, offset)``, trees of a row laid
  end to end from column 0, in row order;
* ``tree_bias``: the trees' additive masks (0 or -inf), flattened and concatenated; tree ``i``'s is
  ``tree_bias[offset : offset + length**2].view(length, length)``.

The batch still carries the full boolean mask, so a model on plain SDPA computes the same numbers
(the slow way); :func:`alignkit.train.prefix_sharing.probe_prefix_sharing` checks the result on every
model kind before the layout is used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

TREE_SDPA = "sdpa_tree"


def tree_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    tree_spans: torch.Tensor | None = None,
    tree_bias: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``(rows, heads, width, dim)`` queries in, ``(rows, width, heads, dim)`` out, like transformers' SDPA."""
    if tree_spans is None or tree_bias is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        raise ValueError("tree attention supports neither softcap nor a position bias")
    groups = int(getattr(module, "num_key_value_groups", 1))
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    width = query.shape[2]
    spans = tree_spans.tolist()
    out_rows = []
    # split (not indexing) everywhere: its backward concatenates the pieces' gradients, where
    # indexing would give each slice a full-size zero gradient to sum.
    for r, (q_row, k_row, v_row) in enumerate(zip(query.split(1), key.split(1), value.split(1))):
        trees = [(n, offset) for row, _, n, offset in spans if row == r]
        sizes = [n for n, _ in trees]
        pad = width - sum(sizes)
        pieces = [*sizes, pad] if pad else sizes
        parts = []
        for (n, offset), q, k, v in zip(trees, q_row.split(pieces, 2), k_row.split(pieces, 2), v_row.split(pieces, 2)):
            bias = tree_bias[offset : offset + n * n].view(n, n).to(query.dtype)
            parts.append(F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=scaling))
        if pad:
            parts.append(query.new_zeros(1, query.shape[1], pad, value.shape[-1]))
        out_rows.append(torch.cat(parts, 2) if len(parts) > 1 else parts[0])
    out = torch.cat(out_rows, 0) if len(out_rows) > 1 else out_rows[0]
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(TREE_SDPA, tree_sdpa_attention)
AttentionMaskInterface.register(TREE_SDPA, sdpa_mask)


def use_tree_attention(model: torch.nn.Module) -> bool:
    """Switch a model on SDPA to :data:`TREE_SDPA` (SDPA for every batch without tree spans); True if it is on it now.

    Only the in-memory config changes: ``transformers`` does not save ``_attn_implementation``.
    """
    model = getattr(model, "module", model)
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    config = getattr(base, "config", None)
    if config is None:
        return False
    if getattr(config, "_attn_implementation", None) == "sdpa":
        config._attn_implementation = TREE_SDPA
    return getattr(config, "_attn_implementation", None) == TREE_SDPA
