"""Every dataset shape trained through the CLI (tiny model, one step), `alignkit data inspect`, and the engine exports.

One optimizer step is enough here: the question is whether each shape reaches the trainers as
the right text (shape tests in test_formats.py check the text itself); the losses are tested elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from data_shapes import (
    GEMMA_LIKE,
    QWEN3_LIKE,
    explicit_standard,
    hh_rlhf,
    implicit_conversational,
    implicit_standard,
    multi_turn_conversations,
    system_conversations,
    text_rows,
    ultrafeedback_binarized,
    ultrafeedback_fine_grained,
    write_jsonl,
)
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.data.records import record_texts

STEP = ["--max-steps", "1", "--batch-size", "4", "--max-length", "96", "--no-progress"]


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _train(command: str, data: Path, out: Path, *extra: str) -> dict:
    _run(command, "--data", str(data), "--output", str(out), *STEP, *extra)
    run = json.loads((out / "alignkit_run.json").read_text())
    assert run["final"]["step"] == 1
    return run


def _sections(inspect_output: str) -> list[str]:
    return inspect_output.split("\n--- ")[1:]


def test_ultrafeedback_binarized_renders_one_user_turn_and_trains_dpo(tmp_path):
    data = write_jsonl(tmp_path / "ufb.jsonl", ultrafeedback_binarized(8))
    shown = _run("data", "inspect", str(data))
    assert "prompt-repeated conversations" in shown and "kind:   pair (8 valid row(s), 0 bad)" in shown
    chosen, rejected = _sections(shown)
    for side in (chosen, rejected):
        assert side.count("<|user|>") == 1 and side.count("What is 1 plus 1?") == 1  # the prompt once, not twice
    assert "⟦1 plus 1 is 2. Happy to help!<|end|>" in chosen and "⟦Go away. It is 3.<|end|>" in rejected
    run = _train("dpo", data, tmp_path / "dpo")
    assert run["data"]["pairs_read"] == 8 and run["data"]["skipped"] == {}


def test_hh_rlhf_raw_trains_a_reward_model_on_multi_turn_conversations(tmp_path):
    data = write_jsonl(tmp_path / "hh.jsonl", hh_rlhf(8))
    shown = _run("data", "inspect", str(data))
    assert "HH-RLHF raw" in shown
    chosen = _sections(shown)[0]
    # two user turns and the first assistant turn as context; only the final reply is a target
    assert chosen.count("<|user|>") == 2 and "<|assistant|>\nYes, ask me one.<|end|>" in chosen
    assert chosen.count("⟦") == 1 and "⟦1 plus 1 is 2. Happy to help!<|end|>" in chosen
    run = _train("rm", data, tmp_path / "rm")
    assert run["data"]["train_pairs"] + run["data"]["eval_pairs"] == 8


@pytest.mark.parametrize("command", ["dpo", "rm"])
def test_implicit_prompt_strings_train_dpo_and_rm(tmp_path, command):
    data = write_jsonl(tmp_path / "implicit.jsonl", implicit_standard(8))
    run = _train(command, data, tmp_path / command)
    assert run["data"]["skipped"] == {}


def test_implicit_prompt_conversations_train_kto_and_show_their_prompt(tmp_path):
    data = write_jsonl(tmp_path / "conv.jsonl", implicit_conversational(8))
    shown = _run("data", "inspect", str(data))
    assert "conversational preference, implicit prompt" in shown
    assert "<|user|>\nWhat is 1 plus 1?<|end|>\n<|assistant|>\n⟦" in shown
    _train("kto", data, tmp_path / "kto")


def test_dataset_dict_folder_trains_on_train_and_evaluates_on_test(tmp_path):
    folder = tmp_path / "dd"
    rows = explicit_standard(12)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:8]), "test": datasets.Dataset.from_list(rows[8:])}
    ).save_to_disk(str(folder))
    run = _train("dpo", folder, tmp_path / "dpo")
    assert run["config"]["eval_data"] == str(folder / "test")
    assert (run["data"]["pairs_read"], run["data"]["train_pairs"], run["data"]["eval_pairs"]) == (12, 8, 4)  # read = both splits


def test_ultrafeedback_fine_grained_trains_a_reward_model(tmp_path):
    data = write_jsonl(tmp_path / "uf.jsonl", ultrafeedback_fine_grained(4))
    shown = _run("data", "inspect", str(data))
    assert "UltraFeedback" in shown and "kind:   ranking" in shown
    run = _train("rm", data, tmp_path / "rm")
    assert run["data"]["train_pairs"] + run["data"]["eval_pairs"] == 4 * 3  # 3 completions: 3 pairs each


def test_text_rows_train_sft_on_the_whole_text(tmp_path):
    data = write_jsonl(tmp_path / "text.jsonl", text_rows(8))
    shown = _run("data", "inspect", str(data))
    assert "standard language modeling (text)" in shown and "<|bos|>⟦What is 1 plus 1? 1 plus 1 is 2." in shown
    _train("sft", data, tmp_path / "sft")


def _model_with_template(folder: Path, template: str, rows: list[dict]) -> Path:
    from alignkit.models.tiny import build_tiny_model

    model, tokenizer = build_tiny_model(record_texts(rows), seed=0)
    tokenizer.chat_template = template
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_gemma_style_template_trains_sft_with_a_system_message(tmp_path, caplog):
    rows = system_conversations(8)
    model = _model_with_template(tmp_path / "gemma", GEMMA_LIKE, rows)
    data = write_jsonl(tmp_path / "sys.jsonl", rows)
    shown = _run("data", "inspect", str(data), "--model", str(model))
    assert "<start_of_turn>user\nAnswer in one sentence.\n\nWhat is 1 plus 1?<end_of_turn>" in shown
    _train("sft", data, tmp_path / "sft", "--model", str(model))


def test_qwen3_style_template_trains_sft_on_multi_turn_conversations(tmp_path):
    rows = multi_turn_conversations(8)
    model = _model_with_template(tmp_path / "qwen3", QWEN3_LIKE, rows)
    data = write_jsonl(tmp_path / "multi.jsonl", rows)
    shown = _run("data", "inspect", str(data), "--model", str(model))
    assert "⟦<think>\n\n</think>\n\n1 plus 1 is 2. Happy to help!<|im_end|>\n⟧" in shown
    assert "<|im_start|>assistant\nYes, ask me one.<|im_end|>" in shown  # history turn: context, no think block
    # the tiny tokenizer spells <|im_start|> etc. in bytes, so these sequences need more room
    _train("sft", data, tmp_path / "sft", "--model", str(model), "--max-length", "320")


# --------------------------------------------------------------------------- exports for verl and OpenRLHF


def test_verl_export_has_the_columns_verl_reads(tmp_path):
    rows = [{"prompt": r["prompt"], "ground_truth": r["prompt"].split()[2]} for r in explicit_standard(4)]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    shown = _run("data", "inspect", str(data), "--index", "1")
    assert "standard prompt-only" in shown and shown.endswith(
        "<|user|>\nWhat is 1 plus 2?<|end|>\n<|assistant|>\n\n"
    )  # + echo's newline
    out = tmp_path / "train.parquet"
    _run("data", "export", str(data), "--to", "verl", "--output", str(out), "--data-source", "arith")
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert {"prompt", "data_source", "ability", "reward_model", "extra_info"} <= set(ds.column_names)
    first = ds[0]
    assert first["prompt"] == [{"role": "user", "content": "What is 1 plus 1?"}]
    assert first["reward_model"] == {"style": "rule", "ground_truth": "1"}
    assert first["data_source"] == "arith" and first["extra_info"]["index"] == 0
    # a pair file exports each prompt once, with a model-scored reward (no ground truth)
    pairs_out = tmp_path / "pairs.parquet"
    _run("data", "export", str(write_jsonl(tmp_path / "hh.jsonl", hh_rlhf(3))), "--to", "verl", "--output", str(pairs_out))
    hh = datasets.load_dataset("parquet", data_files=str(pairs_out), split="train")
    assert len(hh) == 3 and [m["role"] for m in hh[0]["prompt"]] == ["user", "assistant", "user"]
    assert hh[0]["reward_model"]["style"] == "model"


def test_openrlhf_exports_use_its_default_keys(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is 1 plus 1?", "answer": "2"}])
    out = tmp_path / "p_openrlhf.jsonl"
    printed = _run("data", "export", str(prompts), "--to", "openrlhf", "--output", str(out))
    assert "--input_key input --label_key label" in printed
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds[0]["input"] == [{"role": "user", "content": "What is 1 plus 1?"}] and ds[0]["label"] == "2"
    pairs_out = tmp_path / "pairs_openrlhf.jsonl"
    _run("data", "export", str(write_jsonl(tmp_path / "ufb.jsonl", ultrafeedback_binarized(3))), "--to", "openrlhf",
         "--output", str(pairs_out))  # fmt: skip
    pairs = datasets.load_dataset("json", data_files=str(pairs_out), split="train")
    assert set(pairs.column_names) == {"prompt", "chosen", "rejected"}
    assert pairs[0]["prompt"] == [{"role": "user", "content": "What is 1 plus 1?"}]
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "1 plus 1 is 2. Happy to help!"}]


def test_ultrafeedback_exports_as_ratings_and_pairs(tmp_path):
    data = write_jsonl(tmp_path / "uf.jsonl", ultrafeedback_fine_grained(2))
    _run("data", "export", str(data), "--to", "ratings", "--output", str(tmp_path / "ratings.jsonl"))
    ratings = [json.loads(line) for line in (tmp_path / "ratings.jsonl").read_text().splitlines()]
    assert len(ratings) == 6 and {"prompt", "completion", "rating", "aspects", "model"} <= set(ratings[0])
    _run("data", "export", str(data), "--to", "pairs", "--output", str(tmp_path / "pairs.jsonl"))
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 6 and pairs[0]["chosen"] == "1 plus 1 is 2. Happy to help!" and pairs[0]["margin"] > 0
