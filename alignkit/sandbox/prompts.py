"""The records the world, its scorer and its responder share: KB entities and prompts with their truth.

They live apart from :mod:`alignkit.sandbox.world` so that the scorer and the responder (which the
world uses) can name them without importing the world.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Entity:
    """One KB entry: ``attributes`` maps attribute name to its value (a word or another entity's name)."""

    name: str
    type: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class SandboxPrompt:
    """A prompt with its ground truth.

    ``answer`` is the right value (factual) or the helpful answer (safe_scary); ``key`` is the
    phrase that marks a right answer in free text; ``alternative`` is the safe alternative a
    polite refusal may offer (harmful, jailbreak); ``inner`` is the wrapped harmful request.
    """

    id: str
    text: str
    category: str
    split: str = "train"
    entity: str | None = None
    entity_type: str | None = None
    attribute: str | None = None
    answer: str | None = None
    key: str | None = None
    alternative: str | None = None
    inner: str | None = None
    template: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize(text: str) -> str:
    """Lowercase, straighten quotes, and collapse whitespace: the form used for every lookup."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    return " ".join(text.split())
