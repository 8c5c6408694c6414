"""The rollout-engine interface (what ``--rollout-engine vllm`` plugs into), tested with a fake engine on CPU."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from alignkit.data import encode_prompt
from alignkit.train import engines
from alignkit.train.config import RLOOConfig
from alignkit.train.engines import Completion, rollout_from_completions, row_seeds
from alignkit.train.rloo import run_rloo
from alignkit.train.rollout import sample, stop_token_ids


class FakeEngine:
    """Samples with alignkit's own sampler on its own copy of the policy, one row at a time, seeded per
    row — as a serving engine would — and records the weight pushes."""

    def __init__(self, model: torch.nn.Module, eos: int) -> None:
        self.model, self.eos, self.synced = copy.deepcopy(model), eos, []

    def generate(self, prompts, *, max_new_tokens, temperature, top_p, stop_ids, seeds):
        out = []
        for prompt, seed in zip(prompts, seeds):
            r = sample(self.model, [prompt], pad_id=0, stop_ids=stop_ids, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, generator=torch.Generator().manual_seed(seed))  # fmt: skip
            ids = r.response_ids[0][r.response_mask[0]].tolist()
            out.append(Completion(ids + [99] * 3 if bool(r.stopped[0]) else ids, bool(r.stopped[0])))  # junk after the stop
        return out

    def sync_weights(self, model):
        before = next(self.model.parameters()).detach().clone()
        self.model.load_state_dict(model.state_dict())
        self.synced.append(not torch.equal(before, next(self.model.parameters())))


def test_rollout_grid_from_completions():
    prompts = [[5, 6, 7], [8]]
    grid = rollout_from_completions(prompts, [Completion([1, 2, 3], True), Completion([4], False)], pad_id=0)
    assert grid.prompt_ids.tolist() == [[5, 6, 7], [0, 0, 8]] and grid.prompt_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert grid.response_ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert grid.response_mask.tolist() == [[True, True, True], [True, False, False]]
    assert grid.stopped.tolist() == [True, False] and grid.lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="empty completion"):
        rollout_from_completions(prompts, [Completion([1], True), Completion([], False)], pad_id=0)
    with pytest.raises(ValueError, match="1 completions for 2 prompts"):
        rollout_from_completions(prompts, [Completion([1], True)], pad_id=0)
    assert row_seeds(3, 2, [0, 1]) != row_seeds(3, 2, [1, 0]) and row_seeds(3, 2, [5]) == row_seeds(3, 2, [4, 5])[1:]


def test_engine_completions_match_alignkit_sampler_row_by_row(tiny):
    model, tokenizer = tiny
    stops = stop_token_ids(tokenizer)
    prompts = [encode_prompt(tokenizer, q) for q in ("What colour is the sky?", "one two three")]
    fake = FakeEngine(model, tokenizer.eos_token_id)
    seeds = row_seeds(0, 1, [0, 1])
    completions = fake.generate(prompts, max_new_tokens=6, temperature=1.0, top_p=1.0, stop_ids=stops, seeds=seeds)
    grid = rollout_from_completions(
        prompts,
        [Completion(c.token_ids[: c.token_ids.index(99)] if 99 in c.token_ids else c.token_ids, c.stopped) for c in completions],
        tokenizer.pad_token_id,
    )
    for row, (prompt, seed) in enumerate(zip(prompts, seeds)):
        direct = sample(
            model,
            [prompt],
            pad_id=tokenizer.pad_token_id,
            stop_ids=stops,
            max_new_tokens=6,
            generator=torch.Generator().manual_seed(seed),
        )
        n = int(direct.lengths[0])
        assert grid.response_ids[row, :n].tolist() == direct.response_ids[0, :n].tolist()
        assert int(grid.lengths[row]) == n and bool(grid.stopped[row]) == bool(direct.stopped[0])


def test_rl_loop_samples_through_the_engine_and_pushes_weights(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    made = []

    def factory(config, policy):
        made.append(FakeEngine(policy, tokenizer.eos_token_id))
        return made[-1]

    monkeypatch.setattr(engines, "VLLM_FACTORY", factory)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["What colour is the sky?", "one two three", "The river"]))
    config = RLOOConfig(
        model="tiny", data=data, output=tmp_path / "out", reward="python:rl_driver:reward", rollout_engine="vllm",
        max_steps=3, rollout_batch_size=2, k=2, max_new_tokens=6, minibatch_size=4, lr=1e-2, progress=False,
    )  # fmt: skip
    history = []
    run_rloo(config, policy=(copy.deepcopy(model), tokenizer), on_step_end=lambda step, record: history.append(record))
    assert len(made) == 1 and made[0].synced == [True, True]  # pushed before steps 2 and 3, with changed weights
    assert len(history) == 3 and all(r["kl"] == r["kl"] for r in history)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # first rollout: the policy is still the reference
    with pytest.raises(ValueError, match="does not support --lora"):
        engines.build_engine(config.model_copy(update={"lora": True}), model)
