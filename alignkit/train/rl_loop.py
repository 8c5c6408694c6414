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

Several processes (``accelerate launch``/``torchrun``): data-parallel rollouts. The step's prompts
are cut into ``rollout_chunks`` contiguous chunks (default: one per process), each sampled with
its own generator seeded by ``(seed, step, chunk)``, so a step's rollout is a function of the seed
and the chunk count, never of the process count. Each process samples, scores and computes old
and reference log-probs for its chunks only (the expensive part); then the responses, scores and
log-probs are gathered so every process holds the whole batch (:func:`merge_rollouts`), computes
the same advantages (GRPO/RLOO groups never straddle chunks; PPO whitening sees every token) and
walks the same minibatch order. Each minibatch is split between processes (rows ``r::W``); the
RL losses are token means (:mod:`alignkit.train.rl_math`), so each process weights its loss by
``W * its tokens / minibatch tokens`` and DDP's gradient average is exactly the one-process
gradient. Two processes therefore match one process run with ``--rollout-chunks 2`` up to float
summation order (``tests/scale/test_rl_multiprocess.py``).

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
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from tqdm.auto import tqdm

from alignkit.data import DataError, encode_prompt
from alignkit.data.chat import prompt_text
from alignkit.data.formats import prompt_of
from alignkit.data.io import iter_rows
from alignkit.models.generation import stop_criteria
from alignkit.models.loading import apply_lora, is_lora, load_model
from alignkit.train import rl_math
from alignkit.train.config import RLConfig
from alignkit.train.engines import build_engine, rollout_from_completions, row_seeds
from alignkit.train.loop import (
    LaunchError,
    MetricsWriter,
    TrainingDiverged,
    check_launch,
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
    """The prompt of every row: a string or a list of chat messages. Any record shape alignkit reads
    works (``data.formats.prompt_of``): a prompt-only file, or a preference file (HH-RLHF,
    UltraFeedback, TRL pairs) used as a prompt set."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such prompts file or folder")
    prompts, skipped = [], 0
    for line, row in iter_rows(path):
        if not isinstance(row, dict):
            err = row
        else:
            value = row.get("prompt") if "prompt" in row else prompt_of(row)
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
        attn_implementation=config.attn_implementation,
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


def _pad_columns(tensor: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    missing = width - tensor.shape[1]
    if missing <= 0:
        return tensor
    pad = torch.full((tensor.shape[0], missing), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([pad, tensor] if left else [tensor, pad], dim=1)


def merge_rollouts(
    parts: Sequence[tuple[Rollout, torch.Tensor, torch.Tensor]], pad_id: int
) -> tuple[Rollout, torch.Tensor, torch.Tensor]:
    """Stack rollouts (with their old and reference log-probs) row-wise: prompts left-padded and
    responses right-padded to the widest part, so every formula on the ``(B, R)`` grid still holds.
    Associative: merging per process and then across processes equals merging all chunks at once."""
    if len(parts) == 1:
        return parts[0]
    width_p = max(r.prompt_ids.shape[1] for r, _, _ in parts)
    width_r = max(r.response_ids.shape[1] for r, _, _ in parts)
    rollout = Rollout(
        prompt_ids=torch.cat([_pad_columns(r.prompt_ids, width_p, pad_id, left=True) for r, _, _ in parts]),
        prompt_mask=torch.cat([_pad_columns(r.prompt_mask, width_p, 0, left=True) for r, _, _ in parts]),
        response_ids=torch.cat([_pad_columns(r.response_ids, width_r, pad_id, left=False) for r, _, _ in parts]),
        response_mask=torch.cat([_pad_columns(r.response_mask, width_r, False, left=False) for r, _, _ in parts]),
        logprobs=torch.cat([_pad_columns(r.logprobs, width_r, 0.0, left=False) for r, _, _ in parts]),
        stopped=torch.cat([r.stopped for r, _, _ in parts]),
    )
    old = torch.cat([_pad_columns(o, width_r, 0.0, left=False) for _, o, _ in parts])
    ref = torch.cat([_pad_columns(f, width_r, 0.0, left=False) for _, _, f in parts])
    return rollout, old, ref


def _to(rollout: Rollout, device: torch.device) -> Rollout:
    return Rollout(**{name: getattr(rollout, name).to(device) for name in Rollout.__dataclass_fields__})


def check_data_parallel(config: RLConfig, processes: int, samples_per_prompt: int) -> int:
    """The chunk count, after checking that the step's prompts and minibatches split evenly over processes."""
    chunks = config.rollout_chunks or processes
    n = config.rollout_batch_size
    if chunks % processes:
        raise ValueError(f"--rollout-chunks {chunks} must be a multiple of the number of processes ({processes})")
    if n % chunks:
        raise ValueError(f"--rollout-batch-size {n} must be a multiple of the rollout chunks ({chunks})")
    if processes > 1:
        size, mb = n * samples_per_prompt, config.minibatch_size
        last = size % mb
        if min(mb, size) < processes or 0 < last < processes:
            raise ValueError(
                f"with {processes} processes every minibatch needs at least {processes} responses: "
                f"{size} responses per step in minibatches of {mb} (choose --minibatch-size dividing {size})"
            )
    return chunks


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
    cuda = torch.cuda.is_available()
    if config.gradient_checkpointing:
        # transformers checkpoints only in train mode, and the RL policy stays in eval mode (dropout
        # off, so old and new log-probs agree): the flag would do nothing, so say so.
        log.warning("--gradient-checkpointing has no effect in online RL (the policy runs in eval mode)")
    accelerator = Accelerator(mixed_precision=config.mixed_precision if cuda else "no", cpu=not cuda)
    check_launch(accelerator.num_processes, torch.cuda.is_available())
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        # Sharded weights make every forward a collective, and processes sample different numbers
        # of decode steps (rows stop early): rollouts would deadlock. Refuse instead of hanging.
        raise LaunchError(
            f"online RL runs data-parallel (DDP, or one process); {accelerator.distributed_type.value} shards the "
            "weights, which the rollout loop does not support. Launch with examples/accelerate/ddp.yaml or torchrun "
            "(the offline trainers sft/rm/dpo/kto do run under ZeRO-3 and FSDP2)."
        )
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
    if hasattr(algorithm, "use_prepared"):  # e.g. PPO trains its critic through the DDP wrapper too
        algorithm.use_prepared(modules[1:])
    # Sampling and no-grad scoring use the bare module: DDP's forward is a collective (buffer
    # broadcast), and processes sample different numbers of steps.
    bare = accelerator.unwrap_model(policy)
    processes, rank = accelerator.num_processes, accelerator.process_index
    chunks = check_data_parallel(config, processes, algorithm.samples_per_prompt)
    engine = build_engine(config, bare)  # None: alignkit's own sampler
    if engine is not None and processes > 1:
        raise LaunchError("--rollout-engine vllm runs in one process for now (one engine per GPU is not built yet)")
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
        # 1. prompts and rollouts: this process's chunks (all of them on one process)
        n = config.rollout_batch_size
        picked = unit_order(len(prompts), config.seed, (step - 1) * n, n)
        per_chunk = n // chunks
        parts, mine = [], []
        if engine is not None and step > 1:
            engine.sync_weights(bare)  # the engine started from the checkpoint; push the updated (or resumed) policy
        for c in range(rank * chunks // processes, (rank + 1) * chunks // processes):
            rows_c = [i for i in picked[c * per_chunk : (c + 1) * per_chunk] for _ in range(k)]
            seed_parts = (config.seed, step, 1) if chunks == 1 else (config.seed, step, 1, c)
            if engine is not None:
                completions = engine.generate(
                    [encoded[i] for i in rows_c],
                    max_new_tokens=config.max_new_tokens,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    stop_ids=stop_ids,
                    seeds=row_seeds(config.seed, step, range(c * len(rows_c), (c + 1) * len(rows_c))),
                )
                rollout_c = rollout_from_completions([encoded[i] for i in rows_c], completions, tokenizer.pad_token_id, device)
            else:
                rollout_c = sample(
                    bare,
                    [encoded[i] for i in rows_c],
                    pad_id=tokenizer.pad_token_id,
                    stop_ids=stop_ids,
                    max_new_tokens=config.max_new_tokens,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    generator=_generator(device, *seed_parts),
                    stop_strings=stop.strings,
                    tokenizer=tokenizer,
                )
            # 3a. old and reference log-probs of this chunk
            with torch.no_grad():
                old_c = rollout_logprobs(bare, rollout_c, config.temperature)[0]
                ref_c = reference.logprobs(bare, rollout_c, config.temperature)
            parts.append((rollout_c, old_c, ref_c))
            mine.extend(rows_c)
        rollout, old, ref = merge_rollouts(parts, tokenizer.pad_token_id)
        sample_time = time.perf_counter() - started
        local_prompts = [prompts[i] for i in mine]
        responses = decode_responses(tokenizer, rollout, stop_ids, stop.strings)

        # 2. scores of this process's responses
        raw = torch.tensor(reward_fn(local_prompts, responses), dtype=torch.float32, device=device)
        if raw.shape != (len(mine),):
            raise ValueError(f"the reward returned {tuple(raw.shape)} scores for {len(mine)} responses")
        source_means = dict(getattr(reward_fn, "last", {}))
        local_tokens = float(rollout.lengths.sum())
        if processes > 1:
            # Gather everything, so every process holds the whole batch in chunk order.
            shared = gather_object(
                [(_to(rollout, torch.device("cpu")), old.cpu(), ref.cpu(), raw.cpu(), mine, responses, source_means)]
            )
            merged = merge_rollouts([(r, o, f) for r, o, f, *_ in shared], tokenizer.pad_token_id)
            rollout, old, ref = _to(merged[0], device), merged[1].to(device), merged[2].to(device)
            raw = torch.cat([g[3] for g in shared]).to(device)
            mine = [i for g in shared for i in g[4]]
            responses = [t for g in shared for t in g[5]]
            source_means = {key: sum(g[6].get(key, 0.0) for g in shared) / len(shared) for key in source_means}
        batch_prompts = [prompts[i] for i in mine]
        scores = raw - config.no_stop_penalty * (~rollout.stopped).float()

        # 3b. the algorithm's advantages, on the whole batch
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
        size = len(mine)
        lengths_all = mask.sum(-1).float()
        for epoch in range(config.ppo_epochs):
            order = torch.randperm(size, generator=_generator(torch.device("cpu"), config.seed, step, 2, epoch))
            for start in range(0, size, config.minibatch_size):
                rows = order[start : start + config.minibatch_size].to(device)
                if processes > 1:
                    # This process's share of the minibatch, weighted by its share of the tokens
                    # (the losses are token means), so DDP's average is the one-process gradient.
                    share = rows[rank::processes]
                    weight = processes * float(lengths_all[share].sum()) / float(lengths_all[rows].sum())
                    loss, metrics = algorithm.loss(policy, data, share)
                    loss = loss * weight
                    reduced = torch.tensor([float(loss.detach()), *(weight * float(v) for v in metrics.values())], device=device)
                    reduced = accelerator.reduce(reduced, reduction="sum") / processes
                    value = float(reduced[0])
                    metrics = {key: float(v) for key, v in zip(metrics, reduced[1:].tolist())}
                else:
                    loss, metrics = algorithm.loss(policy, data, rows)
                    value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"loss became {value} at step {step}; stopped. "
                        f"Last good checkpoint: {latest_checkpoint(output) or 'none yet'} (lower --lr or check the reward)."
                    )
                accelerator.backward(loss)
                if config.max_grad_norm is not None:
                    for g in groups:
                        accelerator.clip_grad_norm_(g, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                for key, number in {"loss": value, **metrics}.items():
                    sums[key] = sums.get(key, 0.0) + float(number)
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
            "gen_tokens_per_s": local_tokens / max(sample_time, 1e-9),  # this process's
            "step_time_s": elapsed,
        }
        for name, mean in source_means.items():
            record[f"reward/{name}"] = mean
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
