"""A small, fully verifiable world for demos, tests and benchmarks (see ``docs/architecture.md``).

``build_world(seed)`` makes a fictional knowledge base and a prompt distribution in five
categories; ``World.score`` is the ground-truth HHH scorer for any response text; the crowd
(:func:`make_crowd`) are simulated annotators with known skill and biases.


Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "ExpertWriter": "crowd",
    "SimAnnotator": "crowd",
    "make_crowd": "crowd",
    "BaseCorpusConfig": "datasets",
    "base_corpus": "datasets",
    "make_pairs": "datasets",
    "sft_demos": "datasets",
    "truth_pairs": "datasets",
    "BEHAVIOURS": "language",
    "BEHAVIOURS_FOR": "language",
    "CATEGORIES": "language",
    "IDEAL_BEHAVIOUR": "language",
    "RULES": "scorer",
    "UTILITY_WEIGHTS": "scorer",
    "Score": "scorer",
    "utility_of": "scorer",
    "Entity": "world",
    "SandboxPrompt": "world",
    "World": "world",
    "WorldConfig": "world",
    "build_world": "world",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'alignkit.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"alignkit.sandbox.{_HOME[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
