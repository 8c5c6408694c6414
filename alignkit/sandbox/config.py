"""Configs of the sandbox's commands (``sandbox pretrain``, ``feedback simulate``, ``evaluate``), importable without torch.

The CLI builds its flags from these classes, so they live apart from the code that runs them
(which loads models, the feedback store and the world).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alignkit.evaluate.config import parse_named_sources


class SimulateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt pipeline key is an error, not ignored
    output: str = Field("feedback_sim", description="folder for the database and the exported pairs")
    db_url: str | None = Field(None, description="store URL; default: OUTPUT/feedback.db (SQLite)")
    n_items: int = Field(200, ge=1, description="comparison tasks to label")
    n_gold: int = Field(80, ge=0, description="gold tasks (researcher-labelled) for screening and spot checks")
    n_annotators: int = Field(20, ge=1)
    spammer_fraction: float = Field(0.2, ge=0, le=1)
    skill_low: float = Field(0.65, ge=0, le=1, description="honest annotators' skill range, low end")
    skill_high: float = Field(0.95, ge=0, le=1, description="honest annotators' skill range, high end")
    position_bias: float = Field(0.1, ge=0, le=1, description="crowd position bias range (sandbox make_crowd)")
    length_bias: float = Field(0.1, ge=0, le=1, description="crowd length bias range")
    helpful_lean: float = Field(0.3, ge=0, le=1, description="crowd lean towards helpfulness over harmlessness")
    world_seed: int = Field(0, description="World seed (KB, prompts); 0 is the world the shipped base model knows.")
    overlap: int = Field(3, ge=1)
    max_overlap: int | None = Field(None, ge=1, description="set above --overlap for dynamic overlap")
    agreement_threshold: float = Field(1.0, ge=0, le=1, description="dynamic overlap: top-label share needed to stop")
    gold_rate: float = Field(0.1, ge=0, le=1)
    web: bool = Field(False, description="run the crowd through the web API (alignkit.web, on loopback) instead of the store")
    n_screening: int = Field(
        60,
        ge=0,
        description="most gold tasks a candidate answers before the screening test decides (0: no screening; capped at --n-gold)",
    )
    screening_threshold: float = Field(0.7, gt=0.5, lt=1, description="gold accuracy the screening test admits at")
    screening_false_admit: float = Field(0.005, gt=0, lt=1, description="screening: chance a coin-flipper is admitted")
    screening_rule: Literal["sprt", "probation"] = Field(
        "sprt",
        description="screening: sprt (Wald's test on gold; undecided at --n-screening: excluded) or probation (undecided "
        "candidates keep working as extra judgments, tested on gold and peers; alignkit.feedback.quality.screen)",
    )
    screening_exclude_below: float = Field(
        0.6, gt=0.5, lt=1, description="probation: exclude once the evidence is against this accuracy (chance 0.1 at it)"
    )
    probation_extra: int = Field(2, ge=0, description="probation: most extra judgments per item by people on probation")
    probation_after: int = Field(20, ge=1, description="probation: gold answers before an undecided candidate goes on probation")
    seed: int = Field(0, description="Run seed: the crowd's skills and answers, gold placement, task order.")
    progress: bool = True


class SandboxEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, str] = Field(..., description="Model name -> model folder, in display order.")
    output: Path = Field(..., description="Folder for results.json and responses.jsonl.")
    world: Path | None = Field(None, description="A `sandbox build` folder (default: the world of --world-seed).")
    world_seed: int = Field(
        0, description="World seed without --world (KB and prompts); 0 is the world the shipped base model was pretrained on."
    )
    seed: int = Field(0, description="Run seed: sampling, battle order, bootstrap (never the world).")
    splits: str = Field("eval,test", description="Comma-separated prompt splits to evaluate on.")
    n_prompts: int | None = Field(None, description="At most this many prompts (default: all of the splits).")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0 = greedy).")
    max_new_tokens: int = Field(48, gt=0, description="Longest response.")
    reference: str = Field("sft", description="Model that win rates and KL are measured against.")
    tax_reference: str = Field("base", description="Model the alignment tax is measured against.")
    n_boot: int = Field(200, gt=0, description="Bootstrap rounds for rating CIs.")
    n_samples: int = Field(3, ge=0, description="Side-by-side samples shown per prompt category.")
    runs: dict[str, str] = Field(
        {},
        description="Stage name -> training output folder (metrics.jsonl, alignkit_run.json): the report shows "
        "its training curves, time, tokens and held-out accuracy.",
    )
    guard: str | None = Field(
        None,
        description="A guard that reads every model's answers (a `safety train-guard` folder or judge:MODEL): "
        "adds guard_flag_rate per model with its Wilson CI.",
    )
    progress: bool = Field(True, description="Show progress bars.")

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        return parse_named_sources(value)

    @model_validator(mode="after")
    def _references_name_models(self) -> SandboxEvalConfig:
        # Checked before anything loads. The defaults (sft, base) may name no model: then win rates,
        # KL or the alignment tax are left out; a reference given explicitly must exist.
        for field in ("reference", "tax_reference"):
            value = getattr(self, field)
            if field in self.model_fields_set and value not in self.models:
                flag = "--" + field.replace("_", "-")
                raise ValueError(f"{flag} '{value}' names no model; --models has {list(self.models)}")
        return self


SHIPPED_BASE_MODEL = Path(__file__).resolve().parent / "base_model"


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output: Path = Field(SHIPPED_BASE_MODEL, description="Folder for the base model (save_pretrained).")
    seed: int = Field(0, description="Seeds the world, the corpus, the model init and the data order.")
    world_seed: int = Field(0, description="Seed of the sandbox world whose corpus is used.")
    corpus_size: int = Field(24000, gt=0, description="Corpus records (prompt + unaligned completion).")
    max_steps: int = Field(800, gt=0, description="Optimizer steps.")
    batch_size: int = Field(16, gt=0, description="Packed rows per step.")
    max_length: int = Field(256, gt=16, description="Row length for packing.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (cosine decay, 50 warmup steps).")
    hidden_size: int = Field(128, gt=0, description="Model width.")
    num_layers: int = Field(4, gt=0, description="Transformer layers.")
    progress: bool = Field(True, description="Show a progress bar.")
