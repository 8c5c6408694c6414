"""PPO (Schulman et al. 2017; as in InstructGPT, Ouyang et al. 2022): its critic and its objective.

The outer loop (rollouts, scores, reference log-probs, minibatch updates, checkpoints) is
:func:`alignkit.train.rl_loop.rl_loop`; this module plugs :class:`PPO` into it. ``PPO.prepare``
turns a rollout into KL-shaped per-token rewards and GAE advantages using the critic's values;
``PPO.loss`` is the clipped policy surrogate plus the clipped value loss. All the arithmetic (KL
estimators, GAE, whitening, clipped losses) lives in :mod:`alignkit.train.rl_math`.

The critic. A *separate* value model: a sequence-classification model (backbone + a scalar
``score`` head) read at every token rather than only the last. It starts either as a copy of the
policy's backbone with a zero head (``value_model`` unset: values start at 0, the usual baseline
when nothing better is known) or from a trained reward model (``value_model=PATH``, InstructGPT's
choice: its head already predicts the final score). A separate model costs a second copy of the
weights but keeps value-loss gradients out of the policy, so ``vf_coef`` never trades policy
quality against value fit. With ``lora`` the critic gets its own adapter (head fully trained).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from alignkit.models.heads import apply_head_lora, per_token_scores, score_head
from alignkit.models.loading import is_lora, save_model
from alignkit.train import rl_math
from alignkit.train.config import PPOConfig
from alignkit.train.rewards import build_reward
from alignkit.train.rl_loop import StepData, load_policy, read_prompts, rl_loop
from alignkit.train.rollout import Rollout, rollout_logprobs
from alignkit.train.summary import write_run_summary

VALUE_MODEL_DIR = "value_model"


# --------------------------------------------------------------------------- configuration


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- critic


def build_critic(policy: torch.nn.Module, pad_id: int, value_model: str | None, seed: int) -> torch.nn.Module:
    """A per-token value model: from a reward-model folder, or the policy backbone + zero head."""
    hf: Any = policy  # a transformers/peft model: its methods are not in torch.nn.Module's type
    base = hf.get_base_model() if is_lora(hf) else hf
    if value_model:
        if not Path(value_model).exists():
            raise FileNotFoundError(
                f"--value-model '{value_model}' is not a folder (expected a reward model saved by `alignkit rm`)"
            )
        critic = AutoModelForSequenceClassification.from_pretrained(value_model, num_labels=1, local_files_only=True)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            config = copy.deepcopy(base.config)
            config.num_labels = 1
            critic = AutoModelForSequenceClassification.from_config(config)
        # Under LoRA the backbone's linear layers are wrapped: copy the frozen base weights only.
        state = {k.replace(".base_layer", ""): v for k, v in base.base_model.state_dict().items() if "lora_" not in k}
        critic.base_model.load_state_dict(state)
        head = score_head(critic)
        with torch.no_grad():
            for p in head.parameters():
                p.zero_()
    critic.config.pad_token_id = pad_id
    return critic.to(next(policy.parameters()).dtype)


def critic_values(critic: torch.nn.Module, rollout: Rollout, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
    """``(B, R)`` values: the head's output at the position *before* each response token.

    The head's per-token output is captured with a forward hook, so the model's own forward runs
    (LoRA, DDP, autocast behave as usual) and its last-token pooling is simply ignored.
    """
    batch = rollout.batch(rows)
    per_token = per_token_scores(
        critic, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
    )
    return per_token[:, rollout.prompt_ids.shape[1] - 1 : -1]


# --------------------------------------------------------------------------- the shared loop


# --------------------------------------------------------------------------- PPO


class PPO:
    """Critic-based PPO: KL-shaped per-token rewards, GAE, clipped policy and value losses."""

    samples_per_prompt = 1

    def __init__(self, config: PPOConfig, critic: torch.nn.Module) -> None:
        self.config = config
        self.critic = critic

    def trainable(self) -> list[torch.nn.Module]:
        return [self.critic]

    def use_prepared(self, modules: list[torch.nn.Module]) -> None:
        """Train the critic through what ``accelerate`` made of it (DDP under several processes)."""
        self.critic = modules[0]

    def prepare(self, data: StepData) -> dict[str, float]:
        c, mask = self.config, data.mask
        with torch.no_grad():
            values = critic_values(self.critic, data.rollout) * mask
            kl = rl_math.kl_penalty(data.old_logprobs, data.ref_logprobs, c.kl_estimator)
            rewards = rl_math.token_rewards(data.scores, kl, mask, data.kl_coef)
            advantages, returns = rl_math.gae(rewards, values, mask, c.gamma, c.lam)
            if c.whiten_advantages and int(mask.sum()) >= 2:
                advantages = rl_math.whiten(advantages, mask)
        data.extra.update(values=values, returns=returns, advantages=advantages * mask)
        return {
            "explained_variance": float(rl_math.explained_variance(values, returns, mask)),
            "value_mean": float(rl_math.masked_mean(values, mask)),
            "return_mean": float(rl_math.masked_mean(returns, mask)),
        }

    def loss(self, policy: torch.nn.Module, data: StepData, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c, mask = self.config, data.mask[rows]
        logprobs, logits = rollout_logprobs(policy, data.rollout, c.temperature, rows, keep_logits=True)
        pg_loss, pg = rl_math.ppo_policy_loss(
            logprobs, data.old_logprobs[rows], data.extra["advantages"][rows], mask, c.clip_range
        )
        values = critic_values(self.critic, data.rollout, rows)
        vf_loss, vf = rl_math.ppo_value_loss(values, data.extra["values"][rows], data.extra["returns"][rows], mask, c.vf_clip)
        with torch.no_grad():
            assert logits is not None  # asked for with keep_logits=True
            entropy = rl_math.masked_mean(rl_math.entropy_from_logits(logits), mask)
        metrics = {"policy_loss": float(pg_loss.detach()), "value_loss": float(vf_loss.detach()), "entropy": float(entropy)}
        metrics.update({k: float(v) for k, v in pg.items()})
        metrics.update({k: float(v) for k, v in vf.items()})
        return pg_loss + c.vf_coef * vf_loss, metrics


def run_ppo(
    config: PPOConfig,
    reward_fn: Callable[[Sequence[Any], Sequence[str]], list[float]] | None = None,
    policy: tuple[torch.nn.Module, Any] | None = None,
    on_step_end: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train a policy with PPO and save it; returns the output folder (``from_pretrained``-loadable).

    ``reward_fn`` overrides ``config.reward`` (any batched ``fn(prompts, responses)``); ``policy``
    passes an already-loaded ``(model, tokenizer)`` instead of ``config.model``. The critic is saved
    to ``output/value_model``.
    """
    prompts = read_prompts(config.data, config.on_bad_record)
    model, tokenizer = policy if policy is not None else load_policy(config, prompts)
    reward = reward_fn if reward_fn is not None else build_reward(config.reward)
    critic = build_critic(model, tokenizer.pad_token_id, config.value_model, config.seed)
    if (lora := config.lora_settings()) is not None:
        critic = apply_head_lora(critic, lora)
    critic.eval()
    result = rl_loop(config, model, tokenizer, prompts, reward, PPO(config, critic), on_step_end)
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    critic_out = result.extra_models[0]
    critic_out = critic_out.merge_and_unload() if is_lora(critic_out) else critic_out
    critic_out.save_pretrained(output / VALUE_MODEL_DIR)
    write_run_summary(output, "ppo", config, result, steps=result.steps, resumed_from=result.resumed_from)
    return output
