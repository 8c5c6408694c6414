"""RLOO and GRPO: critic-free policy gradients with group baselines.

Both sample ``k`` responses per prompt and judge each response against its siblings instead of
against a learned value function:

* RLOO (Ahmadian et al. 2024): advantage = own score - mean score of the *other* k-1 responses;
* GRPO (Shao et al. 2024): advantage = (score - group mean) / group std (``grpo_scale``).

The sequence-level advantage is given to every token of the response and trained with the same
clipped surrogate as PPO (with ``ppo_epochs=1`` and one minibatch this is plain REINFORCE with a
baseline). The KL to the reference is either folded into the score before the baseline
(``kl_in=reward``, RLOO's choice: score - kl_coef * sum of per-token KL) or added to the loss
(``kl_in=loss``, GRPO's choice: kl_coef * mean per-token k3 estimate under the current policy).

The two differ only in the baseline, so they share this module and the outer loop of
:mod:`alignkit.train.rl_loop`; ``advantage=rloo|grpo`` picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alignkit.models import save_model
from alignkit.train import rl_math
from alignkit.train.config import RLOOConfig
from alignkit.train.rewards import build_reward
from alignkit.train.rl_loop import StepData, load_policy, read_prompts, rl_loop
from alignkit.train.rollout import rollout_logprobs
from alignkit.train.summary import write_run_summary


class RLOO:
    """Group-baseline policy gradient (``advantage`` = rloo or grpo)."""

    def __init__(self, config: RLOOConfig) -> None:
        self.config = config
        self.samples_per_prompt = config.k

    def trainable(self) -> list[torch.nn.Module]:
        return []

    def prepare(self, data: StepData) -> dict[str, float]:
        c, mask = self.config, data.mask
        scores = data.scores
        with torch.no_grad():
            if c.kl_in == "reward":
                kl = rl_math.kl_penalty(data.old_logprobs, data.ref_logprobs, c.kl_estimator)
                scores = scores - data.kl_coef * (kl * mask).sum(-1)
            if c.advantage == "rloo":
                advantages = rl_math.rloo_advantages(scores, c.k)
            else:
                advantages = rl_math.grpo_advantages(scores, c.k, scale=c.grpo_scale, eps=c.grpo_eps)
        advantages = advantages.reshape(-1)
        data.extra["advantages"] = advantages[:, None] * mask
        return {"advantage_std": float(advantages.std()), "score_after_kl": float(scores.mean())}

    def loss(self, policy: torch.nn.Module, data: StepData, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c, mask = self.config, data.mask[rows]
        logprobs, logits = rollout_logprobs(policy, data.rollout, c.temperature, rows, keep_logits=True)
        loss, pg = rl_math.ppo_policy_loss(logprobs, data.old_logprobs[rows], data.extra["advantages"][rows], mask, c.clip_range)
        metrics = {"policy_loss": float(loss.detach())}
        if c.kl_in == "loss" and data.kl_coef > 0:
            kl = rl_math.masked_mean(rl_math.kl_penalty(logprobs, data.ref_logprobs[rows], c.kl_estimator), mask)
            loss = loss + data.kl_coef * kl
            metrics["kl_loss"] = float(kl.detach())
        with torch.no_grad():
            assert logits is not None  # asked for with keep_logits=True
            metrics["entropy"] = float(rl_math.masked_mean(rl_math.entropy_from_logits(logits), mask))
        metrics.update({k: float(v) for k, v in pg.items()})
        return loss, metrics


def run_rloo(
    config: RLOOConfig,
    reward_fn: Callable[[Sequence[Any], Sequence[str]], list[float]] | None = None,
    policy: tuple[torch.nn.Module, Any] | None = None,
    on_step_end: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train with RLOO or GRPO (``config.advantage``) and save; returns the output folder."""
    prompts = read_prompts(config.data, config.on_bad_record)
    model, tokenizer = policy if policy is not None else load_policy(config, prompts)
    reward = reward_fn if reward_fn is not None else build_reward(config.reward)
    result = rl_loop(config, model, tokenizer, prompts, reward, RLOO(config), on_step_end)
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    write_run_summary(output, config.advantage, config, result, steps=result.steps, resumed_from=result.resumed_from)
    return output


run_grpo = run_rloo
