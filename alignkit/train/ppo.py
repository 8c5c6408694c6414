"""Online RL: the shared rollout -> score -> advantages -> update loop, and PPO on top of it.

One RL step, top to bottom (:func:`rl_loop`):

1. take ``rollout_batch_size`` prompts (a pure function of seed and step, like the offline loop's
   data order) and sample responses with the KV cache (:mod:`alignkit.train.rollout`), from a
   generator seeded by ``(seed, step)``;
2. score the decoded texts with the configured reward sources (:mod:`alignkit.train.rewards`),
   minus ``no_stop_penalty`` for responses that hit ``max_new_tokens`` without a stop token;
3. score the sampled tokens under the policy (the "old" log-probs) and the reference, both through
   the one log-prob function at the sampling temperature; the algorithm turns all this into
   per-token advantages (PPO: KL-shaped rewards + GAE with a critic; RLOO/GRPO: group baselines);
4. ``ppo_epochs`` passes over the batch in reshuffled minibatches of the algorithm's loss.

All the arithmetic (KL estimators, GAE, whitening, clipped losses, baselines, KL controllers)
lives in :mod:`alignkit.train.rl_math`; this module only wires it.

The critic (PPO). A *separate* value model: a sequence-classification model (backbone + a scalar
``score`` head) read at every token rather than only the last. It starts either as a copy of the
policy's backbone with a zero head (``value_model`` unset: values start at 0, the usual baseline
when nothing better is known) or from a trained reward model (``value_model=PATH``, InstructGPT's
choice: its head already predicts the final score). A separate model costs a second copy of the
weights but keeps value-loss gradients out of the policy, so ``vf_coef`` never trades policy
quality against value fit. With ``lora`` the critic gets its own adapter (head fully trained).

Reference. With ``lora`` it is the policy with its adapter disabled (no second model); otherwise a
frozen copy of the starting policy. Dropout is off everywhere (models stay in ``eval`` mode), so
the old log-probs and the first minibatch's log-probs agree exactly (ratio 1).

Checkpoints and exact resume use the offline loop's helpers (``save_checkpoint``,
``latest_checkpoint``, ``MetricsWriter``): models, optimizer, scheduler and RNG states come back
through ``accelerate``, the KL coefficient through ``trainer_state.json``, and everything random in
a step (prompt order, sampling, minibatch shuffles) is seeded by ``(seed, step)``. A non-finite
loss, or a rollout KL above ``max_kl``, stops the run with :class:`TrainingDiverged`, naming the
last good checkpoint (for the KL guard: the newest one saved *before* the policy that produced the
offending rollout) to resume from.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from accelerate import Accelerator
from pydantic import BaseModel
from tqdm.auto import tqdm

from alignkit.data import DataError, encode_prompt
from alignkit.models import apply_lora, load_model, save_model
from alignkit.models.config import LoraSettings
from alignkit.models.loading import is_lora
from alignkit.train import rl_math
from alignkit.train.config import PPOConfig, RLConfig
from alignkit.train.loop import CHECKPOINTS, STATE_FILE, MetricsWriter, TrainingDiverged, latest_checkpoint, save_checkpoint, unit_order
from alignkit.train.reference import adapter_disabled, frozen_copy
from alignkit.train.rollout import Rollout, decode_responses, rollout_logprobs, sample, stop_token_ids

log = logging.getLogger(__name__)

VALUE_MODEL_DIR = "value_model"


# --------------------------------------------------------------------------- configuration


# --------------------------------------------------------------------------- data


def read_prompts(path: Path, on_error: str = "raise") -> list[Any]:
    """The ``prompt`` of every row: a string or a list of chat messages."""
    from alignkit.data.io import _iter_rows  # the foundation's row reader (JSONL/Parquet/datasets)

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such prompts file or folder")
    prompts, skipped = [], 0
    for line, row in _iter_rows(path):
        err: DataError | None = row if isinstance(row, DataError) else None
        if err is None:
            value = row.get("prompt")
            ok = (isinstance(value, str) and value.strip()) or (
                isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value))
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


def prompt_texts(prompts: Sequence[Any]) -> list[str]:
    return [p if isinstance(p, str) else "\n".join(str(m["content"]) for m in p) for p in prompts]


# --------------------------------------------------------------------------- critic


def value_head(model: torch.nn.Module) -> torch.nn.Module:
    """The scalar head of a sequence-classification model (outermost match: a peft wrapper)."""
    model = getattr(model, "module", model)
    matches = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] in ("score", "classifier")]
    if not matches:
        raise ValueError(f"{type(model).__name__} has no 'score' or 'classifier' head (expected a sequence-classification model)")
    return min(matches, key=lambda nm: nm[0].count("."))[1]


def build_critic(policy: torch.nn.Module, pad_id: int, value_model: str | None, seed: int) -> torch.nn.Module:
    """A per-token value model: from a reward-model folder, or the policy backbone + zero head."""
    from transformers import AutoModelForSequenceClassification

    base = policy.get_base_model() if is_lora(policy) else policy
    if value_model:
        if not Path(value_model).exists():
            raise FileNotFoundError(f"--value-model '{value_model}' is not a folder (expected a reward model saved by `alignkit rm`)")
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
        head = value_head(critic)
        with torch.no_grad():
            for p in head.parameters():
                p.zero_()
    critic.config.pad_token_id = pad_id
    return critic.to(next(policy.parameters()).dtype)


def apply_critic_lora(critic: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """LoRA on the critic's body; its head stays fully trainable."""
    from peft import LoraConfig, get_peft_model

    head = [n for n, _ in critic.named_modules() if n.split(".")[-1] in ("score", "classifier")][:1]
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, task_type="SEQ_CLS", modules_to_save=head)
    return get_peft_model(critic, config)


def critic_values(critic: torch.nn.Module, rollout: Rollout, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
    """``(B, R)`` values: the head's output at the position *before* each response token.

    The head's per-token output is captured with a forward hook, so the model's own forward runs
    (LoRA, DDP, autocast behave as usual) and its last-token pooling is simply ignored.
    """
    batch = rollout.batch(rows)
    captured: list[torch.Tensor] = []
    hook = value_head(critic).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        critic(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"], use_cache=False)
    finally:
        hook.remove()
    per_token = captured[-1][..., 0].float()
    return per_token[:, rollout.prompt_ids.shape[1] - 1 : -1]


# --------------------------------------------------------------------------- the shared loop


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


def checkpoint_before(output: Path, step: int) -> Path | None:
    """The newest complete checkpoint from a step before ``step``."""
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = [(json.loads((p / STATE_FILE).read_text())["step"], p) for p in folder.iterdir()
             if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).exists()]
    return max(((n, p) for n, p in found if n < step), default=(0, None))[1]


class Reference:
    """Reference log-probs: the adapter-free policy under LoRA, else a frozen copy of the start."""

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
    reference = Reference(policy)
    stop_ids = stop_token_ids(tokenizer)
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

    start_step = 0
    checkpoint = latest_checkpoint(output) if config.resume else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        start_step = state["step"]
        controller.value = float(state.get("kl_coef", controller.value))
        log.info("resumed from %s (step %d of %d)", checkpoint, start_step, total)
    writer = MetricsWriter(output, config.report_to, start_step, accelerator.is_main_process)
    result = RLResult(steps=total, resumed_from=start_step)

    k = algorithm.samples_per_prompt
    bar = tqdm(total=total, initial=start_step, disable=not (config.progress and accelerator.is_main_process), desc=type(algorithm).__name__.lower())
    for step in range(start_step + 1, total + 1):
        started = time.perf_counter()
        # 1. prompts and rollouts
        n = config.rollout_batch_size
        picked = unit_order(len(prompts), config.seed, (step - 1) * n, n)
        picked = [i for i in picked for _ in range(k)]
        rollout = sample(
            policy, [encoded[i] for i in picked], pad_id=tokenizer.pad_token_id, stop_ids=stop_ids,
            max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
            generator=_generator(device, config.seed, step, 1),
        )
        sample_time = time.perf_counter() - started
        batch_prompts = [prompts[i] for i in picked]
        responses = decode_responses(tokenizer, rollout, stop_ids)

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


# --------------------------------------------------------------------------- PPO


class PPO:
    """Critic-based PPO: KL-shaped per-token rewards, GAE, clipped policy and value losses."""

    samples_per_prompt = 1

    def __init__(self, config: PPOConfig, critic: torch.nn.Module) -> None:
        self.config = config
        self.critic = critic

    def trainable(self) -> list[torch.nn.Module]:
        return [self.critic]

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
        pg_loss, pg = rl_math.ppo_policy_loss(logprobs, data.old_logprobs[rows], data.extra["advantages"][rows], mask, c.clip_range)
        values = critic_values(self.critic, data.rollout, rows)
        vf_loss, vf = rl_math.ppo_value_loss(values, data.extra["values"][rows], data.extra["returns"][rows], mask, c.vf_clip)
        with torch.no_grad():
            entropy = rl_math.masked_mean(rl_math.entropy_from_logits(logits), mask)
        metrics = {"policy_loss": float(pg_loss.detach()), "value_loss": float(vf_loss.detach()), "entropy": float(entropy)}
        metrics.update({k: float(v) for k, v in pg.items()})
        metrics.update({k: float(v) for k, v in vf.items()})
        return pg_loss + c.vf_coef * vf_loss, metrics


def load_policy(config: RLConfig, prompts: Sequence[Any]) -> tuple[torch.nn.Module, Any]:
    model, tokenizer = load_model(config.model, allow_download=config.allow_download, dtype=config.dtype,
                                  tiny_texts=prompt_texts(prompts), seed=config.seed)
    if (lora := config.lora_settings()) is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def write_summary(output: Path, stage: str, config: BaseModel, result: RLResult) -> None:
    summary = {"stage": stage, "config": json.loads(config.model_dump_json()), "steps": result.steps,
               "resumed_from": result.resumed_from, "final": result.history[-1] if result.history else None}
    (output / "alignkit_run.json").write_text(json.dumps(summary, indent=2))


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
    from alignkit.train.rewards import build_reward

    prompts = read_prompts(config.data, config.on_bad_record)
    model, tokenizer = policy if policy is not None else load_policy(config, prompts)
    reward = reward_fn if reward_fn is not None else build_reward(config.reward)
    critic = build_critic(model, tokenizer.pad_token_id, config.value_model, config.seed)
    if (lora := config.lora_settings()) is not None:
        critic = apply_critic_lora(critic, lora)
    critic.eval()
    result = rl_loop(config, model, tokenizer, prompts, reward, PPO(config, critic), on_step_end)
    output = save_model(result.model, tokenizer, config.output, merge_lora=config.merge_lora)
    critic_out = result.extra_models[0]
    critic_out = critic_out.merge_and_unload() if is_lora(critic_out) else critic_out
    critic_out.save_pretrained(output / VALUE_MODEL_DIR)
    write_summary(output, "ppo", config, result)
    return output
