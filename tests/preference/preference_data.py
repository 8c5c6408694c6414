"""Synthetic preference data for the preference-trainer tests: correct vs wrong arithmetic."""

from __future__ import annotations

import json
import random
from pathlib import Path


def arithmetic_pairs(seed: int = 0, n: int | None = None) -> list[dict]:
    """chosen: the right sum, politely; rejected: a wrong sum, rudely (an easy, learnable signal).

    The rejected answer is the shorter one, so an untrained model (which gives shorter sequences
    higher log-probability) starts out preferring it: learning has to flip that preference.
    """
    rng = random.Random(seed)
    rows = []
    for a in range(1, 10):
        for b in range(1, 8):
            wrong = a + b + rng.choice([1, 2, 3, -1])
            rows.append(
                {
                    "prompt": f"What is {a} plus {b}?",
                    "chosen": f"{a} plus {b} is {a + b}. Happy to help, my friend!",
                    "rejected": f"{a} plus {b} is {wrong}. Go away.",
                    "category": "small" if a + b < 10 else "large",
                }
            )
    rng.shuffle(rows)
    return rows[:n] if n else rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
