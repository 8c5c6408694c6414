"""LoRA chains: a run on an SFT adapter starts from (and refers to) the SFT model (issue #17)."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.data.batching import packed_batch
from alignkit.data.chat import encode_example
from alignkit.data.errors import DataError
from alignkit.models.loading import load_model
from alignkit.models.logprobs import sequence_logprobs
from alignkit.train.config import DPOConfig, SFTConfig
from alignkit.train.dpo import run_dpo
from alignkit.train.sft import run_sft

QA = [(f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(8)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def sft_adapter(families, tmp_path, monkeypatch):
    """A LoRA SFT adapter trained (hard) on a saved Qwen2 base, run from tmp_path with relative paths."""
    model, tokenizer = families["qwen2"]
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    write_jsonl(tmp_path / "sft.jsonl", [{"prompt": q, "completion": a} for q, a in QA])
    monkeypatch.chdir(tmp_path)
    out = run_sft(
        SFTConfig(
            data="sft.jsonl", output="sft", model="base", lora=True, lr=5e-2, max_steps=3, batch_size=4, eval_fraction=0.0,
            progress=False,
        )
    )  # fmt: skip
    return tmp_path / out


def logps(model, tokenizer):
    seqs = [encode_example(tokenizer, q, a, 64) for q, a in QA[:4]]
    batch, where = packed_batch(seqs, tokenizer.pad_token_id, 512, pack=False)
    with torch.no_grad():
        return sequence_logprobs(model.eval(), batch).sequence_logps[where]


def test_adapter_output_records_an_absolute_base_and_loads_from_anywhere(sft_adapter, tmp_path, monkeypatch):
    base = json.loads((sft_adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str((tmp_path / "base").resolve())
    monkeypatch.chdir(tmp_path.parent)  # another working directory
    merged, tokenizer = load_model(str(sft_adapter))
    plain, _ = load_model(str(tmp_path / "base"))
    assert (logps(merged, tokenizer) - logps(plain, tokenizer)).abs().max() > 1e-3  # the adapter is applied


def test_dpo_lora_on_an_sft_adapter_uses_it_as_reference(sft_adapter, tmp_path):
    pairs = [{"prompt": q, "chosen": a, "rejected": "I do not know."} for q, a in QA]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    out = run_dpo(
        DPOConfig(
            data=data, output=tmp_path / "dpo", model=str(sft_adapter), lora=True, max_steps=1, batch_size=4,
            eval_fraction=0.0, progress=False,
        )
    )  # fmt: skip
    (first,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    # A fresh adapter starts at zero: policy == reference exactly when the reference is the SFT model.
    assert abs(first["kl"]) < 1e-5
    assert first["loss"] == pytest.approx(0.693147, abs=1e-5)
    # The DPO adapter's base is the SFT adapter folder; loading resolves the chain.
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(sft_adapter.resolve())
    chained, tokenizer = load_model(str(out))
    sft, _ = load_model(str(sft_adapter))
    torch.testing.assert_close(logps(chained, tokenizer), logps(sft, tokenizer), atol=5e-2, rtol=0)


def test_missing_base_error_names_what_was_looked_for(sft_adapter, tmp_path):
    config = json.loads((sft_adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "../moved/base"
    (sft_adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(DataError) as err:
        load_model(str(sft_adapter))
    message = str(err.value)
    assert "base_model_name_or_path" in message and "../moved/base" in message and "looked for" in message
    assert "connect" not in message
