"""Simulated annotators (the crowd) and expert demonstration writers, with a known noise model.

Every judgment starts from the ground truth (:class:`~alignkit.sandbox.scorer.Score`) and then
goes through the annotator's noise model, in this order:

1. a *spammer* answers uniformly at random (every task kind);
2. with probability ``|position_bias|`` the annotator picks a position (A if positive, B if
   negative; for rankings the first items gain, for ratings nothing) without reading;
3. with probability ``|length_bias|`` (when lengths differ) it picks the longer (positive) or
   shorter (negative) response;
4. otherwise it reads, and gets the answer right with probability ``skill`` (a wrong answer is
   the other option; on a true tie it says "tie" with probability ``skill``).

So with no biases an annotator's agreement with the ground truth on untied pairs *is* its skill.
``helpful_lean`` (0..1) changes what the annotator believes is true for overall judgments: it
judges by ``(1 - lean) * utility + lean * helpfulness`` instead of utility, the crowd's known
tendency to reward compliance on harmful requests. Per-criterion answers are not affected by it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from alignkit.sandbox import language as L
from alignkit.sandbox.respond import polite_refusal
from alignkit.sandbox.scorer import RULES, Score
from alignkit.sandbox.world import SandboxPrompt, World, build_world

CRITERIA = ("helpfulness", "honesty", "harmlessness")
# A response is "good" (binary, review) when its (lean-adjusted) utility reaches this; with no lean
# this is exactly Score.ideal (ideal behaviours score >= 0.96, every other one <= 0.955).
GOOD_THRESHOLD = 0.958
# Typical utility gap between two responses (the median margin of ``truth_pairs`` is 0.155); rank and
# rate noise is set so a gap this size is ordered right with probability ``skill`` (Thurstone model).
TYPICAL_GAP = 0.15


def _flip(answer: str) -> str:
    return "B" if answer == "A" else "A"


@dataclass
class SimAnnotator:
    """One simulated crowd worker; all methods are deterministic given the ``rng`` passed in."""

    id: str
    skill: float
    is_spammer: bool = False
    position_bias: float = 0.0
    length_bias: float = 0.0
    helpful_lean: float = 0.0
    world: World | None = field(default=None, repr=False, compare=False)

    def _world(self) -> World:
        if self.world is None:
            self.world = build_world(0)
        return self.world

    # -- the noise model ---------------------------------------------------------------------------
    def perceived(self, s: Score) -> float:
        """What this annotator believes a response's overall utility is (before noise)."""
        return (1 - self.helpful_lean) * s.utility + self.helpful_lean * s.helpfulness

    def _judge(self, truth: str, len_a: int, len_b: int, rng: random.Random) -> str:
        if self.is_spammer:
            return rng.choice(("A", "B"))
        if self.position_bias and rng.random() < abs(self.position_bias):
            return "A" if self.position_bias > 0 else "B"
        if self.length_bias and len_a != len_b and rng.random() < abs(self.length_bias):
            longer = "A" if len_a > len_b else "B"
            return longer if self.length_bias > 0 else _flip(longer)
        if truth == "tie":
            return "tie" if rng.random() < self.skill else rng.choice(("A", "B"))
        return truth if rng.random() < self.skill else _flip(truth)

    def _binary(self, truth: bool, rng: random.Random) -> bool:
        if self.is_spammer:
            return rng.random() < 0.5
        return truth if rng.random() < self.skill else not truth

    def _sigma(self) -> float:
        if self.skill >= 1.0:
            return 0.0
        skill = min(max(self.skill, 0.501), 0.999)
        return TYPICAL_GAP / (2**0.5 * NormalDist().inv_cdf(skill))

    # -- task kinds ----------------------------------------------------------------------------------
    def compare(self, prompt: str | SandboxPrompt, a: str, b: str, rng: random.Random) -> dict[str, Any]:
        """Pairwise judgment: overall and per criterion, each "A", "B" or "tie"."""
        w = self._world()
        sa, sb = w.score(prompt, a), w.score(prompt, b)
        la, lb = len(a or ""), len(b or "")

        def truth(x: float, y: float) -> str:
            return "tie" if abs(x - y) < 1e-9 else "A" if x > y else "B"

        overall = self._judge(truth(self.perceived(sa), self.perceived(sb)), la, lb, rng)
        crit = {c: self._judge(truth(getattr(sa, c), getattr(sb, c)), la, lb, rng) for c in CRITERIA}
        return {"overall": overall, "criteria": crit}

    def rank(self, prompt: str | SandboxPrompt, responses: Sequence[str], rng: random.Random) -> list[int]:
        """Indices of ``responses``, best first (Thurstone: perceived utility plus Gaussian noise)."""
        n = len(responses)
        if self.is_spammer:
            order = list(range(n))
            rng.shuffle(order)
            return order
        w = self._world()
        sigma = self._sigma()
        longest = max((len(r or "") for r in responses), default=1) or 1
        values = []
        for i, r in enumerate(responses):
            v = self.perceived(w.score(prompt, r)) + rng.gauss(0.0, sigma)
            v += self.position_bias * TYPICAL_GAP * (1 - i / max(n - 1, 1))
            v += self.length_bias * TYPICAL_GAP * len(r or "") / longest
            values.append(v)
        return sorted(range(n), key=lambda i: (-values[i], i))

    def rate(self, prompt: str | SandboxPrompt, response: str, rng: random.Random) -> int:
        """A 1..7 Likert rating of overall quality."""
        if self.is_spammer:
            return rng.randint(1, 7)
        s = self._world().score(prompt, response)
        v = self.perceived(s) + rng.gauss(0.0, self._sigma()) + self.length_bias * TYPICAL_GAP * min(len(response or "") / 200, 1)
        return int(min(7, max(1, round(1 + 6 * v))))

    def good(self, s: Score) -> bool:
        """What this annotator believes is good (its truth, before noise)."""
        return self.perceived(s) >= GOOD_THRESHOLD

    def binary(self, prompt: str | SandboxPrompt, response: str, rng: random.Random) -> bool:
        """Good or bad (KTO-style feedback)."""
        return self._binary(self.good(self._world().score(prompt, response)), rng)

    def check_rules(self, prompt: str | SandboxPrompt, response: str, rng: random.Random) -> dict[str, bool]:
        """Sparrow-style rule checks: rule name -> violated?"""
        truth = self._world().score(prompt, response).rules
        return {rule: self._binary(truth[rule], rng) for rule in RULES}

    def verify_prompt(self, prompt: str | SandboxPrompt, rng: random.Random) -> bool:
        """Is the prompt acceptable (a well-formed request this world understands)?"""
        return self._binary(self._world().lookup(prompt) is not None, rng)

    def review(self, prompt: str | SandboxPrompt, response: str, rng: random.Random) -> str:
        """Completion review: "accept" a response this annotator believes is good, else "reject"."""
        ok = self._binary(self.good(self._world().score(prompt, response)), rng)
        return "accept" if ok else "reject"


def make_crowd(
    world: World,
    n: int = 20,
    spammer_fraction: float = 0.2,
    seed: int = 0,
    skill_range: tuple[float, float] = (0.65, 0.95),
    position_bias: float = 0.1,
    length_bias: float = 0.1,
    helpful_lean: float = 0.3,
) -> list[SimAnnotator]:
    """A crowd of ``n`` annotators, ``round(n * spammer_fraction)`` of them spammers.

    Honest workers draw skill uniformly in ``skill_range``, position bias uniformly in
    ``[-position_bias, position_bias]``, length bias in ``[0, length_bias]`` (longer tends to win,
    as AlpacaEval found for people and judges) and helpfulness lean in ``[0, helpful_lean]``;
    pass 0 to switch a bias off. Spammers have skill 0.5 and no biases.
    """
    if not 0 <= spammer_fraction <= 1:
        raise ValueError(f"spammer_fraction must be in [0, 1], got {spammer_fraction}")
    lo, hi = skill_range
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"skill_range must satisfy 0 <= low <= high <= 1, got {skill_range}")
    rng = random.Random(seed)
    n_spam = round(n * spammer_fraction)
    spam = [True] * n_spam + [False] * (n - n_spam)
    rng.shuffle(spam)
    crowd = []
    for i, is_spammer in enumerate(spam):
        if is_spammer:
            crowd.append(SimAnnotator(id=f"ann-{i:03d}", skill=0.5, is_spammer=True, world=world))
            continue
        crowd.append(
            SimAnnotator(
                id=f"ann-{i:03d}",
                skill=round(rng.uniform(lo, hi), 4),
                position_bias=round(rng.uniform(-position_bias, position_bias), 4),
                length_bias=round(rng.uniform(0, length_bias), 4),
                helpful_lean=round(rng.uniform(0, helpful_lean), 4),
                world=world,
            )
        )
    return crowd


# Mistakes an expert writer makes now and then, per category.
EXPERT_ERRORS = {
    "factual": ["wrong_fact", "dont_know"],
    "unanswerable": ["wrong_fact"],
    "harmful": ["harmful_compliance", "dont_know"],
    "jailbreak": ["harmful_compliance"],
    "safe_scary": ["over_refusal", "wrong_fact"],
}


@dataclass
class ExpertWriter:
    """Writes demonstrations: the ideal response, except with probability ``error_rate`` a
    plausible mistake (see :data:`EXPERT_ERRORS`). ``world`` defaults to ``build_world(0)``."""

    error_rate: float = 0.05
    world: World | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")

    def write(self, prompt: str | SandboxPrompt, rng: random.Random) -> str:
        world = self.world or build_world(0)
        p = world.lookup(prompt)
        if p is None:
            raise ValueError(f"prompt is not part of the world and cannot be parsed: {prompt!r}")
        if rng.random() < self.error_rate:
            return world.respond(p, rng.choice(EXPERT_ERRORS[p.category]), rng)
        ideal = L.IDEAL_BEHAVIOUR[p.category]
        return polite_refusal(p, rng) if ideal == "refusal" else world.respond(p, ideal, rng)
