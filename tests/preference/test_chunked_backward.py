"""Chunked forward/backward (``max_forward_tokens``): a split micro-batch trains exactly like the whole one."""

from __future__ import annotations

import copy

import pytest
import torch
from preference_data import arithmetic_pairs

from alignkit.data.records import record_texts
from alignkit.models import build_tiny_model
from alignkit.train.config import DPOConfig
from alignkit.train.dpo import DPOObjective, attach_reference, encode_pairs, flat_sequences
from alignkit.train.loop import collate_chunks, train, unit_order
from alignkit.train.reference import precompute_logps


def _setup(n=16):
    records = arithmetic_pairs(n=n)
    model, tok = build_tiny_model(record_texts(records), seed=0)
    model.to(torch.float64)
    examples, _ = encode_pairs(tok, records, 64, "chat")
    return model, tok, examples


@pytest.mark.parametrize("share", [False, True])
def test_collate_chunks_halves_until_each_chunk_fits(tmp_path, share):
    _, tok, examples = _setup()
    cfg = DPOConfig(data="x", output=tmp_path, batch_size=8, max_length=64)
    objective = DPOObjective(cfg, tok.pad_token_id, None, share_prefix=share)
    units = examples[:8]
    whole = objective.collate(units)
    limit = whole["input_ids"].numel() // 3  # forces at least two levels of halving
    chunks = collate_chunks(objective, units, limit)
    assert len(chunks) >= 4
    pairs = [int(c["chosen_index"].numel()) for c in chunks]
    assert sum(pairs) == len(units)
    for chunk, n in zip(chunks, pairs):
        assert chunk["input_ids"].numel() <= limit or n == 1
    # Same pairs, same order: the chunks' policy log-probs are the whole batch's.
    assert collate_chunks(objective, units, None)[0]["input_ids"].equal(whole["input_ids"])


def test_chunked_training_equals_unchunked(tmp_path):
    model, tok, examples = _setup()
    start = copy.deepcopy(model)
    attach_reference(examples, precompute_logps(model, flat_sequences(examples), tok.pad_token_id, 64, progress=False))
    runs = []
    for limit in (None, 100):
        cfg = DPOConfig(
            data="x",
            output=tmp_path / f"o{limit}",
            max_steps=3,
            batch_size=5,  # split 2 + (1 + 2): chunks must be weighed by their pairs, not equally
            max_length=64,
            progress=False,
            lr=1e-3,
            max_forward_tokens=limit,
        )
        objective = DPOObjective(cfg, tok.pad_token_id, None, share_prefix=True)
        if limit is not None:  # the limit really splits the first micro-batch
            first = [examples[i] for i in unit_order(len(examples), cfg.seed, 0, cfg.batch_size)]
            sizes = [int(c["chosen_index"].numel()) for c in collate_chunks(objective, first, limit)]
            assert len(sizes) > 1 and len(set(sizes)) > 1  # split, into chunks of unequal pair counts
        policy = copy.deepcopy(start)
        result = train(cfg, policy, objective, examples)
        runs.append((result.history, policy))
    (whole, whole_model), (chunked, chunked_model) = runs
    for a, b in zip(whole, chunked):
        # Gradients are float64 here; the logged loss is summed in float32 (the loop's loss_sum) and the
        # margins use the float32 reference log-probs, so those two agree to float32 rounding.
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-9)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["margins"] == pytest.approx(b["margins"], rel=1e-6, abs=1e-9)
    assert whole[-1]["loss"] != pytest.approx(whole[0]["loss"], rel=1e-6)  # it did train
    moved = max(float((p - s).detach().abs().max()) for p, s in zip(whole_model.parameters(), start.parameters()))
    assert moved > 1e-3
    for p, q in zip(whole_model.parameters(), chunked_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
