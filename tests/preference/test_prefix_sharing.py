"""Prefix sharing: a pair as one tree scores exactly what the two sequences score alone."""

from __future__ import annotations

import copy

import pytest
import torch
from preference_data import arithmetic_pairs

from alignkit.data import collate
from alignkit.data.chat import Encoded
from alignkit.data.records import record_texts
from alignkit.models import build_tiny_model, sequence_logprobs
from alignkit.train.config import DPOConfig
from alignkit.train.dpo import DPOObjective, attach_reference, encode_pairs, flat_sequences
from alignkit.train.loop import train
from alignkit.train.prefix_sharing import (
    CHOSEN,
    PAD,
    PREFIX,
    PREFIX_LAST,
    REJECTED,
    pair_tree,
    prefix_sharing_is_exact,
    probe_prefix_sharing,
    shared_prefix_batch,
    shared_prefix_length,
    tree_attention_mask,
    tree_length,
)
from alignkit.train.reference import precompute_logps


def _seq(prompt: list[int], completion: list[int]) -> Encoded:
    return Encoded(prompt + completion, [False] * len(prompt) + [True] * len(completion))


def _alone(model, sequences):
    """Each sequence in its own batch: no packing, no tree, no mask."""
    with torch.no_grad():
        return torch.stack([sequence_logprobs(model, collate([[s]], 0)).sequence_logps[0] for s in sequences])


def _setup(n=12, dtype=torch.float64):
    records = arithmetic_pairs(n=n)
    model, tok = build_tiny_model(record_texts(records), seed=0)
    model.to(dtype)
    examples, _ = encode_pairs(tok, records, 64, "chat")
    return model, tok, examples


def test_tree_layout_worked_by_hand():
    chosen = _seq([5, 6, 7], [8, 9])
    rejected = _seq([5, 6, 7], [10])
    assert shared_prefix_length(chosen, rejected) == 3
    ids, mask, positions, side, kind = pair_tree(chosen, rejected)
    assert ids == [5, 6, 7, 8, 9, 7, 10]  # the rejected side restarts at a copy of the prompt's last token
    assert mask == [False, False, False, True, True, False, True]
    assert positions == [0, 1, 2, 3, 4, 2, 3]
    assert side == [0, 0, 0, 0, 0, 1, 1]
    assert kind == [PREFIX, PREFIX, PREFIX_LAST, CHOSEN, CHOSEN, REJECTED, REJECTED]
    assert tree_length(chosen, rejected) == 7 == len(chosen) + len(rejected) - 2

    group = torch.tensor([[0] * 7 + [-1]])
    mask4 = tree_attention_mask(group, torch.tensor([kind + [PAD]]))[0, 0].int().tolist()
    assert mask4 == [
        # p0 p1 p2 c0 c1 p2' r0 pad
        [1, 0, 0, 0, 0, 0, 0, 0],  # p0
        [1, 1, 0, 0, 0, 0, 0, 0],  # p1
        [1, 1, 1, 0, 0, 0, 0, 0],  # p2
        [1, 1, 1, 1, 0, 0, 0, 0],  # c0
        [1, 1, 1, 1, 1, 0, 0, 0],  # c1
        [1, 1, 0, 0, 0, 1, 0, 0],  # p2': what p2 sees (p0, p1, itself)
        [1, 1, 0, 0, 0, 1, 1, 0],  # r0: never p2 or the chosen side
        [0, 0, 0, 0, 0, 0, 0, 1],  # padding sees only padding
    ]


def test_no_shared_prefix_and_shared_completion_tokens_are_not_shared():
    # Different first tokens: nothing shared, both sides start at position 0.
    a, b = _seq([1, 2], [3]), _seq([4, 2], [3])
    assert shared_prefix_length(a, b) == 0
    assert pair_tree(a, b)[2] == [0, 1, 2, 0, 1, 2]
    # Equal completions' first token is a target: the prefix stops at the prompt.
    c, d = _seq([1, 2], [3, 4]), _seq([1, 2], [3, 5])
    assert shared_prefix_length(c, d) == 2


def test_shared_prefix_log_probs_equal_unshared_ones():
    model, tok, examples = _setup()
    pairs = [(e.chosen, e.rejected) for e in examples]
    batch, where = shared_prefix_batch(pairs, tok.pad_token_id, 256)
    assert int((batch["sequence_ids"] >= 0).sum()) < sum(len(s) for s in flat_sequences(examples))  # prompts once
    with torch.no_grad():
        shared = sequence_logprobs(model, batch).sequence_logps[where]
    alone = _alone(model, flat_sequences(examples))
    torch.testing.assert_close(shared, alone, rtol=1e-10, atol=1e-9)  # float64: any mask error shows


def test_pairs_with_different_prompts_in_one_row_stay_separate():
    model, tok, _ = _setup(n=2)
    gen = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, 60, (n,), generator=gen).tolist()

    p, q = ids(5), ids(2)
    pairs = [
        (_seq(p, ids(10)), _seq(p, ids(12))),
        (_seq(q, ids(3)), _seq(q, ids(2))),
        (_seq(ids(3), ids(2)), _seq(ids(4), ids(2))),  # no shared prefix
    ]
    # Per-tree attention: a row costs its positions, so the three trees (40 positions) share one row.
    batch, where = shared_prefix_batch(pairs, 0)
    assert batch["input_ids"].shape[0] == 1  # all three trees in one row
    with torch.no_grad():
        shared = sequence_logprobs(model, batch).sequence_logps[where]
    torch.testing.assert_close(shared, _alone(model, [s for pair in pairs for s in pair]), rtol=1e-10, atol=1e-9)


def test_precomputed_pairwise_reference_equals_on_the_fly():
    model, tok, examples = _setup(n=10, dtype=torch.float32)
    seqs = flat_sequences(examples)
    shared = precompute_logps(model, seqs, tok.pad_token_id, 64, batch_size=6, progress=False, pairs=True)
    plain = precompute_logps(model, seqs, tok.pad_token_id, 64, batch_size=6, progress=False)
    alone = _alone(model, seqs)
    torch.testing.assert_close(shared, alone, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(shared, plain, rtol=1e-6, atol=1e-5)


def test_probe_accepts_sdpa_and_rejects_a_mask_the_model_misreads():
    model, _, _ = _setup(n=2, dtype=torch.float32)
    assert prefix_sharing_is_exact(model)[0]
    # Eager attention adds the mask to the scores: a boolean tree mask then means +1/0, not allowed/blocked.
    eager, _ = build_tiny_model(record_texts(arithmetic_pairs(n=2)), seed=0)
    eager.config._attn_implementation = "eager"
    exact, diff = probe_prefix_sharing(eager)
    assert not exact and diff > 1e-3
    assert not prefix_sharing_is_exact(eager)[0]


def test_training_with_shared_prefixes_equals_training_without(tmp_path):
    model, tok, examples = _setup(n=16, dtype=torch.float64)
    start = copy.deepcopy(model)
    attach_reference(examples, _alone(model, flat_sequences(examples)).float())
    histories = []
    for share in (False, True):
        cfg = DPOConfig(
            data="x", output=tmp_path / f"o{share}", max_steps=3, batch_size=4, max_length=64, progress=False, lr=1e-3
        )
        policy = copy.deepcopy(start)
        result = train(cfg, policy, DPOObjective(cfg, tok.pad_token_id, None, share_prefix=share), examples)
        histories.append((result.history, policy))
    (plain, plain_model), (shared, shared_model) = histories
    # Step 1 runs the same weights through both layouts: its loss agrees to float64 rounding.
    assert plain[0]["loss"] == pytest.approx(shared[0]["loss"], rel=1e-12)
    assert plain[0]["margins"] == pytest.approx(shared[0]["margins"], rel=1e-10, abs=1e-12)
    # Adam's first update is lr * g / (|g| + eps): for a weight whose gradient is near zero, rounding in
    # g moves it by a visible fraction of lr. The weights then agree to that amplified rounding (measured
    # up to 1.3e-6 on one CPU, 5e-8 on another), while the 3 steps moved them by ~lr per step; a wrong
    # mask or gradient in the shared layout would show as differences of order lr (1e-3).
    for a, b in zip(plain[1:], shared[1:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-7)
        assert a["margins"] == pytest.approx(b["margins"], rel=1e-5, abs=1e-7)
    assert plain[-1]["loss"] != pytest.approx(plain[0]["loss"], rel=1e-6)  # it did train
    moved = max(float((p - s).abs().max()) for p, s in zip(plain_model.parameters(), start.parameters()))
    assert moved > 1e-3
    for p, q in zip(plain_model.parameters(), shared_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=2e-5)
