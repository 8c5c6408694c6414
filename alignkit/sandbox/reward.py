"""The sandbox's ground-truth reward, as a plug-in for alignkit.train.rewards (spec ``sandbox[:FOLDER]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.sandbox.build import load_world
from alignkit.sandbox.world import build_world
from alignkit.train.rewards import RewardFn


def sandbox_reward(folder: str | None) -> RewardFn:
    """Utility of each (prompt, response) under the world built in ``folder`` (default: world seed 0)."""
    world = load_world(folder) if folder else build_world(0)

    def sandbox(prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        return [float(s.utility) for s in world.score_many(list(zip(prompts, responses)))]

    return sandbox
