"""Typed configuration shared by every training stage.

Configs are flat on purpose: every field is one CLI flag (``max_steps`` is ``--max-steps``) and one
YAML key, so a run is described by a single readable file. Stage-specific configs (SFT, DPO, ...)
extend :class:`TrainingConfig` with their own fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.models.loading import LoraSettings


class ModelSource(BaseModel):
    """Where the starting weights come from (shared by every stage that trains a model)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("tiny", description="Local model folder, hub id (with --allow-download) or 'tiny'.")
    allow_download: bool = Field(False, description="Allow fetching the model from the Hugging Face hub.")
    dtype: str = Field("float32", description="Weights dtype when loading: float32, bfloat16, float16 or auto.")


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
    progress: bool = Field(True, description="Show a progress bar.")
    report_to: str = Field("", description="Extra metric sinks, comma-separated: tensorboard, mlflow.")


class TrainingConfig(ModelSource, LoraFields, RunBookkeeping):
    model_config = ConfigDict(extra="forbid")

    # What to train on
    data: Path = Field(..., description="Training data: .jsonl, .parquet or a `datasets` folder.")
    eval_data: Path | None = Field(None, description="Held-out data; default: a slice of --data.")
    eval_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of --data held out when --eval-data is not given.")
    on_bad_record: Literal["raise", "skip"] = Field("raise", description="Stop at the first bad record, or skip and count them.")
    max_length: int = Field(512, gt=8, description="Maximum tokens per sequence (prompt + completion).")
    template: Literal["chat", "raw"] = Field("chat", description="Render with the chat template, or raw prompt+completion text.")
    output: Path = Field(..., description="Output folder: checkpoints, metrics.jsonl and the final model.")

    # Optimisation
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; default: --epochs over the data.")
    epochs: float = Field(1.0, gt=0, description="Passes over the data when --max-steps is not given.")
    batch_size: int = Field(8, gt=0, description="Rows per micro-batch (per device).")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("cosine", description="Decay after warmup.")
    warmup_steps: int = Field(0, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(1.0, description="Clip gradients to this norm (none to disable).")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="accelerate mixed precision.")
    seed: int = Field(0, description="Seeds model init, data order and sampling.")
    eval_every: int | None = Field(None, gt=0, description="Evaluate every N steps (and at the end).")
