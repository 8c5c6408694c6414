"""DPO: the loop's loss is dpo_loss on sequence_logprobs, reference sources agree, it learns, resumes."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from preference_data import arithmetic_pairs, write_jsonl
from transformers import AutoModelForCausalLM

from alignkit.data import collate
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models import apply_lora, build_tiny_model, sequence_logprobs
from alignkit.models.config import LoraSettings
from alignkit.train import preference as preference_module  # the DPO/KTO recipe calls the loop there
from alignkit.train.config import DPOConfig
from alignkit.train.dpo import DPOObjective, encode_pairs, flat_sequences, run_dpo
from alignkit.train.loop import latest_checkpoint, train, unit_order
from alignkit.train.reference import Reference, precompute_logps


def _setup(n=16, seed=0):
    records = arithmetic_pairs(n=n)
    model, tok = build_tiny_model(record_texts(records), seed=seed)
    examples, _ = encode_pairs(tok, records, 64, "chat")
    return model, tok, examples


def _one_by_one(model, examples):
    """Per-pair (chosen, rejected) log-probs, each sequence alone in its own batch (no packing)."""
    with torch.no_grad():
        out = [
            [float(sequence_logprobs(model, collate([[s]], 0)).sequence_logps[0]) for s in (e.chosen, e.rejected)]
            for e in examples
        ]
    return torch.tensor(out)


def test_one_training_step_loss_is_dpo_loss_of_sequence_logprobs(tmp_path):
    from alignkit.train.losses import dpo_loss

    model, tok, examples = _setup()
    start = copy.deepcopy(model)
    cfg = DPOConfig(
        data="unused.jsonl",
        output=tmp_path / "o",
        max_steps=1,
        batch_size=4,
        beta=0.2,
        progress=False,
        max_length=64,
        reference="copy",
        loss="sigmoid",
    )
    result = train(cfg, model, DPOObjective(cfg, tok.pad_token_id, Reference("copy", start)), examples)

    # By hand: the first batch is unit_order(...)[:4]; policy == reference == the starting weights at step 1.
    first = [examples[i] for i in unit_order(len(examples), cfg.seed, 0, cfg.batch_size)]
    lp = _one_by_one(start, first)
    expected, _ = dpo_loss(lp[:, 0], lp[:, 1], lp[:, 0], lp[:, 1], beta=0.2, loss_type="sigmoid")
    assert result.history[0]["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert result.history[0]["loss"] == pytest.approx(0.6931472, rel=1e-4)  # log 2: policy == reference
    assert result.history[0]["logps/chosen"] == pytest.approx(float(lp[:, 0].mean()), rel=1e-4)
    for key in ("rewards/chosen", "rewards/rejected", "margins", "accuracy", "logps/rejected", "kl", "grad_norm", "tokens_per_s"):
        assert key in result.history[0]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust"])
def test_packed_batch_loss_matches_hand_computation_with_different_reference(loss_type):
    from alignkit.train.losses import dpo_loss

    model, tok, examples = _setup(n=6)
    ref_model, _ = build_tiny_model(tokenizer=tok, seed=7)  # a reference that differs from the policy
    cfg = DPOConfig(
        data="x", output="y", beta=0.3, loss=loss_type, label_smoothing=0.1 if loss_type == "robust" else 0.0, max_length=64
    )
    objective = DPOObjective(cfg, tok.pad_token_id, Reference("copy", ref_model))
    batch = objective.collate(examples)
    assert batch["input_ids"].shape[0] < 2 * len(examples)  # chosen and rejected were packed into shared rows
    loss, _ = objective.loss(model, batch)
    pol, ref = _one_by_one(model, examples), _one_by_one(ref_model, examples)
    lengths = torch.tensor([[sum(s.loss_mask[1:]) for s in (e.chosen, e.rejected)] for e in examples])
    expected, _ = dpo_loss(
        pol[:, 0],
        pol[:, 1],
        ref[:, 0],
        ref[:, 1],
        beta=0.3,
        loss_type=loss_type,
        label_smoothing=cfg.label_smoothing,
        chosen_lengths=lengths[:, 0],
        rejected_lengths=lengths[:, 1],
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)


def test_precomputed_reference_equals_live_copy():
    model, tok, examples = _setup(n=10)
    seqs = flat_sequences(examples)
    pre = precompute_logps(model, seqs, tok.pad_token_id, 64, batch_size=6, progress=False)
    live = _one_by_one(Reference("copy", model).model, examples).view(-1)
    torch.testing.assert_close(pre, live, rtol=1e-5, atol=1e-5)


def test_adapter_disabled_reference_equals_base_model():
    model, tok, examples = _setup(n=6)
    base = copy.deepcopy(model)
    peft_model = apply_lora(model, LoraSettings(r=4))
    with torch.no_grad():  # make the adapter do something, as after some training
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    batch = DPOObjective(DPOConfig(data="x", output="y", max_length=64), tok.pad_token_id, None).collate(examples)
    ref = Reference("adapter").sequence_logps(peft_model, batch)
    with torch.no_grad():
        base_lp = sequence_logprobs(base, batch).sequence_logps
        policy_lp = sequence_logprobs(peft_model, batch).sequence_logps
    torch.testing.assert_close(ref, base_lp, rtol=1e-5, atol=1e-5)
    assert (policy_lp - base_lp).abs().max() > 1e-2  # the adapter is really on outside the context


def _heldout_margin(model, tok, records):
    examples, _ = encode_pairs(tok, records, 64, "chat")
    lp = _one_by_one(model, examples)
    return float((lp[:, 0] - lp[:, 1]).mean()), float((lp[:, 0] > lp[:, 1]).float().mean())


@pytest.mark.parametrize("lora", [False, True])
def test_dpo_raises_heldout_margin_and_accuracy(tmp_path, lora):
    rows = arithmetic_pairs()
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = DPOConfig(
        data=data,
        output=tmp_path / "o",
        max_steps=30,
        batch_size=8,
        lr=2e-3 if not lora else 1e-2,
        beta=0.1,
        eval_fraction=0.2,
        progress=False,
        max_length=64,
        lora=lora,
        lora_r=8,
        merge_lora=True,
        seed=0,
    )
    _, held_out = split_eval(rows, cfg.eval_fraction, cfg.seed)
    before_model, tok = build_tiny_model(record_texts(rows), seed=cfg.seed)
    margin_before, acc_before = _heldout_margin(before_model, tok, held_out)
    out = run_dpo(cfg)
    margin_after, acc_after = _heldout_margin(AutoModelForCausalLM.from_pretrained(out), tok, held_out)
    assert margin_after > margin_before + 2.0, (margin_before, margin_after)
    assert acc_after >= 0.9 and acc_after > acc_before, (acc_before, acc_after)
    run = json.loads((out / "alignkit_run.json").read_text())
    assert run["reference"]["kind"] == ("adapter" if lora else "precomputed")
    assert run["eval"]["eval/accuracy"] >= 0.9


def test_bad_records_are_counted_and_skipped_before_training(tmp_path):
    rows = arithmetic_pairs(n=10)
    bad = [
        {"prompt": "What is 1 plus 1?", "chosen": "", "rejected": "3"},  # empty chosen
        {"prompt": "What is 1 plus 1?", "chosen": "2", "rejected": "2"},  # identical
        {"prompt": "word " * 200, "chosen": "2", "rejected": "3"},  # prompt too long
        {"prompt": "What is 1 plus 1?", "chosen": "2"},  # no rejected
        {"prompt": "What is 1 plus 1?", "chosen": "2", "rejected": "two", "tie": True},  # a tie: no preference
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows[:5] + bad + rows[5:])
    out = run_dpo(
        DPOConfig(
            data=data,
            output=tmp_path / "o",
            max_steps=2,
            batch_size=4,
            progress=False,
            max_length=48,
            eval_fraction=0.0,
            on_bad_record="skip",  # the default stops at the first bad record (below)
        )
    )
    report = json.loads((out / "alignkit_run.json").read_text())["data"]
    assert report["skipped"] == {"empty": 1, "identical": 1, "prompt_too_long": 1, "invalid": 1, "tie": 1}
    assert report["train_pairs"] == 10
    with pytest.raises(Exception, match=r"line 6|:6:"):  # by default a bad record stops the load, naming the line
        run_dpo(DPOConfig(data=data, output=tmp_path / "o2", max_steps=2, progress=False))


class Crash(RuntimeError):
    pass


def test_killed_dpo_run_resumes_and_reuses_reference_cache(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs(n=24))

    def cfg(name):
        return DPOConfig(
            data=data,
            output=tmp_path / name,
            max_steps=6,
            batch_size=4,
            lr=1e-3,
            save_every=3,
            progress=False,
            max_length=64,
            eval_fraction=0.0,
            seed=2,
        )

    full = run_dpo(cfg("full"))

    real_train = preference_module.train

    def crashing_train(*args, **kwargs):
        def crash(step, _metrics):
            if step == 3:
                raise Crash("simulated kill after step 3")

        return real_train(*args, **kwargs, on_step_end=crash)

    monkeypatch.setattr(preference_module, "train", crashing_train)
    with pytest.raises(Crash):
        run_dpo(cfg("killed"))
    monkeypatch.setattr(preference_module, "train", real_train)
    assert latest_checkpoint(tmp_path / "killed").name == "step-0000003"
    cache_mtime = (tmp_path / "killed" / "reference_logps.pt").stat().st_mtime_ns
    resumed = run_dpo(cfg("killed"))
    run = json.loads((resumed / "alignkit_run.json").read_text())
    assert run["reference"]["cache_reused"] is True
    assert (tmp_path / "killed" / "reference_logps.pt").stat().st_mtime_ns == cache_mtime
    a = AutoModelForCausalLM.from_pretrained(full)
    b = AutoModelForCausalLM.from_pretrained(resumed)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)

    def losses(p):
        return [json.loads(line)["loss"] for line in (p / "metrics.jsonl").read_text().splitlines()]

    assert losses(resumed) == pytest.approx(losses(full), rel=1e-6)


def test_cache_is_recomputed_when_data_changes(tmp_path):
    rows = arithmetic_pairs(n=12)
    kw = dict(output=tmp_path / "o", max_steps=1, batch_size=4, progress=False, max_length=64, eval_fraction=0.0, resume=False)
    run_dpo(DPOConfig(data=write_jsonl(tmp_path / "a.jsonl", rows), **kw))
    out = run_dpo(DPOConfig(data=write_jsonl(tmp_path / "b.jsonl", rows[:-1]), **kw))
    assert json.loads((out / "alignkit_run.json").read_text())["reference"]["cache_reused"] is False


def test_nll_term_is_mean_nll_over_chosen_tokens_only():
    model, tok, examples = _setup(n=4)
    cfg = DPOConfig(data="x", output="y", beta=0.1, nll_coef=0.5, max_length=64)
    objective = DPOObjective(cfg, tok.pad_token_id, Reference("copy", model))
    loss, metrics = objective.loss(model, objective.collate(examples))
    with torch.no_grad():
        per_seq = [sequence_logprobs(model, collate([[e.chosen]], 0)) for e in examples]
    # mean NLL per chosen target token, pooled over the batch (rejected tokens excluded)
    nll = -sum(float(lp.sequence_logps[0]) for lp in per_seq) / sum(int(lp.lengths[0]) for lp in per_seq)
    assert metrics["nll"] == pytest.approx(nll, rel=1e-5)
    # policy == reference, so the DPO part is log 2
    assert float(loss.detach()) == pytest.approx(0.6931472 + 0.5 * nll, rel=1e-5)
