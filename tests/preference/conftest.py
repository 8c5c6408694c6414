"""Fixtures for the preference-trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from preference_data import arithmetic_pairs, write_jsonl


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", arithmetic_pairs())
