"""Per-tree attention gives what masked SDPA over the whole row gives: log-probs and gradients, float64."""

from __future__ import annotations

import copy

import torch
from preference_data import arithmetic_pairs

from alignkit.data import collate
from alignkit.data.chat import Encoded
from alignkit.data.records import record_texts
from alignkit.models import build_tiny_model, sequence_logprobs
from alignkit.models.tree_attention import TREE_SDPA, use_tree_attention
from alignkit.train.dpo import encode_pairs
from alignkit.train.prefix_sharing import shared_prefix_batch


def _models():
    records = arithmetic_pairs(n=12)
    masked, tok = build_tiny_model(record_texts(records), seed=0)
    masked.to(torch.float64)
    tree = copy.deepcopy(masked)
    assert use_tree_attention(tree) and tree.config._attn_implementation == TREE_SDPA
    assert masked.config._attn_implementation == "sdpa"
    examples, _ = encode_pairs(tok, records, 64, "chat")
    # Completions cut by 0-3 tokens (all still end in targets): trees of unequal length, so rows pad.
    return masked, tree, [(_cut(e.chosen, i % 3), _cut(e.rejected, i % 4)) for i, e in enumerate(examples)]


def _cut(seq: Encoded, k: int) -> Encoded:
    return Encoded(seq.input_ids[: len(seq) - k], seq.loss_mask[: len(seq) - k]) if k else seq


def _scores_and_grads(model, batch, where):
    model.zero_grad(set_to_none=True)
    logps = sequence_logprobs(model, batch).sequence_logps[where]
    # Unequal weights per sequence, so a gradient that leaks between trees or sides shows.
    (logps * torch.linspace(0.5, 2.0, len(logps), dtype=logps.dtype)).sum().backward()
    return logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_tree_attention_equals_masked_sdpa_in_values_and_gradients():
    masked, tree, pairs = _models()
    # Narrow rows force several rows with padding in the last ones; the default is one row, no padding.
    for max_width in (70, 2048):
        batch, where = shared_prefix_batch(pairs, 0, max_width)
        rows, width = batch["input_ids"].shape
        assert (rows > 1 and bool((batch["sequence_ids"] < 0).any())) == (max_width == 70)
        lp_masked, g_masked = _scores_and_grads(masked, batch, where)
        lp_tree, g_tree = _scores_and_grads(tree, batch, where)
        torch.testing.assert_close(lp_tree, lp_masked, rtol=1e-12, atol=1e-10)
        for name, g in g_masked.items():
            torch.testing.assert_close(g_tree[name], g, rtol=1e-9, atol=1e-12, msg=name)
        # And both equal each sequence scored alone (no tree, no mask at all).
        alone = torch.stack(
            [sequence_logprobs(masked, collate([[s]], 0)).sequence_logps[0] for pair in pairs for s in pair]
        ).detach()
        torch.testing.assert_close(lp_tree, alone, rtol=1e-10, atol=1e-9)


def test_a_wrong_tree_bias_is_caught():
    # The per-tree path really reads tree_bias: a causal-only bias (the rejected side seeing the chosen one) changes the result.
    masked, tree, pairs = _models()
    batch, where = shared_prefix_batch(pairs[:3], 0)
    good = sequence_logprobs(tree, batch).sequence_logps[where].detach()
    broken = dict(batch)
    parts, bias = [], batch["tree_bias"]
    for _, _, n, _ in batch["tree_spans"].tolist():
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        parts.append(torch.zeros(n, n).masked_fill_(~causal, float("-inf")).reshape(-1))
    broken["tree_bias"] = torch.cat(parts)
    assert broken["tree_bias"].shape == bias.shape
    wrong = sequence_logprobs(tree, broken).sequence_logps[where].detach()
    assert torch.allclose(good[0::2], wrong[0::2], rtol=1e-12)  # chosen sides see only the prefix and themselves either way
    assert (good[1::2] - wrong[1::2]).abs().max() > 1e-3


def test_without_tree_spans_it_is_plain_sdpa():
    masked, tree, pairs = _models()
    # A packed batch of plain sequences (block-diagonal mask from position ids) and a padded one.
    seqs = [s for pair in pairs[:4] for s in pair]
    for batch in (collate([seqs[:3], seqs[3:5]], 0), collate([[s] for s in seqs[:4]], 0, attention_mask=True)):
        with torch.no_grad():
            a = sequence_logprobs(masked, batch).token_logps
            b = sequence_logprobs(tree, batch).token_logps
        assert torch.equal(a, b)
