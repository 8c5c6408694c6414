"""Shared fixtures: a tiny tokenizer/model built in-process (tests never download anything)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_TEXTS = [
    "The river of Varnholt is the Elsa.",
    "What colour is the sky? The sky is blue.",
    "I can't help with that, but here is a safe alternative.",
    "How do I kill a stuck process? Use the kill command with its id.",
    "one two three four five six seven eight nine ten",
] * 4


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the built-in tiny Llama; treat as read-only (copy before training)."""
    from alignkit.models import build_tiny_model

    return build_tiny_model(TINY_TEXTS, seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny):
    return tiny[1]
