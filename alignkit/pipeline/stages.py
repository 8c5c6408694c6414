"""Stage functions a pipeline can ``use``: each takes (params, folder) and returns its outputs.

Stage functions are thin: they turn a params dict into the stage's typed config (so a pipeline
file accepts exactly the fields and flags of the matching CLI command), run the library function,
and return paths and numbers for later stages to refer to as ``${stage.key}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _train_sft(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.sft import SFTConfig, run_sft

    config = SFTConfig(**{"progress": False, **params, "output": folder})
    return {"model": str(run_sft(config))}


STAGES: dict[str, Any] = {
    "train.sft": _train_sft,
}
