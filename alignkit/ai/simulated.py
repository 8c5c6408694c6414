"""A simulated AI labeler for the sandbox: soft labels with a known, calibrated accuracy.

It stands in for an LLM labeler in sandbox runs and tests, with the same ``label(pairs)``
interface, so the whole RLAIF path (label -> route -> train) can be measured against ground truth.

How labels are drawn: the truly better response is the one with the higher ``world.score`` value
of ``criterion`` (``utility`` by default). For each pair a confidence ``c`` is drawn uniformly from
``[accuracy - w, accuracy + w]`` with ``w = min(accuracy - 0.5, 1 - accuracy)``, and the labeler
picks the truly better response with probability ``c`` and reports P(picked better) = ``c``. So
the labels are calibrated (among labels reporting ``c``, a share ``c`` is right), overall accuracy
is ``E[c] = accuracy``, and low-confidence labels really are the unreliable ones, which is what
confidence routing needs. Pairs the ground truth ties get ``p_a = 0.5``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from alignkit.ai.labeling import AILabel, as_triple
from alignkit.data.chat import prompt_text


class SimulatedAILabeler:
    def __init__(self, world: Any, accuracy: float = 0.8, seed: int = 0, criterion: str = "utility") -> None:
        if not 0.5 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0.5, 1] (0.5 is a coin flip), got {accuracy}")
        if criterion not in ("utility", "helpfulness", "honesty", "harmlessness"):
            raise ValueError(f"criterion must be utility, helpfulness, honesty or harmlessness, got {criterion!r}")
        self.world, self.accuracy, self.seed, self.criterion = world, accuracy, seed, criterion

    def label(self, pairs: Sequence[Any]) -> list[AILabel]:
        triples = [as_triple(p) for p in pairs]
        scores = (
            self.world.score_many([(prompt_text(p), r) for p, a, b in triples for r in (a, b)])
            if hasattr(self.world, "score_many")
            else [self.world.score(prompt_text(p), r) for p, a, b in triples for r in (a, b)]
        )
        width = min(self.accuracy - 0.5, 1.0 - self.accuracy)
        labels = []
        for i, (prompt, a, b) in enumerate(triples):
            rng = random.Random(f"sim-ai:{self.seed}:{i}")
            truth_a = getattr(scores[2 * i], self.criterion)
            truth_b = getattr(scores[2 * i + 1], self.criterion)
            c = rng.uniform(self.accuracy - width, self.accuracy + width)
            right = rng.random() < c
            if truth_a == truth_b:
                p_a = 0.5
            else:
                picks_a = (truth_a > truth_b) == right
                p_a = c if picks_a else 1.0 - c
            labels.append(
                AILabel(
                    prompt=prompt,
                    response_a=a,
                    response_b=b,
                    p_a=p_a,
                    p_a_by_order=[p_a],
                    principle=f"simulated:{self.criterion}",
                    source="ai-simulated",
                )
            )
        return labels
