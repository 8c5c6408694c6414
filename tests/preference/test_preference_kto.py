"""KTO: mismatched twins, loss equals kto_loss by hand, it learns from binary or pair data."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from preference_data import arithmetic_pairs, write_jsonl
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.data import collate
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models import build_tiny_model, sequence_logprobs
from alignkit.train.config import KTOConfig
from alignkit.train.dpo import encode_pairs
from alignkit.train.kto import KTOObjective, encode_binary, run_kto
from alignkit.train.reference import Reference


def _binary(rows):
    out = []
    for r in rows:
        out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return out


def _lp(model, seqs):
    with torch.no_grad():
        return torch.tensor([float(sequence_logprobs(model, collate([[s]], 0)).sequence_logps[0]) for s in seqs])


def test_twins_pair_each_completion_with_another_prompt():
    rows = _binary(arithmetic_pairs(n=5))
    _, tok = build_tiny_model(record_texts(rows), seed=0)
    examples, skipped = encode_binary(tok, rows, 64, "chat", seed=0)
    assert len(examples) == 10 and not skipped
    prompts_used, mismatched = [], 0
    for e in examples:
        start = e.sequence.loss_mask.index(True)
        completion = e.sequence.input_ids[start:]
        assert e.kl_sequence.input_ids[-len(completion) :] == completion  # own completion ...
        kl_prompt = e.kl_sequence.input_ids[: len(e.kl_sequence) - len(completion)]
        assert e.kl_sequence.loss_mask[len(kl_prompt) :] == e.sequence.loss_mask[start:]
        prompts_used.append(tuple(kl_prompt))
        mismatched += kl_prompt != e.sequence.input_ids[:start]
    # (each prompt appears twice in binary data, so a neighbour may share it now and then)
    assert mismatched >= 6
    # ... after another example's prompt: each prompt is borrowed exactly once (a cyclic shift).
    own = sorted(tuple(e.sequence.input_ids[: e.sequence.loss_mask.index(True)]) for e in examples)
    assert sorted(prompts_used) == own


def test_kto_batch_loss_equals_kto_loss_by_hand():
    from alignkit.train.losses import kto_loss

    rows = _binary(arithmetic_pairs(n=4))
    model, tok = build_tiny_model(record_texts(rows), seed=0)
    ref_model, _ = build_tiny_model(tokenizer=tok, seed=5)
    examples, _ = encode_binary(tok, rows, 64, "chat", seed=0)
    cfg = KTOConfig(data="x", output="y", beta=0.5, desirable_weight=1.0, undesirable_weight=1.5, max_length=64)
    objective = KTOObjective(cfg, tok.pad_token_id, Reference("copy", ref_model))
    loss, _ = objective.loss(model, objective.collate(examples))
    labels = torch.tensor([e.label for e in examples])
    expected, _ = kto_loss(
        _lp(model, [e.sequence for e in examples]),
        _lp(ref_model, [e.sequence for e in examples]),
        labels,
        _lp(model, [e.kl_sequence for e in examples]),
        _lp(ref_model, [e.kl_sequence for e in examples]),
        beta=0.5,
        desirable_weight=1.0,
        undesirable_weight=1.5,
    )
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)


def _heldout_margin(model, tok, records):
    examples, _ = encode_pairs(tok, records, 64, "chat")
    c, r = _lp(model, [e.chosen for e in examples]), _lp(model, [e.rejected for e in examples])
    return float((c - r).mean()), float((c > r).float().mean())


@pytest.mark.parametrize("as_pairs", [False, True])
def test_kto_raises_heldout_preference(tmp_path, as_pairs):
    pairs = arithmetic_pairs()
    train_pairs, held_out = split_eval(pairs, 0.2, 0)
    data = write_jsonl(tmp_path / "d.jsonl", train_pairs if as_pairs else _binary(train_pairs))
    cfg = KTOConfig(
        data=data,
        output=tmp_path / "o",
        max_steps=30,
        batch_size=8,
        lr=2e-3,
        beta=0.1,
        eval_fraction=0.1,
        progress=False,
        max_length=64,
        seed=0,
    )
    out = run_kto(cfg)
    tok = AutoTokenizer.from_pretrained(out)
    before, _ = build_tiny_model(tokenizer=tok, seed=0)  # the run's starting weights (same tokenizer, same seed)
    margin_before, acc_before = _heldout_margin(before, tok, held_out)
    margin_after, acc_after = _heldout_margin(AutoModelForCausalLM.from_pretrained(out), tok, held_out)
    assert margin_after > margin_before + 2.0, (margin_before, margin_after)
    assert acc_after >= 0.9 > acc_before, (acc_before, acc_after)
    run = json.loads((out / "alignkit_run.json").read_text())
    assert run["data"]["desirable"] + run["data"]["undesirable"] == run["data"]["train_examples"]
    assert run["reference"] == {"kind": "precomputed", "cache_reused": False}


def test_kto_precomputed_and_copy_references_give_same_first_step(tmp_path):
    from alignkit.train.kto import attach_reference, flat_sequences
    from alignkit.train.loop import train
    from alignkit.train.reference import precompute_logps

    rows = _binary(arithmetic_pairs(n=8))
    model, tok = build_tiny_model(record_texts(rows), seed=0)
    examples, _ = encode_binary(tok, rows, 64, "chat", seed=0)
    cfg = KTOConfig(data="x", output=tmp_path / "a", max_steps=1, batch_size=8, progress=False, max_length=64)
    live = train(cfg, copy.deepcopy(model), KTOObjective(cfg, tok.pad_token_id, Reference("copy", model)), examples)
    pre_examples = copy.deepcopy(examples)
    attach_reference(pre_examples, precompute_logps(model, flat_sequences(pre_examples), tok.pad_token_id, 64, progress=False))
    cfg2 = cfg.model_copy(update={"output": tmp_path / "b"})
    pre = train(cfg2, copy.deepcopy(model), KTOObjective(cfg2, tok.pad_token_id, None), pre_examples)
    assert pre.history[0]["loss"] == pytest.approx(live.history[0]["loss"], rel=1e-5)
    assert live.history[0]["loss"] == pytest.approx(0.5, rel=1e-5)  # policy == reference: 1 - sigmoid(0) for every example
