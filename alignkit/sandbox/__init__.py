"""A small, fully verifiable world for demos, tests and benchmarks (see ``docs/architecture.md``).

``build_world(seed)`` makes a fictional knowledge base and a prompt distribution in five
categories; ``World.score`` is the ground-truth HHH scorer for any response text; the crowd
(:func:`make_crowd`) are simulated annotators with known skill and biases.


Names are re-exported lazily (PEP 562), so importing one submodule does not load the others (nor
torch); new code imports from the defining module.
"""

from __future__ import annotations

from alignkit.plugins import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
