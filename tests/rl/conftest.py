"""Fixtures for the online-RL tests (tiny models built in-process, rule-based rewards)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rl_helpers import write_prompts

from tests.conftest import TINY_TEXTS


@pytest.fixture()
def prompts_file(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl")


@pytest.fixture()
def fresh_policy():
    """A factory of new tiny (model, tokenizer) pairs: RL mutates the model it trains."""
    from alignkit.models import build_tiny_model

    return lambda seed=0: build_tiny_model(TINY_TEXTS, seed=seed)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model is too small for intra-op threads: on a busy 2-core machine they spin and
    make these tests several times slower. Restored afterwards so other suites are unaffected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
