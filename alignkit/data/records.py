"""Typed records for every feedback shape, in TRL's column conventions.

Datasets move between alignkit, TRL and other tools by column names alone, so we validate the
columns that trainers need and let every other field ride along untouched (annotator ids,
per-criterion judgments, margins, sources). Validation happens once, at load time, so a trainer
never meets a malformed row half-way through a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant"]
RecordKind = Literal["sft", "pair", "binary", "ranking"]


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Role
    content: str


class _Record(BaseModel):
    # Unknown fields are kept: they are provenance the trainers ignore but exports must keep.
    model_config = ConfigDict(extra="allow")


def _check_text(value: str | list[Message], field: str) -> str | list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"'{field}' is empty")
    elif not value:
        raise ValueError(f"'{field}' is an empty message list")
    return value


class SFTRecord(_Record):
    """A demonstration: a whole conversation (``messages``), a ``prompt``/``completion``, or plain ``text``.

    Only assistant turns (or the completion) are trained on; everything else is context. ``text``
    (TRL's standard language-modeling shape) is trained on as a whole, without a chat template.
    """

    messages: list[Message] | None = None
    text: str | None = None
    prompt: str | list[Message] | None = None
    completion: str | list[Message] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> SFTRecord:
        if self.messages is not None:
            if not any(m.role == "assistant" for m in self.messages):
                raise ValueError("'messages' has no assistant turn, so there is nothing to learn")
            return self
        if self.text is not None and self.prompt is None and self.completion is None:
            _check_text(self.text, "text")
            return self
        if self.prompt is None and self.completion is None:
            raise ValueError("expected either 'messages', 'text' or both 'prompt' and 'completion'")
        for name in ("prompt", "completion"):
            if getattr(self, name) is None:
                raise ValueError(f"'{name}' is missing (an SFT record needs 'messages' or 'prompt' and 'completion')")
        assert self.prompt is not None and self.completion is not None  # checked just above
        _check_text(self.prompt, "prompt")
        _check_text(self.completion, "completion")
        return self


class PairRecord(_Record):
    """A pairwise preference: ``chosen`` is preferred to ``rejected`` for ``prompt``."""

    prompt: str | list[Message]
    chosen: str | list[Message]
    rejected: str | list[Message]

    @model_validator(mode="after")
    def _distinct(self) -> PairRecord:
        for name in ("prompt", "chosen", "rejected"):
            _check_text(getattr(self, name), name)
        if self.chosen == self.rejected:
            raise ValueError("'chosen' and 'rejected' are identical, so the pair carries no preference")
        return self


class BinaryRecord(_Record):
    """Binary feedback (KTO): ``label`` is True when the completion is desirable."""

    prompt: str | list[Message]
    completion: str | list[Message]
    label: bool

    @field_validator("prompt", "completion")
    @classmethod
    def _non_empty(cls, v: Any, info: Any) -> Any:
        return _check_text(v, info.field_name)


class RankingRecord(_Record):
    """A ranking: ``completions`` ordered best first (ties are expressed as equal ``ranks``)."""

    prompt: str | list[Message]
    completions: list[str | list[Message]] = Field(min_length=2)
    ranks: list[int] | None = None

    @model_validator(mode="after")
    def _ranks_match(self) -> RankingRecord:
        _check_text(self.prompt, "prompt")
        if self.ranks is not None and len(self.ranks) != len(self.completions):
            raise ValueError(f"'ranks' has {len(self.ranks)} entries but 'completions' has {len(self.completions)}")
        return self


RECORD_TYPES: dict[RecordKind, type[_Record]] = {
    "sft": SFTRecord,
    "pair": PairRecord,
    "binary": BinaryRecord,
    "ranking": RankingRecord,
}


def detect_kind(row: dict[str, Any]) -> RecordKind:
    """Guess the record kind from its columns, the way TRL does, so users need not say it."""
    if "chosen" in row and "rejected" in row:
        return "pair"
    if "completions" in row:
        return "ranking"
    if "label" in row and "completion" in row:
        return "binary"
    return "sft"


def record_texts(records: Sequence[dict[str, Any]]) -> list[str]:
    """All text in SFT/pair/binary records: what the tiny model's tokenizer is trained on."""
    texts: list[str] = []
    for r in records:
        for key in ("prompt", "completion", "chosen", "rejected", "text"):
            value = r.get(key)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(str(m.get("content", "")) for m in value if isinstance(m, dict))
        for m in r.get("messages") or []:
            texts.append(str(m.get("content", "")))
        for c in r.get("completions") or []:
            texts.append(str(c))
    return texts
