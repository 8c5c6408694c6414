"""Stage functions a pipeline can ``use``: each takes (params, folder) and returns its outputs.

Stage functions are thin: they turn a params dict into the stage's typed config (so a pipeline
file accepts exactly the fields of the matching CLI command), run the library function, and
return paths and numbers for later stages to refer to as ``${stage.key}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _sandbox_build(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.sandbox.build import BuildConfig, build_folder

    return build_folder(BuildConfig(**{**params, "output": folder}))


def _sandbox_base_model(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The shipped base model, or (with ``retrain: true``) one rebuilt from its seed."""
    from alignkit.sandbox.pretrain import SHIPPED_BASE_MODEL, PretrainConfig, pretrain_base_model

    params = dict(params)
    if not params.pop("retrain", False):
        return {"model": str(SHIPPED_BASE_MODEL)}
    return {"model": str(pretrain_base_model(PretrainConfig(**{"progress": False, **params, "output": folder})))}


def _train_sft(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.sft import SFTConfig, run_sft

    config = SFTConfig(**{"progress": False, **params, "output": folder})
    return {"model": str(run_sft(config))}


STAGES: dict[str, Any] = {
    "sandbox.build": _sandbox_build,
    "sandbox.base_model": _sandbox_base_model,
    "train.sft": _train_sft,
}
