"""Reading pairwise preference data: pairs, or rankings expanded to their pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from alignkit.data.conversions import rankings_to_pairs
from alignkit.data.io import DataError, read_records, skip_reason


def read_pairs(path: Path, on_error: str) -> tuple[list[dict[str, Any]], Counter]:
    """Pair records from ``path``; rankings become all their pairs (``ranking_id`` marks a group).

    Every shape :mod:`alignkit.data.formats` recognises is read (TRL's explicit and implicit
    prompts, prompt-repeated conversations, HH-RLHF raw, UltraFeedback). A bad row (empty chosen,
    identical chosen/rejected, missing fields, an ambiguous shape) stops the load with
    ``on_error="raise"`` (every trainer's default); with ``"skip"`` bad rows are counted by reason
    and skipped, all before training starts. Pairs marked ``tie`` (see
    ``alignkit.data.conversions``) state no preference: they are counted and dropped either way.
    """
    loaded = read_records(path, on_error=on_error)  # type: ignore[arg-type]
    skipped = Counter(skip_reason(e) for e in loaded.skipped)
    records = loaded.records
    if loaded.kind == "ranking":
        records = list(rankings_to_pairs(records))
    elif loaded.kind != "pair":
        raise DataError(path, None, None, f"pairwise records (prompt/chosen/rejected) or rankings, found {loaded.kind} records")
    kept = [r for r in records if not r.get("tie")]  # a tie states no preference to learn from
    if len(kept) < len(records):
        skipped["tie"] += len(records) - len(kept)
    return kept, skipped
