"""Pydantic configs of the ``alignkit feedback`` commands (one field per flag)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DB = Field("feedback.db", description="store: SQLite file path or a SQLAlchemy URL (postgresql+psycopg://...)")


class InitConfig(BaseModel):
    db: str = DB
    project: str | None = Field(None, description="also create this project")
    template: Literal["preference", "sft", "custom"] = Field("preference", description="stages of the new project")
    project_file: str | None = Field(None, description="YAML with the project's ProjectConfig (template=custom)")
    overlap: int = Field(3, ge=1)
    max_overlap: int | None = Field(None, ge=1, description="dynamic overlap ceiling")
    gold_rate: float = Field(0.1, ge=0, le=1)


class ImportConfig(BaseModel):
    db: str = DB
    project: str
    input: str = Field(description="JSONL: prompt, and responses / chosen+rejected, optional gold / prelabel")
    stage: str | None = Field(None, description="create a task of this stage per row (else: stages pick items up)")
    gold_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of rows made gold tasks of --stage (answer: the row's 'truth' or a pair's chosen side)",
    )
    annotators: str | None = Field(None, description="comma-separated annotator names to register (name:role)")
    seed: int = 0
    on_bad_row: Literal["error", "skip"] = Field(
        "error", description="a row of the wrong shape: stop with its line and import nothing (error), or skip and count it"
    )


class AssignConfig(BaseModel):
    db: str = DB
    project: str
    annotator: str
    n: int = Field(1, ge=1, description="how many tasks to take")
    stage: str | None = None


class SubmitConfig(BaseModel):
    db: str = DB
    input: str = Field(description="JSONL rows: annotator, task_id, answer")


class ExportConfig(BaseModel):
    db: str = DB
    project: str
    kind: Literal["pairs", "sft", "binary", "rankings"] = "pairs"
    output: str = "feedback_export.jsonl"
    stage: str | None = None
    method: Literal["dawid_skene", "majority"] = "dawid_skene"
    min_agreement: float = Field(0.0, ge=0, le=1)
    min_confidence: float = Field(0.0, ge=0, le=1)


class QualityConfig(BaseModel):
    db: str = DB
    project: str
    screen: bool = Field(False, description="admit/exclude candidates by a sequential test of their gold answers")
    threshold: float = Field(0.7, gt=0, lt=1, description="screening: gold accuracy the test admits at")
    chance: float = Field(0.5, gt=0, lt=1, description="screening: accuracy of a random answerer (0.5 for pairs)")
    false_admit: float = Field(0.005, gt=0, lt=1, description="screening: chance that a random answerer is admitted")
    max_gold: int = Field(
        60, ge=1, description="screening (sprt): candidates not admitted after this many gold answers are excluded"
    )
    rule: Literal["sprt", "probation"] = Field(
        "sprt",
        description="screening: sprt (Wald's test on gold) or probation (undecided candidates keep working as extra "
        "judgments and are tested on gold and peers)",
    )
    exclude_below: float = Field(
        0.6, gt=0, lt=1, description="screening (probation): exclude once evidence is against this accuracy"
    )
    probation_after: int = Field(
        20, ge=1, description="screening (probation): gold answers before an undecided candidate goes on probation"
    )
    flag_spammers: bool = Field(False, description="flag active annotators at chance level")
    super_raters: bool = Field(False, description="update super-rater marks")


class AggregateConfig(BaseModel):
    db: str = DB
    project: str
    stage: str
    method: Literal["dawid_skene", "majority"] = "dawid_skene"
    output: str | None = Field(None, description="write labels as JSONL here (else print a summary)")


class AnnotatorsConfig(BaseModel):
    db: str = DB
    action: Literal["add", "list"] = Field("list", description="add people to a project, or list them")
    project: str
    names: str | None = Field(None, description="add: comma-separated names")
    role: Literal["annotator", "reviewer", "admin"] = Field("annotator", description="add: their role in this project")
    status: Literal["auto", "candidate", "active"] = Field(
        "auto", description="add: screening state in this project (auto: a candidate when the project has gold)"
    )
