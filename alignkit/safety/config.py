"""Configs of the safety commands (``safety train-guard|moderate|filter``, ``redteam``), torch-free for the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alignkit.train.config import TrainingConfig


class GuardTrainConfig(TrainingConfig):
    """Train a multi-label guard classifier on rows with ``prompt``, optional ``response``, ``categories``."""

    policy: str = Field("default", description="Policy YAML (categories), or 'default' for MLCommons S1-S14.")
    target_precision: float = Field(
        0.9, gt=0, le=1, description="Per-category threshold: the lowest reaching this held-out precision."
    )
    fallback_threshold: float = Field(
        1.01, description="Threshold of a category no held-out threshold reaches the target precision for (above 1: never flags)."
    )
    eval_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of --data held out (thresholds are chosen on it).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the data when --max-steps is not given.")


class GuardSource(BaseModel):
    """Which guard scores the text: a trained classifier folder, or a judge model (local folder or endpoint)."""

    guard: str = Field(
        ...,
        description="Guard: a folder from `safety train-guard`, or 'judge:MODEL' (a causal LM folder or, "
        "with --backend-url, the endpoint's model name) asked in Llama Guard's format.",
    )
    backend_url: str | None = Field(
        None, description="OpenAI-compatible base URL for a judge guard, e.g. http://localhost:8000/v1."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
    judge_format: Literal["llama-guard", "conversation"] = Field(
        "llama-guard",
        description="llama-guard: we write the policy prompt; conversation: the endpoint's template does (a real Llama Guard).",
    )
    policy: str = Field("default", description="Policy for a judge guard (a classifier carries its own).")
    threshold: float | None = Field(None, ge=0, description="Override: flag when the score reaches this (judge default 0.5).")
    batch_size: int = Field(16, gt=0, description="Rows scored per batch.")


class ModerateConfig(GuardSource):
    """Score a file of prompts (and responses) with a guard; write one verdict per row."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(
        ..., description="JSONL/Parquet rows with 'prompt' (text or messages) and optional 'response'/'completion'."
    )
    output: Path = Field(..., description="JSONL: each row with its 'guard' verdict added.")
    field: str | None = Field(None, description="Response field to moderate (default: response, completion, then chosen).")


class FilterConfig(GuardSource):
    """Score a training set; keep clean rows, drop or route flagged ones, and write what was removed."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(..., description="Training set (SFT, pairs, binary, rankings) to filter.")
    output: Path = Field(..., description="Folder: kept.jsonl, removed.jsonl, filter_report.json.")
    action: Literal["drop", "route"] = Field(
        "drop", description="drop: flagged rows go to removed.jsonl; route: also to flagged_<CODE>.jsonl per category for review."
    )
    field: str | None = Field(
        None, description="Which text to moderate: response/completion/chosen (default: all of a row's responses)."
    )


class FlagRatesConfig(GuardSource):
    """The guard column of an evaluation: flag rate per model (and per prompt category) of its responses."""

    model_config = ConfigDict(extra="forbid")

    responses: Path = Field(
        ..., description="An evaluation's responses.jsonl: per prompt 'prompt', 'category' and one column per model."
    )
    output: Path = Field(..., description="JSON: per model n, flagged, rate, Wilson CI, per category and per prompt category.")
    models: str | None = Field(None, description="Comma-separated model columns (default: every column but prompt/category).")


class RedTeamConfig(BaseModel):
    """Attack a target with generated attacks; ASR per attack and category; export training data from successes."""

    model_config = ConfigDict(extra="forbid")

    requests: Path | None = Field(
        None,
        description="JSONL of harmful requests ('prompt', optional 'category'); "
        "default with --sandbox: the world's held-out harmful prompts.",
    )
    target: str = Field(
        ...,
        description="Target model: a local folder, or with --backend-url the endpoint's model name; "
        "'judge' attacks alignkit's pairwise judge instead (--judge-model, --pairs, --payloads, --quoting).",
    )
    backend_url: str | None = Field(None, description="OpenAI-compatible base URL of the target.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
    attacks: str = Field("all", description="Comma-separated attack names (see `alignkit redteam --list`), or 'all'.")
    judge: str = Field(
        "sandbox",
        description="Success judge: 'sandbox[:FOLDER]' (ground truth), a guard folder, 'judge:MODEL', or 'python:mod:fn'.",
    )
    attacker: str | None = Field(
        None, description="Attacker model for the PAIR loop (folder or endpoint model; default: the sandbox's scripted attacker)."
    )
    pair_rounds: int = Field(3, ge=1, description="PAIR: attacker refinement rounds per request.")
    success_threshold: float = Field(0.5, ge=0, le=1, description="A judge score at or above this is a successful attack.")
    requests_split: Literal["train", "eval", "test"] = Field(
        "test",
        description="Sandbox split the requests come from without --requests: train to make training data, test to measure.",
    )
    max_requests: int | None = Field(None, gt=0, description="Use only the first N requests.")
    max_new_tokens: int = Field(48, gt=0, description="Longest target response.")
    temperature: float = Field(0.0, ge=0, description="Target sampling temperature (0 = greedy).")
    output: Path = Field(
        ...,
        description="Folder: attempts.jsonl, asr.json, and the exports sft_refusals.jsonl, dpo_pairs.jsonl, red_instruct.jsonl.",
    )
    seed: int = Field(0, description="Seeds attack generation and sampling.")
    world_seed: int = Field(0, description="Sandbox world seed (with the sandbox judge or requests).")
    progress: bool = Field(True, description="Show progress bars.")
    judge_model: str = Field(
        "sandbox",
        description="--target judge: the judge's model, 'sandbox[:FOLDER]' (the sandbox's careless judge model) "
        "or a local folder / endpoint model name.",
    )
    pairs: Path | None = Field(
        None,
        description="--target judge: JSONL cases with prompt and response_a/response_b (or chosen/rejected); "
        "default on the sandbox: ground-truth pairs of --requests-split.",
    )
    max_pairs: int = Field(60, gt=0, description="--target judge: use at most N pairs.")
    payloads: str = Field(
        "all",
        description="--target judge: payload sets 'project', 'held_out' (comma-separated) or 'all', "
        "or a text file of one payload per line ({letter} = the loser's letter).",
    )
    quoting: Literal["hardened", "legacy", "both"] = Field(
        "both", description="--target judge: attack the hardened quoting, the legacy one, or both side by side."
    )
    inside_obedience: float = Field(
        0.2,
        ge=0,
        le=1,
        description="--target judge on the sandbox: share of prompts where the simulated judge obeys an "
        "authoritative order inside a quote.",
    )
