"""Fixtures for the preference-trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from preference_data import arithmetic_pairs, write_jsonl


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine two OpenMP
    threads per process spin against each other (this directory went from ~15 s to minutes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
