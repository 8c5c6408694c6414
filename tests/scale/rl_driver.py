"""One online-RL run (GRPO or PPO) on the tiny model, for the multi-process tests.

Run as ``python rl_driver.py ALGO OUT PROMPTS`` or under ``torchrun --nproc_per_node 2`` (on CPU,
``accelerate launch --cpu --num_processes 2`` starts a single process unless MPI is set up; torchrun
sets the same environment ``accelerate`` reads on GPUs). The main process writes
``OUT/history.json`` (the per-step records, with the process count) and ``OUT/weights.pt`` (a few
parameter tensors of the trained policy). Everything is seeded, and the step's rollout is sampled in
two chunks (``rollout_chunks=2``) either way, so one process and two must agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from alignkit.train.config import PPOConfig, RLOOConfig
from alignkit.train.ppo import run_ppo
from alignkit.train.rloo import run_rloo


def reward(prompt, response):
    """Rule reward: letters 'e' in the response, a little credit for the prompt's length."""
    return response.count("e") / 4 + len(str(prompt)) / 100


def main() -> None:
    algo, out, prompts = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    common = dict(
        model="tiny", data=prompts, output=out / "run", reward="python:rl_driver:reward", max_steps=2, rollout_batch_size=4,
        rollout_chunks=2, max_new_tokens=8, minibatch_size=4, lr=1e-3, seed=3, progress=False, save_every=100,
    )  # fmt: skip
    if algo == "grpo":
        config = RLOOConfig(**common, advantage="grpo", k=2, kl_in="loss", kl_coef=0.05, ppo_epochs=2)
        runner = run_rloo
    else:
        config = PPOConfig(**common, ppo_epochs=2, kl_coef=0.05)
        runner = run_ppo
    history = []
    runner(config, on_step_end=lambda step, record: history.append(record))
    state = PartialState()
    for record in history:
        record["processes"] = state.num_processes
    if state.is_main_process:
        (out / "history.json").write_text(json.dumps(history))
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(out / "run")
        torch.save({k: v for k, v in model.state_dict().items() if "layers.0" in k or "lm_head" in k}, out / "weights.pt")


if __name__ == "__main__":
    main()
