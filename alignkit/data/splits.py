"""The held-out slice of a dataset, chosen the same way by every trainer."""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def split_eval(records: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Deterministic held-out slice: same seed, same split (so resumed runs see the same data)."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(fraction * len(records))))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]
