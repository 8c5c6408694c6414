"""Pydantic configuration of a feedback project and its stages."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignkit.feedback.schemas import DEFAULT_CRITERIA, DEFAULT_HARMS, TaskType

StageInput = Literal[
    "none", "new_prompts", "accepted_prompts", "pending_responses", "responses", "response_pairs", "response_sets"
]


class StageConfig(BaseModel):
    """One stage of a project: which task type, fed by what, with how many judgments per task.

    ``input`` names what feeds the stage (see :func:`alignkit.feedback.workflow.advance`):
    new prompts -> verify; accepted prompts -> write completions; people's pending responses ->
    review; responses (pairs / sets / single) -> compare / rank / rate / binary / rules / qa.
    Dynamic overlap: once ``overlap`` judgments are in and the top label's share is below
    ``agreement_threshold``, one more judgment is requested, up to ``max_overlap``.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    task_type: TaskType
    input: StageInput = "none"
    overlap: int = Field(3, ge=1)
    max_overlap: int | None = Field(None, ge=1, description="dynamic overlap ceiling; None: fixed overlap")
    agreement_threshold: float = Field(1.0, ge=0, le=1, description="top-label share needed to stop asking")
    gold_rate: float = Field(0.0, ge=0, le=1, description="share of served tasks that are gold")
    probation_extra: int = Field(
        2, ge=0, description="most extra judgments per task by annotators on probation (beyond the overlap; see quality.screen)"
    )
    role: Literal["annotator", "reviewer"] = "annotator"
    auto_label_confidence: float | None = Field(None, ge=0, le=1, description="pre-labels at or above this skip people")
    show_prelabels: bool = Field(
        False,
        description="show a task's model pre-label to annotators as a suggestion (pre-filled and marked); off by default, "
        "since a visible suggestion anchors judgments",
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="task settings: criteria, harms, scale, rules, questions, k"
    )
    max_pairs_per_prompt: int = 1

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if self.max_overlap is not None and self.max_overlap < self.overlap:
            raise ValueError(f"stage {self.name}: max_overlap ({self.max_overlap}) < overlap ({self.overlap})")
        return self

    def task_payload(self) -> dict[str, Any]:
        p = dict(self.payload)
        if self.task_type == "compare":
            p.setdefault("criteria", list(DEFAULT_CRITERIA))
            p.setdefault("harms", list(DEFAULT_HARMS))
        if self.task_type == "rate":
            p.setdefault("scale", [1, 7])
        return p


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[StageConfig] = Field(default_factory=list)
    lease_minutes: float = Field(60.0, gt=0, description="an unanswered assignment returns to the pool after this")
    max_pending: int = Field(8, ge=1, description="most open assignments per annotator (Open-Assistant: 8)")
    seed: int = 0
    guidelines: str = ""

    @model_validator(mode="after")
    def _unique(self) -> ProjectConfig:
        names = [s.name for s in self.stages]
        if len(names) != len(set(names)):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")


def sft_project(overlap: int = 3) -> ProjectConfig:
    """verified prompts -> completions -> reviews -> SFT data (Open-Assistant's flow)."""
    return ProjectConfig(
        stages=[
            StageConfig(name="verify", task_type="verify_prompt", input="new_prompts", overlap=overlap),
            StageConfig(name="write", task_type="write_completion", input="accepted_prompts", overlap=1),
            StageConfig(
                name="review", task_type="review_completion", input="pending_responses", overlap=overlap, role="reviewer"
            ),
        ]
    )


def preference_project(overlap: int = 3, max_overlap: int | None = None, gold_rate: float = 0.1) -> ProjectConfig:
    """prompts -> model responses -> pairwise comparisons -> preference data."""
    return ProjectConfig(
        stages=[
            StageConfig(
                name="compare",
                task_type="compare",
                input="response_pairs",
                overlap=overlap,
                max_overlap=max_overlap,
                gold_rate=gold_rate,
            ),
        ]
    )
