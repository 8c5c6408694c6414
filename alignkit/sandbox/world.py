"""The sandbox world: a seeded knowledge base of fictional entities and a prompt distribution.

Everything is generated from one seed with ``random.Random`` (never the global RNG, never
``hash()``), so two builds with the same config are identical, byte for byte. The knowledge base
is modest (about a hundred entities with three attributes each) so a tiny model can memorise part
of it; "unanswerable" prompts ask about names built the same way that are guaranteed *not* to be
in it, so only knowing the KB tells them apart.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from alignkit.sandbox import language as L
from alignkit.sandbox.prompts import Entity, SandboxPrompt, normalize
from alignkit.sandbox.respond import all_templates_text, respond
from alignkit.sandbox.scorer import Scorer

Split = Literal["train", "eval", "test"]
SPLITS: tuple[str, ...] = ("train", "eval", "test")

__all__ = ["SPLITS", "Entity", "SandboxPrompt", "Split", "World", "WorldConfig", "build_world", "normalize"]


class WorldConfig(BaseModel):
    """Size and shape of a sandbox world; the seed makes it reproducible."""

    seed: int = Field(0, description="Seed for the knowledge base, prompts and splits.")
    n_towns: int = Field(30, ge=2, le=200, description="Towns in the knowledge base.")
    n_people: int = Field(40, ge=2, le=200, description="People in the knowledge base.")
    n_products: int = Field(30, ge=1, le=200, description="Products in the knowledge base.")
    n_unknown: int = Field(30, ge=1, le=200, description="Made-up entities NOT in the KB (for unanswerable prompts).")
    harmful_per_template: int = Field(14, ge=1, le=100, description="Harmful prompts per harmful template.")
    safe_per_template: int = Field(
        12, ge=1, le=100, description="Safe-but-scary prompts per template (templates with a town slot)."
    )
    jailbreak_fraction: float = Field(0.6, ge=0.0, le=1.0, description="Harmful prompts that also get a jailbreak-wrapped copy.")
    split_fractions: tuple[float, float, float] = Field((0.7, 0.15, 0.15), description="train/eval/test shares.")


def _make_name(rng: random.Random, n_syllables: int) -> str:
    return "".join(rng.choice(L.SYLLABLES) for _ in range(n_syllables)).capitalize()


def _template_words() -> set[str]:
    """Every word of the fixed language (values, markers, templates): names must avoid them all."""
    words: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, str):
            words.update(re.findall(r"[a-z]+", x.lower()))
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    for name in dir(L):
        if name.isupper():
            walk(getattr(L, name))
    return words


class _NameMaker:
    """Unique names, none of which collides with a word the scorer treats as a marker or value."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used = _template_words()

    def _take(self, make) -> str:
        """A fresh name whose distinguishing word (town name, surname, product brand) is unused."""
        for _ in range(10_000):
            name = make()
            word = name.split()[-1] if " " in name and name.split()[-1].lower() not in L.PRODUCT_KINDS else name.split()[0]
            if word.lower() not in self.used:
                self.used.add(word.lower())
                return name
        raise RuntimeError("ran out of distinct names; lower the entity counts")

    def town(self) -> str:
        return self._take(lambda: _make_name(self.rng, self.rng.choice((2, 3))))

    def person(self) -> str:
        # First names repeat across people, surnames never do: "Ada Velmo" and "Ada Rudor" are distinct.
        return self._take(lambda: f"{self.rng.choice(L.FIRST_NAMES)} {_make_name(self.rng, 2)}")

    def product(self) -> str:
        return self._take(lambda: f"{_make_name(self.rng, 2)} {self.rng.choice(L.PRODUCT_KINDS)}")


def _build_kb(config: WorldConfig, rng: random.Random) -> tuple[dict[str, Entity], list[Entity]]:
    names = _NameMaker(rng)
    towns = [names.town() for _ in range(config.n_towns)]
    people = [names.person() for _ in range(config.n_people)]
    products = [names.product() for _ in range(config.n_products)]
    pools = {"town": towns, "person": people}
    kb: dict[str, Entity] = {}
    for etype, entity_names in (("town", towns), ("person", people), ("product", products)):
        for name in entity_names:
            attrs = {}
            for attr, domain in L.ENTITY_TYPES[etype].items():
                pool = pools[domain] if isinstance(domain, str) else domain
                attrs[attr] = rng.choice(pool)
            kb[name] = Entity(name=name, type=etype, attributes=attrs)
    # Unknown entities: same generators, guaranteed absent from the KB (the name maker never repeats).
    unknown: list[Entity] = []
    kinds = ["town", "person", "product"]
    for i in range(config.n_unknown):
        etype = kinds[i % 3]
        name = getattr(names, etype)()
        unknown.append(Entity(name=name, type=etype, attributes={}))
    return kb, unknown


def _domain_values(kb: dict[str, Entity]) -> dict[str, list[str]]:
    """Attribute -> every value it can take in this world (for wrong facts and fact matching)."""
    towns = [e.name for e in kb.values() if e.type == "town"]
    people = [e.name for e in kb.values() if e.type == "person"]
    out = {}
    for attrs in L.ENTITY_TYPES.values():
        for attr, domain in attrs.items():
            out[attr] = list({"town": towns, "person": people}[domain] if isinstance(domain, str) else domain)
    return out


def _build_prompts(config: WorldConfig, kb: dict[str, Entity], unknown: list[Entity], rng: random.Random) -> list[SandboxPrompt]:
    prompts: list[SandboxPrompt] = []
    seen: set[str] = set()

    def add(**kw: Any) -> None:
        key = normalize(kw["text"])
        if key in seen:
            return
        seen.add(key)
        prompts.append(SandboxPrompt(id="", **kw))

    for ent in kb.values():
        for attr, value in ent.attributes.items():
            for t, template in enumerate(L.QUESTION_TEMPLATES[attr]):
                add(
                    text=template.format(e=ent.name),
                    category="factual",
                    entity=ent.name,
                    entity_type=ent.type,
                    attribute=attr,
                    answer=value,
                    key=value,
                    template=t,
                )
    for ent in unknown:
        for attr in L.ENTITY_TYPES[ent.type]:
            t = rng.randrange(len(L.QUESTION_TEMPLATES[attr]))
            add(
                text=L.QUESTION_TEMPLATES[attr][t].format(e=ent.name),
                category="unanswerable",
                entity=ent.name,
                entity_type=ent.type,
                attribute=attr,
                template=t,
            )

    towns = [e for e in kb.values() if e.type == "town"]
    people = [e for e in kb.values() if e.type == "person"]
    harmful: list[SandboxPrompt] = []
    for t, (template, alternative) in enumerate(L.HARMFUL_TEMPLATES):
        for _ in range(config.harmful_per_template):
            town, person = rng.choice(towns), rng.choice(people)
            slots = {"town": town.name, "person": person.name, "export": rng.choice(L.EXPORTS)}
            entity = person.name if "{person}" in template else town.name
            before = len(prompts)
            add(
                text=template.format(**slots),
                category="harmful",
                entity=entity,
                alternative=alternative.format(**slots),
                template=t,
            )
            if len(prompts) > before:
                harmful.append(prompts[-1])
    for t, (template, answer, key) in enumerate(L.SAFE_SCARY_TEMPLATES):
        reps = config.safe_per_template if "{town}" in template else 1
        for _ in range(reps):
            town = rng.choice(towns)
            add(
                text=template.format(town=town.name),
                category="safe_scary",
                entity=town.name if "{town}" in template else None,
                answer=answer,
                key=key,
                template=t,
            )
    for inner in harmful:
        if rng.random() < config.jailbreak_fraction:
            w = rng.randrange(len(L.JAILBREAK_WRAPPERS))
            add(
                text=L.JAILBREAK_WRAPPERS[w].format(inner=inner.text),
                category="jailbreak",
                entity=inner.entity,
                alternative=inner.alternative,
                inner=inner.text,
                template=w,
            )
    return prompts


def _assign_splits(
    prompts: list[SandboxPrompt], fractions: tuple[float, float, float], rng: random.Random
) -> list[SandboxPrompt]:
    """Stratified by category; a jailbreak goes to the split of the harmful request it wraps (no leak)."""
    total = sum(fractions)
    split_of: dict[str, str] = {}
    out: list[SandboxPrompt] = []
    by_cat: dict[str, list[SandboxPrompt]] = {}
    for p in prompts:
        by_cat.setdefault(p.category, []).append(p)
    for cat in L.CATEGORIES:
        if cat == "jailbreak":
            continue
        items = list(by_cat.get(cat, []))
        rng.shuffle(items)
        n = len(items)
        n_train = round(n * fractions[0] / total)
        n_eval = round(n * fractions[1] / total)
        for i, p in enumerate(items):
            split = "train" if i < n_train else "eval" if i < n_train + n_eval else "test"
            split_of[p.text] = split
            out.append(p)
    for p in by_cat.get("jailbreak", []):
        split_of[p.text] = split_of.get(p.inner or "", "train")
        out.append(p)
    final = []
    counters: dict[str, int] = {}
    for p in out:
        counters[p.category] = counters.get(p.category, 0) + 1
        final.append(
            SandboxPrompt(**{**p.to_dict(), "id": f"{p.category}-{counters[p.category]:04d}", "split": split_of[p.text]})
        )
    order = list(range(len(final)))
    rng.shuffle(order)  # a mixed stream, so world.prompts(n=...) takes every category
    return [final[i] for i in order]


class World:
    """A built sandbox world: KB, prompts by split, and the ground-truth responder and scorer.

    Build it with :func:`build_world`; treat it as read-only.
    """

    def __init__(self, config: WorldConfig) -> None:
        rng = random.Random(config.seed)
        self.config = config
        self.kb, self.unknown = _build_kb(config, rng)
        self.values = _domain_values(self.kb)
        self._prompts = _assign_splits(_build_prompts(config, self.kb, self.unknown, rng), config.split_fractions, rng)
        self.by_text: dict[str, SandboxPrompt] = {normalize(p.text): p for p in self._prompts}
        self.by_id: dict[str, SandboxPrompt] = {p.id: p for p in self._prompts}
        self._kb_lower = {name.lower(): ent for name, ent in self.kb.items()}
        self._scorer = Scorer(self)

    # -- prompts -----------------------------------------------------------------------------------
    def prompts(
        self, split: str = "train", n: int | None = None, category: str | Iterable[str] | None = None
    ) -> list[SandboxPrompt]:
        """Prompts of one split (or ``"all"``), optionally one or more categories, at most ``n``.

        The order is a fixed seeded shuffle, so the first ``n`` mix all categories.
        """
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {SPLITS} or 'all', got {split!r}")
        cats = {category} if isinstance(category, str) else set(category) if category is not None else None
        if cats is not None and not cats <= set(L.CATEGORIES):
            raise ValueError(f"unknown category {sorted(cats - set(L.CATEGORIES))}; expected some of {L.CATEGORIES}")
        out = [p for p in self._prompts if (split == "all" or p.split == split) and (cats is None or p.category in cats)]
        return out if n is None else out[:n]

    def lookup(self, prompt: str | SandboxPrompt) -> SandboxPrompt | None:
        """The world's prompt for this text: exact (normalised) lookup, then a parse of the wording."""
        if isinstance(prompt, SandboxPrompt):
            return prompt
        if not isinstance(prompt, str):
            return None
        key = normalize(prompt)
        hit = self.by_text.get(key)
        if hit is not None:
            return hit
        return self._scorer.parse_prompt(key)

    def entity(self, name: str) -> Entity | None:
        return self._kb_lower.get(name.lower())

    # -- responses and scores ----------------------------------------------------------------------
    def respond(self, prompt: str | SandboxPrompt, behaviour: str, rng: random.Random) -> str:
        """A response text to ``prompt`` that the scorer labels ``behaviour`` (see ``BEHAVIOURS_FOR``)."""
        p = self.lookup(prompt)
        if p is None:
            raise ValueError(f"prompt is not part of this world and cannot be parsed: {prompt!r}")
        return respond(self, p, behaviour, rng)

    def ideal_behaviour(self, prompt: str | SandboxPrompt) -> str:
        p = self.lookup(prompt)
        if p is None:
            raise ValueError(f"prompt is not part of this world: {prompt!r}")
        return L.IDEAL_BEHAVIOUR[p.category]

    def score(self, prompt_text: str | SandboxPrompt, response_text: Any):
        """Ground-truth :class:`~alignkit.sandbox.scorer.Score`; never raises on any response."""
        return self._scorer.score(prompt_text, response_text)

    def score_many(self, pairs: Iterable[tuple[Any, Any]], progress: bool = False) -> list:
        """Score (prompt, response) pairs; prompt lookups are cached, so 10k pairs take about a second."""
        return self._scorer.score_many(pairs, progress=progress)

    # -- export --------------------------------------------------------------------------------------
    def kb_records(self) -> list[dict[str, Any]]:
        rows = [{"name": e.name, "type": e.type, "in_kb": True, **e.attributes} for e in self.kb.values()]
        rows += [{"name": e.name, "type": e.type, "in_kb": False} for e in self.unknown]
        return rows

    def fact_sentences(self, name: str) -> list[str]:
        """The KB entry of ``name`` stated in the canonical form ("The river of X is the Y.")."""
        ent = self.kb[name]
        return [L.FACT_TEMPLATES[a][0].format(e=ent.name, v=v) for a, v in ent.attributes.items()]

    def vocabulary(self) -> set[str]:
        """Distinct lowercase words in every prompt and every canonical response (a size check)."""
        words: set[str] = set()
        for text in [p.text for p in self._prompts] + all_templates_text(self):
            words.update(re.findall(r"[a-z']+", text.lower()))
        return words


_CACHE: dict[str, World] = {}


def build_world(seed: int = 0, config: WorldConfig | None = None) -> World:
    """Build (or reuse) the world for ``config`` (or the default config with ``seed``). Deterministic."""
    config = config or WorldConfig(seed=seed)
    key = config.model_dump_json()
    if key not in _CACHE:
        _CACHE[key] = World(config)
    return _CACHE[key]
