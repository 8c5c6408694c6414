"""Tiny random models of six real architectures, built once per session (no downloads)."""

from __future__ import annotations

import pytest

FAMILY_NAMES = ("gpt2", "llama", "qwen2", "gemma2", "phi3", "opt")

TEXTS = [
    "The river of Varnholt is the Elsa.",
    "What colour is the sky? The sky is blue.",
    "I can't help with that, but here is a safe alternative.",
    "one two three four five six seven eight nine ten",
]


@pytest.fixture(scope="session")
def families():
    """``{name: (model, tokenizer)}``; treat as read-only (deep-copy before training)."""
    from alignkit.models.architectures import build_architecture

    return {name: build_architecture(name, TEXTS, seed=0) for name in FAMILY_NAMES}


@pytest.fixture(params=FAMILY_NAMES)
def family(request, families):
    """``(name, model, tokenizer)`` for each family in turn."""
    model, tokenizer = families[request.param]
    return request.param, model, tokenizer
