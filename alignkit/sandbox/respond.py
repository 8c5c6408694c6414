"""Response texts that exhibit a chosen behaviour, with some wording and length variety.

Each behaviour is written with its marker phrase (see :mod:`alignkit.sandbox.language`), so the
scorer labels what this module writes with the behaviour it was asked for; the tests check that
round trip for every category and behaviour.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from alignkit.sandbox import language as L
from alignkit.sandbox.prompts import SandboxPrompt

if TYPE_CHECKING:
    from alignkit.sandbox.world import World


def _fact(prompt: SandboxPrompt, value: str, rng: random.Random) -> str:
    template = rng.choice(L.FACT_TEMPLATES[prompt.attribute or "river"])
    return template.format(e=prompt.entity, v=value)


def _wrap(core: str, rng: random.Random) -> str:
    return f"{rng.choice(L.ANSWER_PREFIXES)}{core}{rng.choice(L.ANSWER_SUFFIXES)}"


def _correct(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    if p.category == "factual":
        return _wrap(_fact(p, p.answer or "", rng), rng)
    return _wrap(p.answer or "", rng)  # safe_scary: the helpful answer


def _wrong(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    if p.category == "safe_scary":
        others = [a for i, (_, a, _) in enumerate(L.SAFE_SCARY_TEMPLATES) if i != p.template]
        return _wrap(rng.choice(others), rng)
    attr = p.attribute or "river"
    choices = [v for v in world.values[attr] if v != p.answer and v != p.entity]
    return _wrap(_fact(p, rng.choice(choices), rng), rng)


def _dont_know(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    if p.category in ("harmful", "jailbreak", "safe_scary"):
        return rng.choice(L.DONT_KNOW_HOW_TEXTS)
    name = f"the {p.entity}" if p.entity_type == "product" else p.entity
    return rng.choice(L.DONT_KNOW_TEXTS).format(e=name)


def _refusal(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    text = rng.choice(L.REFUSAL_TEXTS)
    if p.alternative and rng.random() < 0.6:
        text += f" Instead, {p.alternative}."
    return text


def polite_refusal(p: SandboxPrompt, rng: random.Random) -> str:
    """The best refusal: a marker sentence plus the prompt's safe alternative (used for demonstrations)."""
    text = rng.choice(L.REFUSAL_TEXTS)
    return f"{text} Instead, {p.alternative}." if p.alternative else text


def _over_refusal(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    return rng.choice(L.OVER_REFUSAL_TEXTS)


def _rude(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    # On answerable prompts rudeness often comes *with* the right answer: the insult is the harm.
    if p.category in ("factual", "safe_scary") and rng.random() < 0.5:
        return rng.choice(L.RUDE_PREFIXES) + _correct(world, p, rng).strip()
    return rng.choice(L.RUDE_TEXTS)


def _harmful(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    steps = " ".join(L.HARMFUL_STEP.format(i=i) for i in range(1, rng.randint(2, 4) + 1))
    return f"{rng.choice(L.HARMFUL_OPENERS)} {steps}"


def _garbled(world: World, p: SandboxPrompt, rng: random.Random) -> str:
    if rng.random() < 0.1:
        return ""
    return " ".join(rng.choice(L.FILLER_WORDS) for _ in range(rng.randint(3, 12)))


_WRITERS = {
    "correct": _correct,
    "wrong_fact": _wrong,
    "dont_know": _dont_know,
    "refusal": _refusal,
    "over_refusal": _over_refusal,
    "rude": _rude,
    "harmful_compliance": _harmful,
    "garbled": _garbled,
}


def respond(world: World, prompt: SandboxPrompt, behaviour: str, rng: random.Random) -> str:
    """Write a response to ``prompt`` showing ``behaviour``; raise if it cannot occur in that category."""
    allowed = L.BEHAVIOURS_FOR.get(prompt.category, [])
    if behaviour not in allowed:
        raise ValueError(f"behaviour {behaviour!r} cannot occur for a {prompt.category!r} prompt; expected one of {allowed}")
    return _WRITERS[behaviour](world, prompt, rng)


def all_templates_text(world: World) -> list[str]:
    """Every fixed response sentence (with the KB filled in) — for vocabulary size checks."""
    texts = list(L.REFUSAL_TEXTS + L.OVER_REFUSAL_TEXTS + L.DONT_KNOW_HOW_TEXTS + L.RUDE_TEXTS + L.RUDE_PREFIXES)
    texts += L.HARMFUL_OPENERS + [L.HARMFUL_STEP] + L.ANSWER_PREFIXES + L.ANSWER_SUFFIXES + L.DONT_KNOW_TEXTS
    texts += [a for _, a in L.HARMFUL_TEMPLATES] + [a for _, a, _ in L.SAFE_SCARY_TEMPLATES]
    for ent in world.kb.values():
        for attr, value in ent.attributes.items():
            texts += [t.format(e=ent.name, v=value) for t in L.FACT_TEMPLATES[attr]]
    return texts
