"""The run summary every trainer leaves next to its saved model: ``alignkit_run.json``.

One writer, so every stage's summary has the same frame (``stage``, ``config``, the stage's own
sections, then the last logged metrics under ``final`` and, for offline stages, ``eval``) and tools
reading a run folder (the pipeline, reports, a person) find the same keys everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alignkit.data.files import atomic_write_text

RUN_FILE = "alignkit_run.json"


def write_run_summary(output: Path, stage: str, config: BaseModel, result: Any, **sections: Any) -> Path:
    """Write ``output/alignkit_run.json``; ``result`` is a loop result with ``history`` (and maybe ``eval_history``)."""
    summary: dict[str, Any] = {"stage": stage, "config": json.loads(config.model_dump_json()), **sections}
    summary["final"] = result.history[-1] if result.history else None
    if hasattr(result, "eval_history"):
        summary["eval"] = result.eval_history[-1] if result.eval_history else None
    path = Path(output) / RUN_FILE
    atomic_write_text(path, json.dumps(summary, indent=2))
    return path
