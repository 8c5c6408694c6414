"""Model-side settings that configs carry without importing torch (so the CLI can build them cheaply)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LoraSettings(BaseModel):
    """LoRA via ``peft``; ``target_modules='all-linear'`` adapts every linear layer but the head."""

    r: int = Field(8, gt=0)
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
