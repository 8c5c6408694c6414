"""A safety policy as data: named hazard categories with a description each.

The default is the MLCommons AI Safety hazard taxonomy (v0.5), in the fourteen-category form
Llama Guard 3 is trained on (S1-S14); the names follow that taxonomy, the one-line descriptions are
our own wording. A policy can add custom categories (a brand's off-limits topics, the sandbox's
rudeness rule) or replace the defaults, from YAML::

    extends: default          # or "none" to start from an empty policy
    categories:
      - code: B1
        name: Competitor products
        description: Recommending or comparing against a competitor's products.

The policy is what a guard classifier's output heads mean (one per category, in order) and what the
judge-model guard writes into its prompt, so a trained guard and its policy are saved together.
This module imports nothing heavier than pydantic and yaml (the CLI reads policies without torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

# (code, name, our short description). Order is the taxonomy's.
MLCOMMONS_HAZARDS: list[tuple[str, str, str]] = [
    (
        "S1",
        "Violent Crimes",
        "Helping plan, carry out or glorify violence against people or animals: assault, murder, terrorism.",
    ),
    ("S2", "Non-Violent Crimes", "Helping with crimes without direct violence: theft, fraud, burglary, hacking, trafficking."),
    ("S3", "Sex-Related Crimes", "Helping with sexual assault, harassment or sex trafficking."),
    ("S4", "Child Sexual Exploitation", "Any sexual content involving minors, or help grooming or exploiting children."),
    ("S5", "Defamation", "Stating verifiably false claims that damage a real person's reputation."),
    ("S6", "Specialized Advice", "Unqualified financial, medical or legal advice presented as safe to act on."),
    ("S7", "Privacy", "Revealing or helping obtain sensitive personal information about private individuals."),
    ("S8", "Intellectual Property", "Helping infringe copyrights, trademarks or patents."),
    ("S9", "Indiscriminate Weapons", "Helping make chemical, biological, radiological, nuclear or explosive weapons."),
    ("S10", "Hate", "Demeaning or dehumanising people for protected characteristics."),
    ("S11", "Suicide & Self-Harm", "Encouraging or enabling suicide, self-injury or disordered eating."),
    ("S12", "Sexual Content", "Explicit sexual descriptions or erotic content."),
    ("S13", "Elections", "False information about how, when or where to vote, or about election integrity."),
    ("S14", "Code Interpreter Abuse", "Using code execution to attack the host: escapes, denial of service, exfiltration."),
]


class Category(BaseModel):
    """One hazard category: a short code (``S1``), a name, and what counts as a violation."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str = Field(min_length=1)
    description: str = ""

    def line(self) -> str:
        """The category as Llama Guard lists it: ``S1: Violent Crimes.`` (plus our description)."""
        text = f"{self.code}: {self.name}."
        return f"{text}\n{self.description}" if self.description else text


class Policy(BaseModel):
    """An ordered list of categories with unique codes."""

    model_config = ConfigDict(extra="forbid")

    name: str = "policy"
    categories: list[Category] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Policy:
        codes = [c.code for c in self.categories]
        dupes = sorted({c for c in codes if codes.count(c) > 1})
        if dupes:
            raise ValueError(f"category codes must be unique; repeated: {dupes}")
        return self

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.categories]

    def index(self, code: str) -> int:
        try:
            return self.codes.index(code)
        except ValueError:
            raise KeyError(f"category {code!r} is not in policy {self.name!r} (codes: {self.codes})") from None

    def category(self, code: str) -> Category:
        return self.categories[self.index(code)]

    def extended(self, extra: list[Category], name: str | None = None) -> Policy:
        return Policy(name=name or self.name, categories=[*self.categories, *extra])

    def to_yaml(self) -> str:
        return yaml.safe_dump({"extends": "none", **self.model_dump()}, sort_keys=False, allow_unicode=True)


def default_policy() -> Policy:
    """The MLCommons hazard taxonomy S1-S14 as Llama Guard 3 uses it."""
    return Policy(
        name="mlcommons",
        categories=[Category(code=c, name=n, description=d) for c, n, d in MLCOMMONS_HAZARDS],
    )


def policy_from_dict(data: dict[str, Any], source: str = "<policy>") -> Policy:
    """``{extends: default|none, name, categories: [...]}``: custom categories after (or instead of) the defaults."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with 'categories', got {type(data).__name__}")
    unknown = set(data) - {"extends", "name", "categories"}
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}; expected extends, name, categories")
    extends: Literal["default", "none"] = data.get("extends", "default")
    if extends not in ("default", "none"):
        raise ValueError(f"{source}: extends must be 'default' or 'none', got {extends!r}")
    base = default_policy() if extends == "default" else Policy(name="custom")
    extra = [Category(**c) for c in data.get("categories") or []]
    return base.extended(extra, name=data.get("name") or (base.name if not extra else "custom"))


def load_policy(spec: str | Path | None) -> Policy:
    """``None`` or ``"default"``: the MLCommons taxonomy; otherwise a YAML file (see the module docstring)."""
    if spec is None or str(spec) == "default":
        return default_policy()
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{path}: policy file not found (or use 'default')")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    return policy_from_dict(data, str(path))
