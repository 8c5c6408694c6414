"""Datasets drawn from the world: the unaligned base corpus, curated demonstrations, and pairs.

All records are plain dicts in TRL's column conventions (``prompt``/``completion`` for SFT,
``prompt``/``chosen``/``rejected`` for pairs) with ground truth riding along in extra fields
(``category``, ``behaviour``, per-criterion preferences), which trainers ignore and evaluation
uses to measure label accuracy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, model_validator

from alignkit.sandbox import language as L
from alignkit.sandbox.respond import polite_refusal
from alignkit.sandbox.scorer import Score
from alignkit.sandbox.world import SandboxPrompt, World

DEFAULT_MIX = {"factual": 0.45, "unanswerable": 0.15, "harmful": 0.15, "safe_scary": 0.12, "jailbreak": 0.13}
FACT_SHEET_PROMPTS = ["Tell me about {e}.", "What do you know about {e}?"]  # products get "the"
CRITERIA = ("helpfulness", "honesty", "harmlessness")


def _check_mix(mix: dict[str, float]) -> dict[str, float]:
    unknown = set(mix) - set(L.CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)} in category_mix; expected some of {L.CATEGORIES}")
    if not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
        raise ValueError("category_mix needs non-negative weights with a positive sum")
    return mix


class BaseCorpusConfig(BaseModel):
    """How "unaligned" the pretraining corpus is: the rate of each behaviour per category.

    Rates are probabilities; on each prompt rudeness is drawn first (any category), then the
    category's own behaviour, and otherwise the good behaviour.
    """

    harmful_compliance_rate: float = Field(0.7, ge=0, le=1, description="Harmful/jailbreak prompts answered with harmful help.")
    hallucination_rate: float = Field(0.6, ge=0, le=1, description="Unanswerable prompts answered with a made-up fact.")
    wrong_fact_rate: float = Field(0.15, ge=0, le=1, description="Factual prompts answered with a wrong fact.")
    dont_know_rate: float = Field(0.05, ge=0, le=1, description="Factual prompts answered with 'I don't know'.")
    over_refusal_rate: float = Field(0.15, ge=0, le=1, description="Safe-but-scary prompts refused.")
    rude_rate: float = Field(0.1, ge=0, le=1, description="Any prompt answered rudely.")
    fact_sheet_fraction: float = Field(
        0.2, ge=0, le=1, description="Records that state an entity's KB entry ('Tell me about X.')."
    )
    category_mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX), description="Prompt category weights.")

    @model_validator(mode="after")
    def _valid(self) -> BaseCorpusConfig:
        _check_mix(self.category_mix)
        if self.wrong_fact_rate + self.dont_know_rate > 1:
            raise ValueError("wrong_fact_rate + dont_know_rate must be at most 1")
        return self


class _Sampler:
    """Draw prompts of a category from one split, cycling through a seeded shuffle (no early repeats)."""

    def __init__(self, world: World, split: str, mix: dict[str, float], rng: random.Random) -> None:
        self.rng = rng
        self.pools = {c: world.prompts(split, category=c) for c in mix if mix[c] > 0}
        self.pools = {c: list(ps) for c, ps in self.pools.items() if ps}
        if not self.pools:
            raise ValueError(f"split {split!r} has no prompts in categories {sorted(mix)}")
        self.cats = list(self.pools)
        self.weights = [mix[c] for c in self.cats]
        self.pos = {c: len(ps) for c, ps in self.pools.items()}

    def category(self) -> str:
        return self.rng.choices(self.cats, weights=self.weights)[0]

    def prompt(self, category: str) -> SandboxPrompt:
        pool = self.pools[category]
        if self.pos[category] >= len(pool):
            self.rng.shuffle(pool)
            self.pos[category] = 0
        self.pos[category] += 1
        return pool[self.pos[category] - 1]


def _base_behaviour(category: str, cfg: BaseCorpusConfig, rng: random.Random) -> str:
    if rng.random() < cfg.rude_rate:
        return "rude"
    r = rng.random()
    if category in ("harmful", "jailbreak"):
        return "harmful_compliance" if r < cfg.harmful_compliance_rate else "refusal"
    if category == "unanswerable":
        return "wrong_fact" if r < cfg.hallucination_rate else "dont_know"
    if category == "safe_scary":
        return "over_refusal" if r < cfg.over_refusal_rate else "correct"
    if r < cfg.wrong_fact_rate:
        return "wrong_fact"
    return "dont_know" if r < cfg.wrong_fact_rate + cfg.dont_know_rate else "correct"


def fact_sheet(world: World, name: str, rng: random.Random) -> dict[str, Any]:
    """A record stating one entity's whole KB entry, so the corpus carries *all* the knowledge
    (also the facts whose questions sit in the eval/test splits)."""
    ent = world.kb[name]
    facts = [rng.choice(L.FACT_TEMPLATES[a][:2]).format(e=ent.name, v=v) for a, v in ent.attributes.items()]
    rng.shuffle(facts)
    shown = f"the {ent.name}" if ent.type == "product" else ent.name
    return {
        "prompt": rng.choice(FACT_SHEET_PROMPTS).format(e=shown),
        "completion": " ".join(facts),
        "category": "fact_sheet",
        "behaviour": "correct",
        "prompt_id": None,
    }


def base_corpus(
    world: World, n: int, rates: BaseCorpusConfig | None = None, seed: int = 0, split: str = "train"
) -> list[dict[str, Any]]:
    """``n`` SFT-shaped records of an unaligned assistant (behaviour rates from ``rates``)."""
    cfg = rates or BaseCorpusConfig()
    rng = random.Random(seed)
    sampler = _Sampler(world, split, cfg.category_mix, rng)
    names = sorted(world.kb)
    out = []
    for _ in range(n):
        if rng.random() < cfg.fact_sheet_fraction:
            out.append(fact_sheet(world, rng.choice(names), rng))
            continue
        p = sampler.prompt(sampler.category())
        behaviour = _base_behaviour(p.category, cfg, rng)
        out.append(_record(world, p, behaviour, rng))
    return out


def _record(world: World, p: SandboxPrompt, behaviour: str, rng: random.Random) -> dict[str, Any]:
    text = world.respond(p, behaviour, rng)
    return {"prompt": p.text, "completion": text, "category": p.category, "behaviour": behaviour, "prompt_id": p.id}


def sft_demos(
    world: World, n: int = 400, seed: int = 0, split: str = "train", category_mix: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """A small curated set of ideal demonstrations (LIMA-style: few, every one right).

    Refusals always offer the safe alternative; answers use the canonical wording.
    """
    rng = random.Random(seed)
    sampler = _Sampler(world, split, _check_mix(category_mix or dict(DEFAULT_MIX)), rng)
    out = []
    for _ in range(n):
        p = sampler.prompt(sampler.category())
        behaviour = L.IDEAL_BEHAVIOUR[p.category]
        text = polite_refusal(p, rng) if behaviour == "refusal" else world.respond(p, behaviour, rng)
        out.append({"prompt": p.text, "completion": text, "category": p.category, "behaviour": behaviour, "prompt_id": p.id})
    return out


def _prefer(a: float, b: float) -> str:
    return "tie" if abs(a - b) < 1e-9 else "chosen" if a > b else "rejected"


def pair_record(prompt: str, chosen: str, rejected: str, sc: Score, sr: Score) -> dict[str, Any]:
    """A pair with its ground truth: per-criterion preference of chosen over rejected."""
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "category": sc.category,
        "chosen_behaviour": sc.behaviour,
        "rejected_behaviour": sr.behaviour,
        "chosen_utility": sc.utility,
        "rejected_utility": sr.utility,
        "margin": round(sc.utility - sr.utility, 6),
        "criteria": {c: _prefer(getattr(sc, c), getattr(sr, c)) for c in CRITERIA},
    }


def make_pairs(
    world: World,
    prompts: Sequence[str | SandboxPrompt],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    drop_ties: bool = True,
) -> list[dict[str, Any]]:
    """Pairs from any two policies' responses, ordered by ground-truth utility.

    A tie (equal utility) is dropped by default; with ``drop_ties=False`` it is kept with
    ``margin == 0`` and ``chosen`` = response A. Identical texts and pairs with an empty side are
    always dropped: they fail pair-record validation and carry no usable preference.
    """
    if not (len(prompts) == len(responses_a) == len(responses_b)):
        raise ValueError(
            f"prompts, responses_a and responses_b differ in length: {len(prompts)}, {len(responses_a)}, {len(responses_b)}"
        )
    out = []
    for prompt, a, b in zip(prompts, responses_a, responses_b):
        if a == b or not str(a).strip() or not str(b).strip():
            continue
        text = prompt.text if isinstance(prompt, SandboxPrompt) else prompt
        sa, sb = world.score(prompt, a), world.score(prompt, b)
        if abs(sa.utility - sb.utility) < 1e-9 and drop_ties:
            continue
        if sb.utility > sa.utility:
            out.append(pair_record(text, b, a, sb, sa))
        else:
            out.append(pair_record(text, a, b, sa, sb))
    return out


def truth_pairs(
    world: World,
    n: int,
    split: str = "train",
    seed: int = 0,
    ideal_share: float = 0.6,
    category_mix: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """``n`` ground-truth-labelled pairs from the world's own behaviours (no ties).

    With probability ``ideal_share`` one side is the ideal behaviour, so the set holds both
    easy contrasts (ideal vs bad) and subtle ones (two flawed answers).
    """
    rng = random.Random(seed)
    sampler = _Sampler(world, split, _check_mix(category_mix or dict(DEFAULT_MIX)), rng)
    out: list[dict[str, Any]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 20 * n + 100:
            raise RuntimeError("could not draw enough non-tied pairs; check category_mix")
        p = sampler.prompt(sampler.category())
        options = L.BEHAVIOURS_FOR[p.category]
        if rng.random() < ideal_share:
            first = L.IDEAL_BEHAVIOUR[p.category]
            second = rng.choice([b for b in options if b != first])
        else:
            first, second = rng.sample(options, 2)
        a, b = world.respond(p, first, rng), world.respond(p, second, rng)
        pair = make_pairs(world, [p], [a], [b])
        if pair:
            pair[0]["prompt_id"] = p.id
            out.append(pair[0])
    return out
