"""Packing is decided per model: packed rows where exact, padded rows otherwise (issue #17)."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alignkit.data.batching import packed_batch
from alignkit.data.chat import encode_example
from alignkit.models import packing
from alignkit.models.logprobs import sequence_logprobs
from alignkit.models.packing import decide_packing, packing_is_exact, probe_packing
from alignkit.models.reward import score_sequences
from alignkit.train.reference import precompute_logps

PAIRS = [
    ("What colour is the sky?", "The sky is blue."),
    ("Name a river.", "The Elsa, in Varnholt."),
    ("Count to five.", "one two three four five"),
    ("Help me?", "I can't help with that, but here is a safe alternative."),
]


def encoded(tokenizer):
    return [encode_example(tokenizer, p, c, 128) for p, c in PAIRS]


@torch.no_grad()
def alone_logps(model, tokenizer, sequences):
    """Each sequence in its own batch: the unambiguous reference."""
    out = []
    for s in sequences:
        batch, _ = packed_batch([s], tokenizer.pad_token_id, 512)
        out.append(float(sequence_logprobs(model.eval(), batch).sequence_logps[0]))
    return torch.tensor(out)


def test_probe_finds_the_families_whose_attention_ignores_position_ids(families):
    verdicts = {name: probe_packing(model)[0] for name, (model, _) in families.items()}
    assert verdicts == {"gpt2": True, "llama": True, "qwen2": True, "gemma2": True, "phi3": True, "opt": False}
    assert probe_packing(families["opt"][0])[1] > 1e-2  # a real leak, not rounding


def test_forced_packing_is_wrong_on_opt(families):
    """The trap: position-id packing on OPT lets a sequence attend to the one before it."""
    model, tokenizer = families["opt"]
    seqs = encoded(tokenizer)
    batch, where = packed_batch(seqs, tokenizer.pad_token_id, 512, pack=True)
    with torch.no_grad():
        packed = sequence_logprobs(model.eval(), batch).sequence_logps[where]
    assert (packed - alone_logps(model, tokenizer, seqs)).abs().max() > 1e-3


def test_automatic_layout_equals_unpacked(family):
    name, model, tokenizer = family
    seqs = encoded(tokenizer)
    batch, where = packed_batch(seqs, tokenizer.pad_token_id, 512, pack=decide_packing(model))
    assert (int(batch["input_ids"].shape[0]) < len(seqs)) == (name != "opt")  # packed rows where exact
    with torch.no_grad():
        auto = sequence_logprobs(model.eval(), batch).sequence_logps[where]
    torch.testing.assert_close(auto, alone_logps(model, tokenizer, seqs), atol=1e-4, rtol=1e-5)


def test_reference_precompute_equals_unpacked(family):
    """DPO/KTO reference log-probs (always packed before #17) match scoring each sequence alone."""
    _, model, tokenizer = family
    seqs = encoded(tokenizer)
    got = precompute_logps(model, seqs, tokenizer.pad_token_id, 512, batch_size=8, progress=False)
    torch.testing.assert_close(got, alone_logps(model, tokenizer, seqs), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", ["llama", "opt"])
def test_reward_scores_equal_unpacked(families, name):
    _, tokenizer = families[name]
    base = families[name][0]
    torch.manual_seed(0)
    config = copy.deepcopy(base.config)
    config.num_labels = 1
    rm = AutoModelForSequenceClassification.from_config(config).eval()
    seqs = encoded(tokenizer)
    together = score_sequences(rm, seqs, tokenizer.pad_token_id, 512, batch_size=8)
    alone = [score_sequences(rm, [s], tokenizer.pad_token_id, 512)[0] for s in seqs]
    assert together == pytest.approx(alone, abs=1e-4)


def test_decision_is_logged_once_and_cached(families, caplog):
    model, _ = families["opt"]
    assert packing_is_exact(model)[0] is False
    packing._LOGGED.clear()  # earlier tests may have logged it already
    with caplog.at_level(logging.INFO, logger="alignkit.models.packing"):
        decide_packing(model)
        decide_packing(model)
    lines = [r.getMessage() for r in caplog.records if "batching:" in r.getMessage()]
    assert len(lines) == 1 and all("padded rows" in line and "OPTForCausalLM" in line for line in lines)
    assert decide_packing(model, requested=False) is False


def test_dpo_on_opt_policy_and_reference_agree_at_step_one(families, tmp_path):
    """End to end: with padded rows, the policy's first-step log-probs equal the precomputed reference
    (so kl = 0, loss = log 2); packed, both were contaminated, each differently."""
    import json

    from alignkit.train.config import DPOConfig
    from alignkit.train.dpo import run_dpo

    model, tokenizer = families["opt"]
    model.save_pretrained(tmp_path / "opt")
    tokenizer.save_pretrained(tmp_path / "opt")
    rows = [{"prompt": p, "chosen": c, "rejected": "I do not know."} for p, c in PAIRS * 2]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_dpo(
        DPOConfig(data=data, output=tmp_path / "dpo", model=str(tmp_path / "opt"), max_steps=1, batch_size=4, eval_fraction=0.0,
                  progress=False)
    )  # fmt: skip
    (first,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert abs(first["kl"]) < 1e-5
    assert first["loss"] == pytest.approx(0.693147, abs=1e-5)
