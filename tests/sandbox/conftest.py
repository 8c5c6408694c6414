"""A default world shared by the sandbox tests (built once; it is read-only)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def world():
    from alignkit.sandbox import build_world

    return build_world(seed=0)


@pytest.fixture(scope="session")
def one_of(world):
    """The first train prompt of each category (with factual picked as a town's river question)."""
    out = {}
    for p in world.prompts("train"):
        if p.category == "factual" and p.attribute != "river":
            continue
        out.setdefault(p.category, p)
    return out
