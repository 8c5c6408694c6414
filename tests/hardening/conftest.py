"""A tiny model saved once per session, for the bad-input cases that need a model folder on disk."""

from __future__ import annotations

import pytest

TEXTS = ["hello there", "what is the river of Varnholt?", "I can't help with that.", "one two three four"] * 4


@pytest.fixture(scope="session")
def saved_tiny(tmp_path_factory):
    """A save_pretrained folder of the built-in tiny model (read-only: cases copy it before damaging it)."""
    from alignkit.models import build_tiny_model

    model, tokenizer = build_tiny_model(TEXTS, seed=0)
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
