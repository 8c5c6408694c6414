"""One pydantic answer schema per task type, validated against the task's own settings.

A task carries its settings in ``payload`` (how many responses to rank, the rating scale, the
criteria and harm categories asked, the rule list, the questions); the answer is checked against
them, so "rank 4 responses" cannot be answered with a permutation of 3. Errors name the task
type and field, e.g. ``compare answer: criteria.brand_tone: not a criterion of this task``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

TaskType = Literal[
    "write_prompt",
    "verify_prompt",
    "write_completion",
    "review_completion",
    "compare",
    "rank",
    "rate",
    "binary",
    "rules",
    "qa",
]
TASK_TYPES: tuple[str, ...] = TaskType.__args__  # type: ignore[attr-defined]
Choice = Literal["A", "B", "tie"]
DEFAULT_CRITERIA = ("helpful", "honest", "harmless")
DEFAULT_HARMS = ("hate", "bias", "personal_data", "dangerous", "sexual", "self_harm", "illegal")


class InvalidAnswer(ValueError):
    """An answer that does not fit its task's schema (nothing was written)."""


def _ctx(info: ValidationInfo) -> dict[str, Any]:
    return info.context or {}


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WritePromptAnswer(_Answer):
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is blank")
        return v


class VerifyPromptAnswer(_Answer):
    accept: bool
    reason: str | None = None

    @model_validator(mode="after")
    def _reason(self) -> VerifyPromptAnswer:
        if not self.accept and not (self.reason or "").strip():
            raise ValueError("a rejected prompt needs a reason")
        return self


class WriteCompletionAnswer(WritePromptAnswer):
    domain: str = Field(min_length=1, description="domain tag, e.g. 'coding', 'medical', 'general'")


class ReviewCompletionAnswer(_Answer):
    decision: Literal["accept", "edit", "reject"]
    edited_text: str | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _edit(self) -> ReviewCompletionAnswer:
        if self.decision == "edit" and not (self.edited_text or "").strip():
            raise ValueError("decision 'edit' needs edited_text")
        if self.decision != "edit" and self.edited_text is not None:
            raise ValueError("edited_text is only allowed with decision 'edit'")
        if self.decision == "reject" and not (self.reason or "").strip():
            raise ValueError("a rejected completion needs a reason")
        return self


class CompareAnswer(_Answer):
    overall: Choice
    criteria: dict[str, Choice] = {}
    harms: list[str] = []  # harm sub-categories present in either response
    both_bad: bool | None = None  # neither response is acceptable (whatever ``overall`` says)
    strength: int | None = Field(None, ge=1, le=3, description="how clear the preference is: 1 slight .. 3 strong")
    rationale: str | None = None

    @model_validator(mode="after")
    def _known(self, info: ValidationInfo) -> CompareAnswer:
        ctx = _ctx(info)
        allowed = ctx.get("criteria")
        if allowed is not None:
            for name in self.criteria:
                if name not in allowed:
                    raise ValueError(f"criteria.{name}: not a criterion of this task (expected one of {list(allowed)})")
            missing = [c for c in allowed if c not in self.criteria]
            if missing and ctx.get("require_criteria", False):
                raise ValueError(f"criteria missing: {missing}")
        harms = ctx.get("harms")
        if harms is not None:
            for h in self.harms:
                if h not in harms:
                    raise ValueError(f"harms: {h!r} is not a harm category of this task (expected some of {list(harms)})")
        return self


class RankAnswer(_Answer):
    order: list[int] = Field(description="indices of the task's responses, best first")

    @model_validator(mode="after")
    def _perm(self, info: ValidationInfo) -> RankAnswer:
        k = _ctx(info).get("k", len(self.order))
        if sorted(self.order) != list(range(k)):
            raise ValueError(f"order must be a permutation of 0..{k - 1} (the {k} responses), got {self.order}")
        return self


class RateAnswer(_Answer):
    score: int

    @model_validator(mode="after")
    def _scale(self, info: ValidationInfo) -> RateAnswer:
        lo, hi = _ctx(info).get("scale", (1, 7))
        if not lo <= self.score <= hi:
            raise ValueError(f"score must be in {lo}..{hi}, got {self.score}")
        return self


class BinaryAnswer(_Answer):
    good: bool


class RulesAnswer(_Answer):
    violations: dict[str, bool]

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> RulesAnswer:
        rules = _ctx(info).get("rules")
        if rules is not None:
            extra = sorted(set(self.violations) - set(rules))
            missing = sorted(set(rules) - set(self.violations))
            if extra or missing:
                raise ValueError(f"violations must answer exactly the task's rules; unknown {extra}, missing {missing}")
        return self


class QAAnswer(_Answer):
    answers: dict[str, str]

    @model_validator(mode="after")
    def _questions(self, info: ValidationInfo) -> QAAnswer:
        questions = _ctx(info).get("questions")
        if questions is None:
            return self
        for q in questions:
            qid = q["id"]
            if qid not in self.answers:
                raise ValueError(f"answers.{qid}: question not answered")
            options = q.get("options")
            if options and self.answers[qid] not in options:
                raise ValueError(f"answers.{qid}: {self.answers[qid]!r} is not one of {options}")
        extra = sorted(set(self.answers) - {q["id"] for q in questions})
        if extra:
            raise ValueError(f"answers for unknown questions: {extra}")
        return self


ANSWER_SCHEMAS: dict[str, type[_Answer]] = {
    "write_prompt": WritePromptAnswer,
    "verify_prompt": VerifyPromptAnswer,
    "write_completion": WriteCompletionAnswer,
    "review_completion": ReviewCompletionAnswer,
    "compare": CompareAnswer,
    "rank": RankAnswer,
    "rate": RateAnswer,
    "binary": BinaryAnswer,
    "rules": RulesAnswer,
    "qa": QAAnswer,
}


def validate_answer(task_type: str, answer: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``answer`` for a task of ``task_type`` with settings ``payload``; return it normalised.

    Raises :class:`InvalidAnswer` with one line per problem (field path and message).
    """
    schema = ANSWER_SCHEMAS.get(task_type)
    if schema is None:
        raise InvalidAnswer(f"unknown task type {task_type!r}; expected one of {list(ANSWER_SCHEMAS)}")
    if not isinstance(answer, dict):
        raise InvalidAnswer(f"{task_type} answer: expected a JSON object, got {type(answer).__name__}")
    try:
        return schema.model_validate(answer, context=payload or {}).model_dump(exclude_none=True)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
        raise InvalidAnswer(f"{task_type} answer: " + "; ".join(lines)) from None


def label_of(task_type: str, answer: dict[str, Any]) -> Hashable | None:
    """The categorical label used for agreement and aggregation (None for writing tasks)."""
    if task_type == "compare":
        return answer["overall"]
    if task_type == "verify_prompt":
        return "accept" if answer["accept"] else "reject"
    if task_type == "review_completion":
        return answer["decision"]
    if task_type == "rate":
        return answer["score"]
    if task_type == "binary":
        return answer["good"]
    if task_type == "rank":
        return tuple(answer["order"])
    if task_type == "rules":
        return tuple(sorted(r for r, v in answer["violations"].items() if v))
    if task_type == "qa":
        return tuple(sorted(answer["answers"].items()))
    return None
