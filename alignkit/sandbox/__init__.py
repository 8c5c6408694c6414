"""A small, fully verifiable world for demos, tests and benchmarks (see ``docs/architecture.md``).

``build_world(seed)`` makes a fictional knowledge base and a prompt distribution in five
categories; ``World.score`` is the ground-truth HHH scorer for any response text; the crowd
(:func:`make_crowd`) are simulated annotators with known skill and biases.
"""

from alignkit.sandbox.crowd import ExpertWriter, SimAnnotator, make_crowd
from alignkit.sandbox.datasets import BaseCorpusConfig, base_corpus, make_pairs, sft_demos, truth_pairs
from alignkit.sandbox.language import BEHAVIOURS, BEHAVIOURS_FOR, CATEGORIES, IDEAL_BEHAVIOUR
from alignkit.sandbox.scorer import RULES, UTILITY_WEIGHTS, Score, utility_of
from alignkit.sandbox.world import Entity, SandboxPrompt, World, WorldConfig, build_world

__all__ = [
    "BaseCorpusConfig",
    "ExpertWriter",
    "SimAnnotator",
    "base_corpus",
    "make_crowd",
    "make_pairs",
    "sft_demos",
    "truth_pairs",
    "BEHAVIOURS",
    "BEHAVIOURS_FOR",
    "CATEGORIES",
    "IDEAL_BEHAVIOUR",
    "RULES",
    "UTILITY_WEIGHTS",
    "Entity",
    "SandboxPrompt",
    "Score",
    "World",
    "WorldConfig",
    "build_world",
    "utility_of",
]
