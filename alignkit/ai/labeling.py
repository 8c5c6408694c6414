"""AI preference labels (RL-CAI / RLAIF): soft labels from option log-probs, in both orders.

For a prompt and two responses, a principle is drawn from the constitution (seeded per pair) and
its comparison question is put to the feedback model. The label is the soft probability
P(A better than B) = softmax of the log-probs of "A" and "B" as the next token (the normalisation
the CAI paper uses), averaged over both presentation orders so position bias cancels. With chain
of thought the model reasons first and each order's probability is clamped to [0.4, 0.6], as
Constitutional AI does with its overconfident CoT labels.

Labels export as pair records (``chosen``/``rejected``) with the soft label kept as ``confidence``
= P(chosen better) and ``margin`` = log(confidence / (1 - confidence)), the reward gap that a
Bradley-Terry model would need to produce that probability (usable as a Llama-2-style margin).
:func:`route_low_confidence` sends uncertain labels to people; :func:`mix_preference_data` merges
AI harmlessness labels with human helpfulness labels, each row tagged with its ``source``.

Any labeler (this one, :class:`~alignkit.ai.simulated.SimulatedAILabeler`) has
``label(pairs) -> list[AILabel]`` where a pair is ``(prompt, a, b)`` or a dict with
``prompt`` and ``response_a``/``response_b`` (or ``chosen``/``rejected``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field

from alignkit.ai.backend import ChatBackend
from alignkit.ai.constitution import Constitution, load_constitution
from alignkit.ai.judge import judge_pairs


class AILabel(BaseModel):
    """A soft preference label: ``p_a`` = P(response_a better than response_b)."""

    prompt: Any
    response_a: str
    response_b: str
    p_a: float = Field(ge=0.0, le=1.0)
    p_a_by_order: list[float] = []
    principle: str = ""
    reasoning: list[str] = []
    source: str = "ai"

    @property
    def confidence(self) -> float:
        """Probability of the preferred side, in [0.5, 1]."""
        return max(self.p_a, 1.0 - self.p_a)

    @property
    def winner(self) -> str:
        return "A" if self.p_a > 0.5 else "B" if self.p_a < 0.5 else "tie"

    @property
    def consistent(self) -> bool:
        sides = {p > 0.5 for p in self.p_a_by_order}
        return len(sides) <= 1 and 0.5 not in self.p_a_by_order


class Labeler(Protocol):
    def label(self, pairs: Sequence[Any]) -> list[AILabel]: ...


def as_triple(pair: Any) -> tuple[Any, str, str]:
    """``(prompt, a, b)`` from a tuple or a record (``response_a``/``response_b`` or ``chosen``/``rejected``)."""
    if isinstance(pair, dict):
        if "response_a" in pair:
            return pair["prompt"], pair["response_a"], pair["response_b"]
        if "chosen" in pair:
            return pair["prompt"], pair["chosen"], pair["rejected"]
        raise ValueError(f"pair record needs 'prompt' and 'response_a'/'response_b' or 'chosen'/'rejected'; got {sorted(pair)}")
    prompt, a, b = pair
    return prompt, a, b


class AIPreferenceLabeler:
    """Label pairs with a feedback model under randomly drawn constitutional principles."""

    def __init__(
        self,
        backend: ChatBackend,
        constitution: Constitution | None = None,
        seed: int = 0,
        swap_positions: bool = True,
        chain_of_thought: bool = False,
        cot_band: tuple[float, float] = (0.4, 0.6),
        cot_max_tokens: int = 256,
    ) -> None:
        self.backend = backend
        self.constitution = constitution or load_constitution()
        self.seed, self.swap_positions = seed, swap_positions
        self.chain_of_thought, self.cot_band, self.cot_max_tokens = chain_of_thought, cot_band, cot_max_tokens

    def principles_for(self, n: int) -> list[Any]:
        """The principle drawn for each of ``n`` pairs (seeded by ``(seed, index)``)."""
        return [self.constitution.sample(random.Random(f"ai-label:{self.seed}:{i}")) for i in range(n)]

    def label(self, pairs: Sequence[Any]) -> list[AILabel]:
        triples = [as_triple(p) for p in pairs]
        principles = self.principles_for(len(triples))
        verdicts = judge_pairs(
            self.backend,
            triples,
            [p.comparison for p in principles],
            swap=self.swap_positions,
            chain_of_thought=self.chain_of_thought,
            cot_band=self.cot_band,
            cot_max_tokens=self.cot_max_tokens,
            seed=self.seed,
        )
        return [
            AILabel(
                prompt=prompt,
                response_a=a,
                response_b=b,
                p_a=v.p_a,
                p_a_by_order=v.p_a_by_order,
                principle=pr.name,
                reasoning=v.reasoning,
            )
            for (prompt, a, b), pr, v in zip(triples, principles, verdicts)
        ]


def _confidence(label: AILabel | dict[str, Any]) -> float:
    if isinstance(label, AILabel):
        return label.confidence
    if "confidence" in label:
        return float(label["confidence"])
    if "p_a" in label:
        return max(float(label["p_a"]), 1.0 - float(label["p_a"]))
    raise ValueError(f"label has neither 'confidence' nor 'p_a': {sorted(label)}")


def route_low_confidence(labels: Iterable[Any], threshold: float) -> tuple[list[Any], list[Any]]:
    """Split labels into ``(auto_accepted, needs_human)``: confidence >= threshold is accepted.

    Works on :class:`AILabel` objects and on exported records (their ``confidence`` field).
    """
    if not 0.5 <= threshold <= 1.0:
        raise ValueError(f"threshold is a confidence in [0.5, 1], got {threshold}")
    accepted: list[Any] = []
    needs_human: list[Any] = []
    for label in labels:
        (accepted if _confidence(label) >= threshold else needs_human).append(label)
    return accepted, needs_human


def preference_records(labels: Sequence[AILabel], drop_ties: bool = True, eps: float = 1e-6) -> list[dict[str, Any]]:
    """Pair records (``prompt``/``chosen``/``rejected``) carrying the soft label.

    ``confidence`` = P(chosen better), ``margin`` = log-odds of it (clipped to ``[eps, 1-eps]`` so it
    stays finite). Exact ties (0.5) carry no preference and are dropped unless ``drop_ties=False``;
    identical or empty responses are always dropped (they fail pair validation).
    """
    rows = []
    for lab in labels:
        if lab.response_a == lab.response_b or not lab.response_a.strip() or not lab.response_b.strip():
            continue
        if drop_ties and lab.p_a == 0.5:
            continue
        a_wins = lab.p_a >= 0.5
        c = min(max(lab.confidence, eps), 1.0 - eps)
        rows.append(
            {
                "prompt": lab.prompt,
                "chosen": lab.response_a if a_wins else lab.response_b,
                "rejected": lab.response_b if a_wins else lab.response_a,
                "confidence": lab.confidence,
                "margin": math.log(c / (1.0 - c)),
                "principle": lab.principle,
                "p_by_order": [p if a_wins else 1.0 - p for p in lab.p_a_by_order],
                "source": lab.source,
            }
        )
    return rows


def mix_preference_data(
    ai_records: Sequence[dict[str, Any]],
    human_records: Sequence[dict[str, Any]],
    ai_source: str = "ai-harmlessness",
    human_source: str = "human-helpfulness",
    seed: int | None = 0,
) -> list[dict[str, Any]]:
    """One pair dataset from AI harmlessness labels and human helpfulness labels (as in RL-CAI).

    Every row gets ``source`` (the given names, overriding what a row had, which is kept in
    ``origin``). Rows are shuffled with ``seed`` (``None`` keeps AI rows first, then human ones).
    """
    mixed = []
    for records, source in ((ai_records, ai_source), (human_records, human_source)):
        for row in records:
            row = dict(row)
            if "source" in row and row["source"] != source:
                row["origin"] = row["source"]
            row["source"] = source
            mixed.append(row)
    if seed is not None:
        random.Random(seed).shuffle(mixed)
    return mixed
