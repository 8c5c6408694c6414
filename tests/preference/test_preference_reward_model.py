"""Reward model: learns an easy preference, saves/loads, keeps rankings together, reads the right token."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from preference_data import arithmetic_pairs
from transformers import AutoModelForSequenceClassification

from alignkit.data import collate, encode_example
from alignkit.data.records import record_texts
from alignkit.models.loading import load_reward_model
from alignkit.models.reward import RewardScorer, sequence_rewards
from alignkit.train.config import RewardConfig
from alignkit.train.reward_model import (
    RewardObjective,
    build_groups,
    orient,
    split_pairs,
)


def test_reward_model_learns_easy_task_saves_and_loads(tmp_path, pairs_file):
    from alignkit.train.reward_model import run_reward_model

    cfg = RewardConfig(
        data=pairs_file,
        output=tmp_path / "rm",
        max_steps=40,
        batch_size=8,
        lr=3e-3,
        eval_fraction=0.2,
        progress=False,
        max_length=64,
        seed=0,
    )
    out = run_reward_model(cfg)
    run = json.loads((out / "alignkit_run.json").read_text())
    acc = run["eval_accuracy"]
    assert acc["accuracy"] >= 0.9, acc
    assert {"accuracy/category=small", "accuracy/category=large"} <= set(acc)  # per-category breakdown
    assert acc["comparisons"] == run["data"]["eval_pairs"] > 0

    # Loads as a plain transformers classifier, and RewardScorer agrees with the held-out labels.
    loaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert loaded.config.num_labels == 1
    _, held_out = split_pairs(arithmetic_pairs(), cfg.eval_fraction, cfg.seed)
    scorer = RewardScorer(out)
    chosen = scorer.score([r["prompt"] for r in held_out], [r["chosen"] for r in held_out])
    rejected = scorer.score([r["prompt"] for r in held_out], [r["rejected"] for r in held_out])
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(held_out) == pytest.approx(acc["accuracy"])

    # reward_stats.json is the mean/std over the held-out responses; normalising uses exactly it.
    stats = json.loads((out / "reward_stats.json").read_text())
    assert stats["mean"] == pytest.approx(statistics.mean(chosen + rejected), abs=1e-4)
    assert stats["std"] == pytest.approx(statistics.stdev(chosen + rejected), rel=1e-3)
    normed = RewardScorer(out, normalize=True).score([held_out[0]["prompt"]], [held_out[0]["chosen"]])
    assert normed[0] == pytest.approx((chosen[0] - stats["mean"]) / stats["std"], rel=1e-4)


def test_reward_is_read_at_last_real_token_packed_or_not_even_when_pad_is_eos():
    records = arithmetic_pairs(n=6)
    model, tok = load_reward_model("tiny", tiny_texts=record_texts(records), seed=1)
    model.config.pad_token_id = tok.eos_token_id  # the classic trap: the pad token also ends sequences
    seqs = [encode_example(tok, r["prompt"], r["chosen"], template="raw") for r in records]
    assert all(s.input_ids[-1] == tok.eos_token_id for s in seqs)
    with torch.no_grad():
        one_by_one = torch.cat([sequence_rewards(model, collate([[s]], tok.eos_token_id)) for s in seqs])
        packed = sequence_rewards(model, collate([seqs[:3], seqs[3:]], tok.eos_token_id))
        # Independent check: the full per-token head output, read at each sequence's last position.
        hidden = model.model(input_ids=collate([[seqs[0]]], 0)["input_ids"]).last_hidden_state
        by_hand = model.score(hidden)[0, len(seqs[0]) - 1, 0]
    torch.testing.assert_close(packed, one_by_one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one_by_one[0], by_hand, rtol=1e-4, atol=1e-5)


def test_ranking_pairs_stay_in_one_unit_and_one_batch():
    from alignkit.data.conversions import rankings_to_pairs

    rankings = [{"prompt": f"Say {i}", "completions": [f"answer {i}{j}" for j in range(4)]} for i in range(5)]
    pairs = rankings_to_pairs(rankings) + arithmetic_pairs(n=3)
    model, tok = load_reward_model("tiny", tiny_texts=record_texts(pairs), seed=0)
    groups = build_groups(tok, pairs, 64, "chat")
    assert len(groups) == 5 + 3
    for g in groups[:5]:  # a ranking of 4: 4 responses scored once, 4*3/2 = 6 comparisons
        assert len(g.sequences) == 4 and len(g.comparisons) == 6
        assert len({r["ranking_id"] for r in g.records}) == 1
    objective = RewardObjective(tok.pad_token_id, 64)
    batch = objective.collate(groups[:2])
    assert batch["chosen_index"].numel() == 12 and int(batch["num_sequences"]) == 8
    # Held-out splits take whole rankings only.
    train_pairs, eval_pairs = split_pairs(pairs, 0.4, seed=0)
    ids_train = {p.get("ranking_id") for p in train_pairs} - {None}
    ids_eval = {p.get("ranking_id") for p in eval_pairs} - {None}
    assert not ids_train & ids_eval and ids_eval


def test_criterion_orientation():
    pair = {"prompt": "p", "chosen": "a", "rejected": "b", "criteria": {"helpful": "chosen", "harmless": -1, "honest": "tie"}}
    assert orient(pair, "helpful", None)["chosen"] == "a"
    assert orient(pair, "harmless", None)["chosen"] == "b"
    assert orient(pair, "honest", None) is None
    # weighted: helpful +1*1, harmless -1*2 -> -1: rejected wins overall
    assert orient(pair, None, {"helpful": 1, "harmless": 2})["chosen"] == "b"
    assert orient(pair, None, {"helpful": 3, "harmless": 2})["chosen"] == "a"
    assert orient({**pair, "criteria": None, "criterion": "honest"}, "honest", None)["chosen"] == "a"
    assert RewardConfig(data="x", output="y", criterion_weights="helpful=1, harmless=2.5").criterion_weights == {
        "helpful": 1.0,
        "harmless": 2.5,
    }


def test_reward_model_lora_trains_head_and_saves_plain_classifier(tmp_path, pairs_file):
    from alignkit.train.reward_model import run_reward_model

    cfg = RewardConfig(
        data=pairs_file,
        output=tmp_path / "rm",
        max_steps=3,
        batch_size=4,
        lr=1e-3,
        progress=False,
        max_length=64,
        lora=True,
        lora_r=4,
    )
    out = run_reward_model(cfg)
    loaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert not any("lora" in n for n, _ in loaded.named_parameters())
    assert json.loads((out / "alignkit_run.json").read_text())["final"]["loss"] > 0


def test_batch_loss_is_reward_model_loss_of_per_sequence_rewards_with_margins():
    from alignkit.train.losses import reward_model_loss

    records = [{**r, "margin": float(i % 3)} for i, r in enumerate(arithmetic_pairs(n=6))]
    model, tok = load_reward_model("tiny", tiny_texts=record_texts(records), seed=2)
    groups = build_groups(tok, records, 64, "chat", margin_field="margin")
    objective = RewardObjective(tok.pad_token_id, 64, center_coef=0.05, use_margin=True)
    loss, metrics = objective.loss(model, objective.collate(groups))
    with torch.no_grad():
        alone = [[float(sequence_rewards(model, collate([[s]], tok.pad_token_id))[0]) for s in g.sequences] for g in groups]
    chosen = torch.tensor([a[0] for a in alone])
    rejected = torch.tensor([a[1] for a in alone])
    expected, _ = reward_model_loss(chosen, rejected, margin=torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]), center_coef=0.05)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-4)
    assert metrics["accuracy"] == pytest.approx(float((chosen > rejected).float().mean()))
