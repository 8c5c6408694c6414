"""Configs of the evaluation commands (``alignkit ratings``, ``alignkit evaluate --prompts``), importable without torch.

The CLI builds one flag per field from these classes (:mod:`alignkit.cli.common`), so they hold no
code that loads models or numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator


class RatingsConfig(BaseModel):
    """``alignkit ratings --battles FILE``: ladders from a FastChat/Arena battles file."""

    battles: Path = Field(
        ..., description="Battles: JSONL (one object per line) or a JSON list, with model_a, model_b, winner (incl. ties)."
    )
    output: Path = Field(Path("ratings"), description="Folder for ratings.json, ratings.md and ratings.png.")
    ties: Literal["half", "ignore", "davidson"] = Field(
        "half", description="Ties: half a win each way (FastChat), dropped, or Davidson's tie model."
    )
    style: str | None = Field(
        None,
        description="Comma-separated style covariates for Arena-style style control, e.g. 'length' "
        "(read from FEATURE_a/FEATURE_b or conv_metadata; length also from sum_assistant_a_tokens).",
    )
    criterion: str = Field("overall", description="Rate battles of this criterion (battles without one are 'overall').")
    rounds: int = Field(100, ge=0, description="Bootstrap rounds for the CIs (0: none).")
    elo: bool = Field(True, description="Also compute online Elo as a cross-check (K below).")
    elo_k: float = Field(4.0, gt=0, description="Elo K factor (FastChat uses 4).")
    elo_rounds: int | None = Field(None, ge=0, description="Bootstrap rounds for Elo (default: --rounds).")
    anchor: str | None = Field(None, description="Model pinned at 1000 (default: ratings centred on 1000).")
    ci: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    seed: int = Field(0, description="Bootstrap seed.")


def parse_named_sources(value: Any) -> Any:
    """``--models base=path/a,sft=http://host:8000/v1#model`` as ``{name: source}`` (other values pass through).

    The one parser of ``name=source`` lists: sandbox evaluation, judged evaluation and monitoring
    benchmarks all take their models this way."""
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise ValueError("expected name=path_or_endpoint pairs separated by commas, e.g. base=runs/base,sft=runs/sft")
        return {k.strip(): v.strip() for k, v in pairs}
    return value


class JudgedEvalConfig(BaseModel):
    """``alignkit evaluate --prompts FILE``: your prompts, your models, an LLM judge and/or people."""

    prompts: Path = Field(..., description="JSONL prompts: 'prompt' (text or messages), optional 'category' and 'id'.")
    models: dict[str, str] = Field(
        ...,
        description="name=SOURCE,...: a local model folder, or an OpenAI-compatible endpoint "
        "'http(s)://host/v1#model-name' (key from $OPENAI_API_KEY); 'file:ANSWERS.jsonl' reads given answers.",
    )
    output: Path = Field(..., description="Folder for answers, verdicts, results.json and report.html.")
    reference: str | None = Field(None, description="Model the others are compared with (win rates, LC win rates).")
    judge: str | None = Field(
        None,
        description="The judge: an endpoint 'http(s)://host/v1#model', a local model folder, or 'none' (people or rules only).",
    )
    criteria: str = Field(
        "overall",
        description="Comma-separated criteria: overall, helpful, honest, harmless, or custom names defined in --rubrics.",
    )
    rubrics: Path | None = Field(None, description="YAML/JSON mapping criterion -> question/rubric for custom criteria.")
    pairs: Literal["reference", "all"] = Field(
        "all", description="Judge every model against the reference only, or all pairs (for the ladder)."
    )
    people: Literal["off", "all", "uncertain"] = Field(
        "off",
        description="Push comparisons to the feedback store as compare tasks: all of them, or (mixed mode) "
        "those the judge is unsure of; results are read back with --people-results.",
    )
    store: str | None = Field(None, description="Feedback store URL for --people (default: OUTPUT/feedback.db).")
    project: str = Field("evaluate", description="Feedback-store project name for --people.")
    harms: str | None = Field(
        None,
        description="Comma-separated harm categories people may tick on the compare tasks "
        "(default: the feedback store's hate, bias, personal_data, dangerous, sexual, self_harm, illegal).",
    )
    confident: float = Field(
        0.8, gt=0.5, le=1, description="Mixed mode: the judge decides pairs with max(p, 1-p) at or above this."
    )
    checks: bool = Field(True, description="Run the shipped over-refusal and honesty sets (rules, plus the judge if any).")
    max_new_tokens: int = Field(256, gt=0, description="Longest answer generated.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the answers (0 = greedy).")
    batch_size: int = Field(16, gt=0, description="Local generation batch size.")
    cache: Path | None = Field(None, description="Content-keyed cache of answers and verdicts (default: OUTPUT/cache).")
    rounds: int = Field(100, ge=0, description="Bootstrap rounds for rating CIs.")
    seed: int = Field(0, description="Sampling, position order and bootstrap seed.")
    progress: bool = Field(True, description="Show progress bars.")

    _models = field_validator("models", mode="before")(classmethod(lambda cls, v: parse_named_sources(v)))
