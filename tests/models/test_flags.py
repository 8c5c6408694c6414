"""--gradient-checkpointing, --attn-implementation and --dtype on the trainers (issue #17)."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.models.loading import load_model
from alignkit.train.config import DPOConfig, GRPOConfig, KTOConfig, PPOConfig, RewardConfig, SFTConfig


@pytest.mark.parametrize("config_cls", [SFTConfig, RewardConfig, DPOConfig, KTOConfig, PPOConfig, GRPOConfig])
def test_every_trainer_has_the_flags(config_cls, tmp_path):
    config = config_cls(
        data=tmp_path / "d.jsonl", output=tmp_path / "o", gradient_checkpointing=True, attn_implementation="eager",
        dtype="bfloat16", mixed_precision="bf16",
    )  # fmt: skip
    assert (config.gradient_checkpointing, config.attn_implementation, config.dtype) == (True, "eager", "bfloat16")
    with pytest.raises(ValueError):
        config_cls(data=tmp_path / "d.jsonl", output=tmp_path / "o", dtype="float8")


def test_load_model_honours_dtype_and_attention(tmp_path):
    model, _ = load_model("tiny", dtype="bfloat16", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


def test_gradient_checkpointing_gives_the_same_step(tmp_path):
    from alignkit.train.sft import run_sft

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}?", "completion": "answer " * (1 + i)}) + "\n" for i in range(8)))
    common = dict(data=data, max_steps=2, batch_size=4, eval_fraction=0.0, progress=False, max_grad_norm=1e9)
    plain = run_sft(SFTConfig(output=tmp_path / "plain", **common))
    checkpointed = run_sft(SFTConfig(output=tmp_path / "gc", gradient_checkpointing=True, **common))
    a, b = ([json.loads(line) for line in (o / "metrics.jsonl").read_text().splitlines()] for o in (plain, checkpointed))
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)


def test_gradient_checkpointing_is_switched_on_also_under_lora():
    from alignkit.models.config import LoraSettings
    from alignkit.models.loading import apply_lora, enable_gradient_checkpointing

    model, _ = load_model("tiny")
    lora = apply_lora(model, LoraSettings())
    enable_gradient_checkpointing(lora)
    assert model.is_gradient_checkpointing
    lora.train()
    ids = torch.randint(5, 100, (2, 12))
    lora(input_ids=ids, labels=ids).loss.backward()  # frozen embeddings: non-reentrant checkpointing still backprops
    assert all(p.grad is not None for n, p in lora.named_parameters() if p.requires_grad)
