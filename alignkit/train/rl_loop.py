"""The online-RL outer loop PPO, RLOO and GRPO share: rollout -> score -> advantages -> update.

One RL step, top to bottom (:func:`rl_loop`):

1. take ``rollout_batch_size`` prompts (a pure function of seed and step, like the offline loop's
   data order) and sample responses with the KV cache (:mod:`alignkit.train.rollout`), from a
   generator seeded by ``(seed, step)``;
2. score the decoded texts with the configured reward sources (:mod:`alignkit.train.rewards`),
   minus ``no_stop_penalty`` for responses that hit ``max_new_tokens`` without a stop token;
3. score the sampled tokens under the policy (the "old" log-probs) and the reference, both through
   the one log-prob function at the sampling temperature; the algorithm turns all this into
   per-token advantages (:class:`Algorithm`.prepare: PPO's KL-shaped rewards + GAE with a critic in
   :mod:`alignkit.train.ppo`; RLOO/GRPO's group baselines in :mod:`alignkit.train.rloo`);
4. ``ppo_epochs`` passes over the batch in reshuffled minibatches of the algorithm's loss.

Reference. With ``lora`` it is the policy with its adapter disabled (no second model); otherwise a
frozen copy of the starting policy. Dropout is off everywhere (models stay in ``eval`` mode), so
the old log-probs and the first minibatch's log-probs agree exactly (ratio 1).

The skeleton is the offline loop's (:mod:`alignkit.train.loop`): ``restore_latest`` for exact
resume, ``save_checkpoint``/``checkpoint_before`` and ``MetricsWriter``. Models, optimizer,
scheduler and RNG states come back through ``accelerate``, the KL coefficient through
``trainer_state.json``, and everything random in a step (prompt order, sampling, minibatch
shuffles) is seeded by ``(seed, step)``. A non-finite loss, or a rollout KL above ``max_kl``, stops
the run with :class:`TrainingDiverged`, naming the last good checkpoint (for the KL guard: the
newest one saved *before* the policy that produced the offending rollout) to resume from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from alignkit.data import DataError, encode_prompt
from alignkit.data.chat import prompt_text
from alignkit.data.io import iter_rows
from alignkit.models.generation import stop_criteria
from alignkit.models.loading import apply_lora, is_lora, load_model
from alignkit.train import rl_math
from alignkit.train.config import RLConfig
from alignkit.train.loop import (
    MetricsWriter,
    TrainingDiverged,
    checkpoint_before,
    latest_checkpoint,
    restore_latest,
    save_checkpoint,
    unit_order,
)
from alignkit.train.reference import adapter_disabled, frozen_copy
from alignkit.train.rollout import Rollout, decode_responses, rollout_logprobs, sample

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


def read_prompts(path: Path, on_error: str = "raise") -> list[Any]:
    """The ``prompt`` of every row: a string or a list of chat messages."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such prompts file or folder")
    prompts, skipped = [], 0
    for line, row in iter_rows(path):
        if not isinstance(row, dict):
            err = row
        else:
            value = row.get("prompt")
            ok = (isinstance(value, str) and value.strip()) or (
                isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
            )
            if ok:
                prompts.append(value)
                continue
            err = DataError(path, line, "prompt", "a non-empty string or a list of {role, content} messages")
        if on_error == "raise":
            raise err
        skipped += 1
    if skipped:
        log.warning("%s: skipped %d bad prompt row(s)", path, skipped)
    if not prompts:
        raise DataError(path, None, "prompt", f"at least one valid prompt (skipped {skipped})")
    return prompts


def load_policy(config: RLConfig, prompts: Sequence[Any]) -> tuple[torch.nn.Module, Any]:
    model, tokenizer = load_model(
        config.model,
        allow_download=config.allow_download,
        dtype=config.dtype,
        tiny_texts=[prompt_text(p, roles=False) for p in prompts],
        seed=config.seed,
    )
    if (lora := config.lora_settings()) is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


# --------------------------------------------------------------------------- the loop


@dataclass
class StepData:
    """Everything one RL step knows about its rollout (tensors on the training device)."""

    rollout: Rollout
    prompts: list[Any]
    responses: list[str]
    scores: torch.Tensor  # (B,) reward after the no-stop penalty
    raw_scores: torch.Tensor  # (B,) reward as the sources gave it
    old_logprobs: torch.Tensor  # (B, R)
    ref_logprobs: torch.Tensor  # (B, R)
    kl_coef: float
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def mask(self) -> torch.Tensor:
        return self.rollout.response_mask


class Algorithm(Protocol):
    """What PPO and RLOO/GRPO plug into :func:`rl_loop`."""

    samples_per_prompt: int

    def trainable(self) -> list[torch.nn.Module]: ...

    def prepare(self, data: StepData) -> dict[str, float]: ...

    def loss(self, policy: torch.nn.Module, data: StepData, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class RLResult:
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    model: Any = None
    extra_models: list[Any] = field(default_factory=list)


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)


def kl_controller(config: RLConfig) -> Any:
    if config.adaptive_kl:
        return rl_math.AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
    return rl_math.FixedKLController(config.kl_coef)


class RolloutReference:
    """Per-token reference log-probs of a rollout: the adapter-free policy under LoRA, else a frozen copy of the start.

    (The offline counterpart, :class:`alignkit.train.reference.Reference`, scores whole sequences for DPO/KTO.)
    """

    def __init__(self, policy: torch.nn.Module) -> None:
        self.copy = None if is_lora(policy) else frozen_copy(policy)

    @torch.no_grad()
    def logprobs(self, policy: torch.nn.Module, rollout: Rollout, temperature: float) -> torch.Tensor:
        if self.copy is None:
            with adapter_disabled(policy) as base:
                return rollout_logprobs(base, rollout, temperature)[0]
        device = rollout.prompt_ids.device
        if next(self.copy.parameters()).device != device:
            self.copy.to(device)
        return rollout_logprobs(self.copy, rollout, temperature)[0]


def rl_loop(
    config: RLConfig,
    policy: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Any],
    reward_fn: Callable[[Sequence[Any], Sequence[str]], list[float]],
    algorithm: Algorithm,
    on_step_end: Callable[[int, dict[str, float]], None] | None = None,
) -> RLResult:
    """rollout -> score -> advantages -> update, ``config.max_steps`` times, with checkpoints."""
    output = Path(config.output)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    policy.eval()  # dropout off: old and new log-probs must come from the same function
    reference = RolloutReference(policy)
    stop = stop_criteria(policy, tokenizer)  # generation_config EOS ids (e.g. <end_of_turn>) and stop strings
    stop_ids = list(stop.token_ids)
    encoded = [encode_prompt(tokenizer, p, config.template)[-config.max_prompt_length :] for p in prompts]

    modules = [policy, *algorithm.trainable()]
    groups = [[p for p in m.parameters() if p.requires_grad] for m in modules]
    optimizer = torch.optim.AdamW([{"params": g} for g in groups], lr=config.lr, weight_decay=config.weight_decay)
    warm, total = config.warmup_steps, config.max_steps

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        return 1.0 if config.lr_schedule == "constant" else max(0.0, (total - step) / max(1, total - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    prepared = accelerator.prepare(*modules, optimizer)
    modules, optimizer = list(prepared[:-1]), prepared[-1]
    policy = modules[0]
    accelerator.register_for_checkpointing(scheduler)
    controller = kl_controller(config)

    start_step, state = restore_latest(accelerator, output, config.resume)
    controller.value = float(state.get("kl_coef", controller.value))
    writer = MetricsWriter(output, config.report_to, start_step, accelerator.is_main_process)
    result = RLResult(steps=total, resumed_from=start_step)

    k = algorithm.samples_per_prompt
    bar = tqdm(
        total=total,
        initial=start_step,
        disable=not (config.progress and accelerator.is_main_process),
        desc=type(algorithm).__name__.lower(),
    )
    for step in range(start_step + 1, total + 1):
        started = time.perf_counter()
        # 1. prompts and rollouts
        n = config.rollout_batch_size
        picked = unit_order(len(prompts), config.seed, (step - 1) * n, n)
        picked = [i for i in picked for _ in range(k)]
        rollout = sample(
            policy,
            [encoded[i] for i in picked],
            pad_id=tokenizer.pad_token_id,
            stop_ids=stop_ids,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            generator=_generator(device, config.seed, step, 1),
            stop_strings=stop.strings,
            tokenizer=tokenizer,
        )
        sample_time = time.perf_counter() - started
        batch_prompts = [prompts[i] for i in picked]
        responses = decode_responses(tokenizer, rollout, stop_ids, stop.strings)

        # 2. scores
        raw = torch.tensor(reward_fn(batch_prompts, responses), dtype=torch.float32, device=device)
        if raw.shape != (len(picked),):
            raise ValueError(f"the reward returned {tuple(raw.shape)} scores for {len(picked)} responses")
        scores = raw - config.no_stop_penalty * (~rollout.stopped).float()

        # 3. old and reference log-probs, then the algorithm's advantages
        with torch.no_grad():
            old = rollout_logprobs(policy, rollout, config.temperature)[0]
            ref = reference.logprobs(policy, rollout, config.temperature)
        data = StepData(rollout, batch_prompts, responses, scores, raw, old, ref, controller.value)
        mask = rollout.response_mask
        seq_kl = ((old - ref) * mask).sum(-1)  # k1 per response: the KL actually spent
        mean_kl = float(seq_kl.mean())
        if config.max_kl is not None and mean_kl > config.max_kl:
            # This rollout came from the policy saved after step - 1, so the last checkpoint known
            # to be good is the newest one from before that step.
            raise TrainingDiverged(
                f"KL to the reference reached {mean_kl:.2f} per response at step {step} (> --max-kl {config.max_kl}); "
                f"stopped. Last good checkpoint: {checkpoint_before(output, step - 1) or 'none kept'} "
                f"(raise --kl-coef or lower --lr)."
            )
        prep_metrics = algorithm.prepare(data)

        # 4. updates
        sums: dict[str, float] = {}
        count = 0
        size = len(picked)
        for epoch in range(config.ppo_epochs):
            order = torch.randperm(size, generator=_generator(torch.device("cpu"), config.seed, step, 2, epoch))
            for start in range(0, size, config.minibatch_size):
                rows = order[start : start + config.minibatch_size].to(device)
                loss, metrics = algorithm.loss(policy, data, rows)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at step {step}; stopped. "
                        f"Last good checkpoint: {latest_checkpoint(output) or 'none yet'} (lower --lr or check the reward)."
                    )
                accelerator.backward(loss)
                if config.max_grad_norm is not None:
                    for g in groups:
                        accelerator.clip_grad_norm_(g, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                for key, value in {"loss": float(loss.detach()), **metrics}.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                count += 1
        scheduler.step()
        controller.update(mean_kl, size)

        elapsed = time.perf_counter() - started
        lengths = rollout.lengths.float()
        record: dict[str, Any] = {
            "step": step,
            "score": float(raw.mean()),
            "score_std": float(raw.std()) if size > 1 else 0.0,
            "reward": float(scores.mean()),
            "kl": mean_kl,
            "kl_coef": data.kl_coef,
            "response_length": float(lengths.mean()),
            "no_stop_share": float((~rollout.stopped).float().mean()),
            **prep_metrics,
            **{key: v / max(count, 1) for key, v in sums.items()},
            "lr": scheduler.get_last_lr()[0],
            "gen_tokens_per_s": float(lengths.sum()) / max(sample_time, 1e-9),
            "step_time_s": elapsed,
        }
        for name, value in getattr(reward_fn, "last", {}).items():
            record[f"reward/{name}"] = value
        result.history.append(record)
        if step % config.log_every == 0 or step == total:
            writer.write(record)
        bar.update(1)
        bar.set_postfix(score=f"{record['score']:.3f}", kl=f"{mean_kl:.2f}")
        if step % config.save_every == 0 or step == total:
            save_checkpoint(accelerator, output, step, config.keep_checkpoints, {"kl_coef": controller.value})
        if on_step_end is not None:
            on_step_end(step, record)
    bar.close()
    result.model = accelerator.unwrap_model(policy)
    result.extra_models = [accelerator.unwrap_model(m) for m in modules[1:]]
    return result
