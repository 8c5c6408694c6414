"""The training loop and SFT: packing equivalence, exact resume, LoRA and full fine-tuning, saving."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignkit.data import collate, encode_example, pack_greedy, read_records
from alignkit.data.records import record_texts
from alignkit.data.splits import split_eval
from alignkit.models import build_tiny_model
from alignkit.train.config import SFTConfig
from alignkit.train.loop import TrainingDiverged, evaluate, latest_checkpoint, train
from alignkit.train.sft import SFTObjective, encode_all, make_units, run_sft

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "sft_sample.jsonl"


def _examples(tok, n=12):
    pairs = [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a in range(1, 4) for b in range(1, 5)][:n]
    return [encode_example(tok, p, c) for p, c in pairs]


def test_packed_batch_gives_same_loss_and_gradients_as_unpacked(tiny):
    model, tok = tiny
    model = copy.deepcopy(model)
    encoded = _examples(tok)
    objective = SFTObjective(tok.pad_token_id)
    rows = pack_greedy(encoded, max_length=64)
    assert len(rows) < len(encoded)  # something actually got packed
    packed = collate([[encoded[i] for i in row] for row in rows], tok.pad_token_id)
    unpacked = collate([[e] for e in encoded], tok.pad_token_id)

    loss_u, _ = objective.loss(model, unpacked)
    loss_u.backward()
    grads_u = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss_p, _ = objective.loss(model, packed)
    loss_p.backward()
    grads_p = [p.grad.clone() for p in model.parameters()]
    torch.testing.assert_close(loss_p, loss_u, rtol=1e-5, atol=1e-6)
    for gp, gu in zip(grads_p, grads_u):
        torch.testing.assert_close(gp, gu, rtol=1e-4, atol=1e-6)


def test_packing_does_not_leak_across_sequences(tiny):
    """Changing one packed neighbour must not change the other sequence's log-probs."""
    from alignkit.models import sequence_logprobs

    model, tok = tiny
    a = encode_example(tok, "What is 1 plus 2?", "1 plus 2 is 3.")
    b1 = encode_example(tok, "What colour is the sky?", "The sky is blue.")
    b2 = encode_example(tok, "one two three", "four five six seven")
    with torch.no_grad():
        lp1 = sequence_logprobs(model, collate([[b1, a]], tok.pad_token_id)).sequence_logps
        lp2 = sequence_logprobs(model, collate([[b2, a]], tok.pad_token_id)).sequence_logps
    torch.testing.assert_close(lp1[1], lp2[1], rtol=1e-5, atol=1e-5)


def _loop_config(tmp_path: Path, name: str, **overrides) -> SFTConfig:
    base = dict(
        model="tiny",
        data=SAMPLE,
        output=tmp_path / name,
        max_steps=8,
        batch_size=4,
        grad_accum=2,
        lr=3e-3,
        warmup_steps=2,
        save_every=4,
        progress=False,
        seed=3,
    )
    base.update(overrides)
    return SFTConfig(**base)


def _fresh(tok_texts):
    return build_tiny_model(tok_texts, seed=3)


class Crash(RuntimeError):
    pass


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path):
    records = read_records(SAMPLE).records
    texts = record_texts(records)
    model, tok = _fresh(texts)
    encoded, _ = encode_all(tok, records, 128, "chat")
    units = make_units(encoded, False, 128)
    objective = SFTObjective(tok.pad_token_id)

    full = train(_loop_config(tmp_path, "full"), model, objective, units)

    def crash_at_4(step, _metrics):
        if step == 4:
            raise Crash("simulated kill after step 4")

    interrupted_cfg = _loop_config(tmp_path, "interrupted")
    with pytest.raises(Crash):
        train(interrupted_cfg, _fresh(texts)[0], objective, units, on_step_end=crash_at_4)
    assert latest_checkpoint(interrupted_cfg.output).name == "step-0000004"
    # A brand-new process would rebuild everything from scratch: so do we.
    resumed = train(interrupted_cfg, _fresh(texts)[0], objective, units)
    assert resumed.resumed_from == 4
    full_losses = [h["loss"] for h in full.history[4:]]
    resumed_losses = [h["loss"] for h in resumed.history]
    assert resumed_losses == pytest.approx(full_losses, rel=1e-6, abs=1e-7)
    for p_full, p_res in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p_full, p_res)
    # metrics.jsonl reads as one clean run: steps 1..8 once each.
    steps = [json.loads(line)["step"] for line in (interrupted_cfg.output / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path):
    records = read_records(SAMPLE).records
    model, tok = _fresh(record_texts(records))
    encoded, _ = encode_all(tok, records, 128, "chat")
    inner = SFTObjective(tok.pad_token_id)

    class PoisonAfter2:
        calls = 0

        def collate(self, units):
            return inner.collate(units)

        def loss(self, model, batch):
            self.calls += 1
            loss, metrics = inner.loss(model, batch)
            return (loss * float("nan") if self.calls > 4 else loss), metrics

    cfg = _loop_config(tmp_path, "nan", save_every=2)
    with pytest.raises(TrainingDiverged, match="step 3.*step-0000002"):
        train(cfg, model, PoisonAfter2(), make_units(encoded, False, 128))
    assert latest_checkpoint(cfg.output).name == "step-0000002"


def _heldout_loss(model, tok, records) -> float:
    encoded, _ = encode_all(tok, records, 128, "chat")
    return evaluate(model, SFTObjective(tok.pad_token_id), make_units(encoded, False, 128), 16, torch.device("cpu"))["eval/loss"]


@pytest.mark.parametrize("lora", [False, True])
def test_sft_reduces_heldout_loss_and_saves_a_loadable_model(tmp_path, lora):
    cfg = SFTConfig(
        model="tiny",
        data=SAMPLE,
        output=tmp_path / "out",
        max_steps=60,
        batch_size=8,
        lr=5e-3 if not lora else 2e-2,
        eval_fraction=0.15,
        progress=False,
        lora=lora,
        lora_r=8,
        merge_lora=True,
        packing=not lora,
        seed=1,
        max_length=128,
    )
    records = read_records(SAMPLE).records
    _, held_out = split_eval(records, cfg.eval_fraction, cfg.seed)
    before_model, tok = build_tiny_model(record_texts(records), seed=cfg.seed)
    before = _heldout_loss(before_model, tok, held_out)

    out = run_sft(cfg)
    loaded = AutoModelForCausalLM.from_pretrained(out)
    after = _heldout_loss(loaded, tok, held_out)
    assert after < before - 0.5, (before, after)
    run = json.loads((out / "alignkit_run.json").read_text())
    assert run["data"]["eval_examples"] == len(held_out)
    if lora:  # only adapter weights were trained, yet the merged model is a plain transformers model
        assert not any("lora" in name for name, _ in loaded.named_parameters())


def test_too_long_examples_are_counted_not_lost(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": "word " * 100, "completion": "x"}] + [{"prompt": "hi", "completion": "hello there"}] * 5
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_sft(
        SFTConfig(model="tiny", data=path, output=tmp_path / "o", max_steps=2, max_length=32, progress=False, eval_fraction=0.0)
    )
    assert json.loads((out / "alignkit_run.json").read_text())["data"]["skipped_too_long"] == 1
