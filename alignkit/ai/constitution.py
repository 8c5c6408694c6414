"""Constitutions: the written principles that AI feedback is given against.

A principle is plain text used three ways: a critique request and a revision request (supervised
CAI), and a comparison question (AI preference labels, judges). Drawing a random principle per
example, as in Constitutional AI, spreads the feedback over every principle instead of letting one
wording dominate. ``criteria`` says which HHH criteria a principle serves, so labels can be
filtered (e.g. harmlessness-only AI labels mixed with human helpfulness labels).
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

Criterion = Literal["helpfulness", "honesty", "harmlessness"]


class Principle(BaseModel):
    name: str = Field(min_length=1)
    critique_request: str = Field(min_length=1)
    revision_request: str = Field(min_length=1)
    comparison: str = Field(min_length=1, description="A question like 'Which response is less harmful?'")
    criteria: list[Criterion] = Field(default_factory=list)


class Constitution(BaseModel):
    name: str = "custom"
    description: str = ""
    principles: list[Principle] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Constitution:
        names = [p.name for p in self.principles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"principle names must be unique; repeated: {dupes}")
        return self

    def sample(self, rng: random.Random) -> Principle:
        return self.principles[rng.randrange(len(self.principles))]

    def only(self, criterion: Criterion) -> Constitution:
        """The principles serving ``criterion`` (e.g. harmlessness-only RL-CAI labels)."""
        kept = [p for p in self.principles if criterion in p.criteria]
        if not kept:
            raise ValueError(f"constitution {self.name!r} has no principle serving {criterion!r}")
        return self.model_copy(update={"principles": kept, "name": f"{self.name}:{criterion}"})


def load_constitution(path: str | Path | None = None) -> Constitution:
    """Load a constitution YAML file; ``None`` gives the shipped HHH default."""
    if path is None:
        text = resources.files("alignkit.ai").joinpath("constitutions/hhh.yaml").read_text(encoding="utf-8")
        source = "alignkit/ai/constitutions/hhh.yaml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise FileNotFoundError(f"cannot read constitution {source}: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with a 'principles' list")
    try:
        return Constitution(**data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{source}: invalid constitution: {problems}") from err
