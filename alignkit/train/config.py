"""Typed configuration of every training stage, in one torch-free module.

Configs are flat on purpose: every field is one CLI flag (``max_steps`` is ``--max-steps``) and one
YAML key, so a run is described by a single readable file. Offline stages (SFT, reward model, DPO,
KTO) extend :class:`TrainingConfig`; online RL stages (PPO, RLOO, GRPO) extend :class:`RLConfig`.
This module imports nothing heavier than pydantic, so the CLI can build and validate a config (and
print ``--help``) without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignkit.data.formats import default_eval_split
from alignkit.models.config import LoraSettings

ReferenceKind = Literal["copy", "adapter", "precomputed"]


class ModelSource(BaseModel):
    """Where the starting weights come from (shared by every stage that trains a model)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("tiny", description="Local model folder, hub id (with --allow-download) or 'tiny'.")
    allow_download: bool = Field(False, description="Allow fetching the model from the Hugging Face hub.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Weights dtype when loading (auto: the checkpoint's). On GPU prefer float32 weights with "
        "--mixed-precision bf16 (autocast); bfloat16 weights halve memory but AdamW then updates in bf16.",
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast the forward pass (accelerate mixed precision; GPU only, ignored on CPU)."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] | None = Field(
        None, description="Attention kernel (default: transformers' choice, usually sdpa)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about 30% more compute."
    )


class LoraFields(BaseModel):
    """LoRA via peft: the same flags for offline and online stages."""

    lora: bool = Field(False, description="Train a LoRA adapter instead of all weights.")
    lora_r: int = Field(8, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(16, description="LoRA scaling numerator (alpha / r).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    lora_target_modules: str = Field("all-linear", description="Comma-separated module names, or 'all-linear'.")
    merge_lora: bool = Field(False, description="Merge the adapter into the base weights when saving.")

    def lora_settings(self) -> LoraSettings | None:
        if not self.lora:
            return None
        targets = self.lora_target_modules
        return LoraSettings(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        )


class RunBookkeeping(BaseModel):
    """Checkpoints, resume, metrics and progress: the same for every training stage."""

    save_every: int = Field(100, gt=0, description="Checkpoint every N steps (and at the end).")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    log_every: int = Field(1, gt=0, description="Write metrics every N steps.")
    resume: bool = Field(True, description="Resume from the latest checkpoint in --output if there is one.")
    overwrite: bool = Field(
        False,
        description="Replace what --output holds (another run's folder or other files); otherwise it must be new, "
        "empty or this same run's.",
    )
    progress: bool = Field(True, description="Show a progress bar.")
    report_to: str = Field("", description="Extra metric sinks, comma-separated: tensorboard, mlflow, wandb.")


class TrainingConfig(ModelSource, LoraFields, RunBookkeeping):
    model_config = ConfigDict(extra="forbid")

    # What to train on
    data: Path = Field(..., description="Training data: .jsonl, .parquet or a `datasets` folder.")
    eval_data: Path | None = Field(None, description="Held-out data; default: a slice of --data.")
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of --data held out when --eval-data is not given.")
    on_bad_record: Literal["raise", "skip"] = Field(
        "raise", description="Stop at the first bad record (the default everywhere), or skip them and report how many."
    )
    max_length: int = Field(512, gt=8, description="Maximum tokens per sequence (prompt + completion).")
    template: Literal["chat", "raw"] = Field("chat", description="Render with the chat template, or raw prompt+completion text.")
    output: Path = Field(..., description="Output folder: checkpoints, metrics.jsonl and the final model.")

    @model_validator(mode="after")
    def _eval_on_test_split(self) -> TrainingConfig:
        """A saved DatasetDict trains on its `train` split and, without --eval-data, evaluates on its `test` split."""
        if self.eval_data is None and (split := default_eval_split(self.data)) is not None:
            self.eval_data = split
        return self

    # Optimisation
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; default: --epochs over the data.")
    epochs: float = Field(1.0, gt=0, description="Passes over the data when --max-steps is not given.")
    batch_size: int = Field(8, gt=0, description="Rows per micro-batch (per device).")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    max_forward_tokens: int | None = Field(
        1024,
        gt=0,
        description="Split a micro-batch whose collated batch holds more positions than this into halves, each run "
        "forward and backward on its own (same gradient, less activation memory; none: never split).",
    )
    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("cosine", description="Decay after warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, description="Clip gradients to this norm (none to disable).")
    seed: int = Field(0, description="Seeds model init, data order and sampling.")
    eval_every: int | None = Field(None, gt=0, description="Evaluate every N steps (and at the end).")


# --------------------------------------------------------------------------- offline stages


class SFTConfig(TrainingConfig):
    packing: bool = Field(False, description="Pack several examples per row (no attention across them).")


class RewardConfig(TrainingConfig):
    margin_field: str | None = Field(
        None, description="Record field with a preference margin (Llama 2 style: loss uses r_c - r_r - margin)."
    )
    center_coef: float = Field(
        0.0, ge=0.0, description="Weight of a penalty on the mean squared reward, keeping rewards centred near 0."
    )
    criterion: str | None = Field(
        None, description="Train on one criterion: rows whose 'criterion' field or 'criteria' dict names it."
    )
    criterion_weights: dict[str, float] | None = Field(
        None,
        description="Combine a record's per-criterion judgments ('criteria' dict) by these weights, e.g. helpful=1,harmless=2.",
    )
    stats_samples: int = Field(512, gt=0, description="Responses scored for reward_stats.json (mean/std for normalisation).")

    @field_validator("criterion_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: Any) -> Any:
        """Accept ``helpful=1,harmless=2`` from the command line as well as a mapping."""
        if isinstance(value, str):
            out = {}
            for part in filter(None, (p.strip() for p in value.split(","))):
                name, sep, weight = part.partition("=")
                if not sep:
                    raise ValueError(f"expected name=weight pairs separated by commas, got '{part}'")
                out[name.strip()] = float(weight)
            return out
        return value


class PreferenceConfig(TrainingConfig):
    """Fields DPO and KTO share: β and the reference kind."""

    beta: float = Field(0.1, gt=0, description="Strength of the KL penalty (inverse temperature of the implicit reward).")
    reference: ReferenceKind | None = Field(
        None,
        description="Reference log-probs: copy, adapter (LoRA base) or precomputed; "
        "default adapter with --lora, else precomputed.",
    )


class DPOConfig(PreferenceConfig):
    loss: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="DPO (sigmoid), IPO, SLiC hinge or robust (cDPO-style noise-aware) loss."
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="Assumed share of flipped labels (sigmoid/robust losses).")
    nll_coef: float = Field(0.0, ge=0.0, description="Weight of an NLL term on the chosen completions (RPO-style).")


class KTOConfig(PreferenceConfig):
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of desirable (label true) examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of undesirable (label false) examples.")


class SafeAlignConfig(TrainingConfig):
    """Red-Instruct safety alignment: NLL on safe (label true) rows, bounded gradient ascent on harmful (label false) rows."""

    harmful_coef: float = Field(0.5, ge=0, description="Weight of the gradient-ascent term on harmful completions.")
    ascent_clamp: float = Field(
        3.0, gt=0, description="Per-token NLL cap of the ascent term (nats): past it a harmful token gets no more push."
    )
    helpful_data: Path | None = Field(
        None, description="SFT records (e.g. demonstrations) trained with NLL beside the safe rows, against the alignment tax."
    )


# --------------------------------------------------------------------------- online RL


class RLConfig(ModelSource, LoraFields, RunBookkeeping):
    """Fields every online-RL stage shares (PPO, RLOO, GRPO). Flat: one field, one flag."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("tiny", description="Policy to start from: local folder, hub id (with --allow-download) or 'tiny'.")
    data: Path = Field(..., description="Prompts: .jsonl/.parquet/datasets folder with a 'prompt' field per row.")
    on_bad_record: Literal["raise", "skip"] = Field(
        "raise", description="Stop at the first bad prompt row, or skip and count them."
    )
    template: Literal["chat", "raw"] = Field("chat", description="Render prompts with the chat template, or as raw text.")
    max_prompt_length: int = Field(256, gt=1, description="Prompts longer than this keep their last tokens.")
    output: Path = Field(..., description="Output folder: checkpoints, metrics.jsonl and the final policy.")
    reward: str = Field(
        "sandbox",
        description="Reward sources, comma-separated, optional weight: 'rm:PATH', 'sandbox[:FOLDER]', 'python:mod:fn', "
        "e.g. 'rm:out/rm,0.2*python:my.mod:fn'.",
    )

    # Rollouts
    rollout_batch_size: int = Field(16, gt=0, description="Prompts sampled per RL step.")
    rollout_chunks: int | None = Field(
        None,
        gt=0,
        description="Pieces a step's prompts are sampled in, each with its own seed (default: one per process). "
        "A step's rollout depends on seed and chunks, not on the process count: --rollout-chunks 2 on one process "
        "reproduces a 2-process run.",
    )
    rollout_engine: Literal["hf", "vllm"] = Field(
        "hf",
        description="Who samples rollouts: hf (alignkit's KV-cache sampler) or vllm (needs a GPU and `pip install "
        "alignkit[vllm]`; weights are pushed to vLLM after every update).",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="Share of GPU memory vLLM may take (the trainer needs the rest)."
    )
    max_new_tokens: int = Field(64, gt=0, description="Longest response; longer ones are cut and count as not stopped.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (log-probs use the same one).")
    top_p: float = Field(1.0, gt=0, le=1.0, description="Nucleus sampling mass (1 = off).")
    no_stop_penalty: float = Field(
        0.0, ge=0, description="Subtracted from the score of a response that never emits a stop token."
    )

    # KL to the reference
    kl_coef: float = Field(0.05, ge=0, description="Weight of the KL penalty to the reference (initial value if adaptive).")
    kl_estimator: Literal["k1", "k3"] = Field(
        "k1", description="Per-token KL estimator: k1 = log-ratio, k3 = ratio - 1 - log-ratio."
    )
    adaptive_kl: bool = Field(False, description="Adapt kl_coef towards --kl-target (Ziegler et al.).")
    kl_target: float = Field(6.0, gt=0, description="Target KL per response for the adaptive controller.")
    kl_horizon: int = Field(10000, gt=0, description="Adaptive controller horizon, in responses.")
    max_kl: float | None = Field(100.0, gt=0, description="Stop the run when a rollout's mean KL per response exceeds this.")

    # Updates
    ppo_epochs: int = Field(1, gt=0, description="Passes over each rollout batch.")
    minibatch_size: int = Field(8, gt=0, description="Responses per gradient step.")
    clip_range: float = Field(0.2, gt=0, description="Policy ratio clipping (PPO surrogate).")
    lr: float = Field(1e-5, gt=0, description="Learning rate.")
    lr_schedule: Literal["constant", "linear"] = Field("constant", description="Learning rate after warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup, in RL steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, description="Clip gradient norm per model (none to disable).")
    max_steps: int = Field(100, gt=0, description="RL steps (rollout + update).")
    seed: int = Field(0, description="Seeds prompt order, sampling and minibatch shuffles.")

    # Differences from the shared model/LoRA/bookkeeping fields: RL steps are slower, so checkpoint
    # more often; LoRA dropout has no effect (models run in eval mode during RL).
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path (off in RL: models run in eval mode).")
    save_every: int = Field(50, gt=0, description="Checkpoint every N steps (and at the end).")


class PPOConfig(RLConfig):
    gamma: float = Field(1.0, ge=0, le=1, description="Discount for GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    vf_clip: float | None = Field(0.2, gt=0, description="Value clipping around the rollout's values (none to disable).")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")
    value_model: str | None = Field(
        None, description="Critic start: a reward-model folder; default a copy of the policy backbone with a zero head."
    )
    whiten_advantages: bool = Field(True, description="Normalise advantages over the real tokens of each batch.")
    ppo_epochs: int = Field(4, gt=0, description="Passes over each rollout batch.")


class RLOOConfig(RLConfig):
    advantage: Literal["rloo", "grpo"] = Field(
        "rloo", description="Baseline: leave-one-out mean (rloo) or group mean/std (grpo)."
    )
    k: int = Field(4, ge=2, description="Responses sampled per prompt (the group).")
    kl_in: Literal["reward", "loss"] = Field("reward", description="Fold the KL penalty into the score, or add it to the loss.")
    grpo_scale: bool = Field(True, description="GRPO: divide by the group's std (off: Dr. GRPO-style mean-only baseline).")
    grpo_eps: float = Field(1e-4, gt=0, description="GRPO: added to the group std.")


class GRPOConfig(RLOOConfig):
    """RLOO's recipe with GRPO's defaults: group-normalised baseline, KL in the loss (k3)."""

    advantage: Literal["rloo", "grpo"] = Field(
        "grpo", description="Baseline: leave-one-out mean (rloo) or group mean/std (grpo)."
    )
    kl_in: Literal["reward", "loss"] = Field("loss", description="Fold the KL penalty into the score, or add it to the loss.")
    kl_estimator: Literal["k1", "k3"] = Field(
        "k3", description="Per-token KL estimator: k1 = log-ratio, k3 = ratio - 1 - log-ratio."
    )
