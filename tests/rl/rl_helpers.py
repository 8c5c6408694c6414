"""Helpers for the online-RL tests: a rule reward and a policy wrapper that likes to stop."""

from __future__ import annotations

import json
from pathlib import Path

import torch

PROMPTS = ["What colour is the sky?", "one two three", "How do I kill a stuck process?", "The river of Varnholt is"]


def count_e(prompts, responses):
    """Rule reward: a quarter point per letter 'e' in the response (easy for a tiny model to learn)."""
    return [r.count("e") / 4 for r in responses]


def write_prompts(path: Path, prompts=PROMPTS) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def read_metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if line.strip()]


class StopBias(torch.nn.Module):
    """Wraps a causal LM and adds ``bias`` to the EOS logit, so sampled responses often stop early."""

    def __init__(self, model: torch.nn.Module, eos_id: int, bias: float) -> None:
        super().__init__()
        self.inner, self.eos_id, self.bias = model, eos_id, bias

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        out.logits[..., self.eos_id] += self.bias
        return out

    def save_pretrained(self, *args, **kwargs):
        return self.inner.save_pretrained(*args, **kwargs)
