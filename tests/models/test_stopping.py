"""Generation and rollouts stop where the model's turn ends, not only at the tokenizer's EOS (issue #17)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from alignkit.data.chat import encode_prompt
from alignkit.models.architectures import FAMILIES
from alignkit.models.generation import generate, stop_criteria
from alignkit.train.config import PPOConfig
from alignkit.train.ppo import run_ppo
from alignkit.train.rollout import decode_responses, sample, stop_token_ids

CHAT_FAMILIES = ["llama", "qwen2", "gemma2", "phi3"]  # their end of turn is not the tokenizer's EOS


class Script:
    """Forces the model's next token, call by call (prefill = call 0), via a hook on the LM head."""

    def __init__(self, model: torch.nn.Module, tokens: list[int]) -> None:
        self.tokens, self.calls = tokens, 0
        self.handle = model.get_output_embeddings().register_forward_hook(self.hook)

    def hook(self, _module, _inputs, logits):
        token = self.tokens[min(self.calls, len(self.tokens) - 1)]
        self.calls += 1
        logits = logits.clone()
        logits[..., token] += 100.0
        return logits


def scripted(families, name, tokens):
    model, tokenizer = families[name]
    model = copy.deepcopy(model)
    Script(model, tokens)
    return model, tokenizer


def word(tokenizer) -> int:
    return tokenizer("hello", add_special_tokens=False)["input_ids"][0]


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_stop_criteria_include_the_end_of_turn_token(families, name):
    model, tokenizer = families[name]
    eot = tokenizer.convert_tokens_to_ids(FAMILIES[name].stop_tokens[0])
    assert eot != tokenizer.eos_token_id
    assert set(stop_criteria(model, tokenizer).token_ids) == {eot, tokenizer.eos_token_id}
    assert eot in stop_token_ids(tokenizer, model=model)


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_generate_stops_at_the_end_of_turn(families, name):
    _, tokenizer = families[name]
    eot = tokenizer.convert_tokens_to_ids(FAMILIES[name].stop_tokens[0])
    hello = word(tokenizer)
    model, _ = scripted(families, name, [hello, eot, hello])
    (text,) = generate(model, tokenizer, ["Say hello."], max_new_tokens=6, temperature=0.0)
    assert text == tokenizer.decode([hello]).strip()  # not "hellohellohello..." past the end of turn


@pytest.mark.parametrize("name", CHAT_FAMILIES)
def test_rollout_stops_at_the_end_of_turn(families, name):
    _, tokenizer = families[name]
    eot = tokenizer.convert_tokens_to_ids(FAMILIES[name].stop_tokens[0])
    hello = word(tokenizer)
    model, _ = scripted(families, name, [hello, eot, hello])
    stop_ids = stop_token_ids(tokenizer, model=model)
    rollout = sample(
        model, [encode_prompt(tokenizer, "Say hello.")], pad_id=tokenizer.pad_token_id, stop_ids=stop_ids, max_new_tokens=6
    )
    assert rollout.stopped.tolist() == [True]
    assert rollout.response_ids[0, : int(rollout.lengths[0])].tolist() == [hello, eot]


def test_multi_token_stop_string_from_generation_config(families):
    _, tokenizer = families["llama"]
    script = tokenizer("hello STOP there there there", add_special_tokens=False)["input_ids"]
    model, _ = scripted(families, "llama", script)
    model.generation_config.stop_strings = ["STOP"]
    stop = stop_criteria(model, tokenizer)
    assert stop.strings == ("STOP",)
    (text,) = generate(model, tokenizer, ["Say hello."], max_new_tokens=10, temperature=0.0)
    assert text == "hello"

    model, _ = scripted(families, "llama", script)
    rollout = sample(
        model,
        [encode_prompt(tokenizer, "Say hello.")],
        pad_id=tokenizer.pad_token_id,
        stop_ids=stop.token_ids,
        max_new_tokens=10,
        stop_strings=stop.strings,
        tokenizer=tokenizer,
    )
    assert rollout.stopped.tolist() == [True]
    assert tokenizer.decode(rollout.response_ids[0, : int(rollout.lengths[0])].tolist()).endswith("STOP")
    assert decode_responses(tokenizer, rollout, stop.token_ids, stop.strings) == ["hello"]


class AlwaysEndTurn:
    """Stateless: the end-of-turn token wins at every position (so every response stops at once)."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, _module, _inputs, logits):
        logits = logits.clone()
        logits[..., self.token] += 30.0
        return logits


def test_ppo_marks_responses_ending_their_turn_as_stopped(families, tmp_path):
    model, tokenizer = families["gemma2"]
    model = copy.deepcopy(model)
    eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    model.get_output_embeddings().register_forward_hook(AlwaysEndTurn(eot))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Say hello.", "Count to three."]))
    config = PPOConfig(
        data=prompts,
        output=tmp_path / "ppo",
        max_steps=1,
        rollout_batch_size=2,
        minibatch_size=2,
        ppo_epochs=1,
        max_new_tokens=4,
        no_stop_penalty=1.0,
        progress=False,
    )
    out = run_ppo(config, reward_fn=lambda p, r: [0.0] * len(r), policy=(model, tokenizer))
    (metrics,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert metrics["no_stop_share"] == 0.0
