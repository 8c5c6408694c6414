"""Which function a pipeline stage's ``uses:`` names, resolved by importlib when the stage runs.

Built-in names map to ``"module:function"`` strings, so the pipeline never imports a trainer (or
the sandbox) it does not run. A user's own stage is ``uses: python:package.module:function``:
any importable function with the stage signature ::

    def my_stage(params: dict[str, Any], folder: Path) -> dict[str, Any]:
        ...  # read params (after ${stage.key} substitution), write files into folder
        return {"model": str(folder / "model")}   # outputs later stages refer to as ${name.model}

It gets the same caching as a built-in stage: its hash covers the ``uses`` string, its params and
the hashes of the stages it refers to (not the function's source: rerun it with ``--force NAME``
after editing the code).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alignkit.plugins import PluginError, load_object

StageFn = Callable[[dict[str, Any], Path], dict[str, Any]]

PYTHON_PREFIX = "python:"

STAGES: dict[str, str] = {
    "sandbox.build": "alignkit.sandbox.stages:build",
    "sandbox.base_model": "alignkit.sandbox.stages:base_model",
    "feedback.simulate": "alignkit.sandbox.stages:feedback_simulate",
    "evaluate.sandbox": "alignkit.sandbox.stages:evaluate",
    "train.sft": "alignkit.pipeline.stages:train_sft",
    "train.rm": "alignkit.pipeline.stages:train_rm",
    "train.dpo": "alignkit.pipeline.stages:train_dpo",
    "train.kto": "alignkit.pipeline.stages:train_kto",
    "train.ppo": "alignkit.pipeline.stages:train_ppo",
    "train.rloo": "alignkit.pipeline.stages:train_rloo",
    "train.grpo": "alignkit.pipeline.stages:train_grpo",
    "report": "alignkit.pipeline.stages:report",
    "safety.redteam": "alignkit.safety.stages:redteam",
    "train.safe_align": "alignkit.safety.stages:safe_align",
    "safety.report": "alignkit.safety.stages:report",
}


# The typed config each built-in stage builds from its ``with:`` (plus keys the stage function
# itself reads), so a pipeline's keys and literal values are checked before any stage runs: a
# misspelt key is an error, not silently ignored. Named by string, like the stages themselves.
STAGE_CONFIGS: dict[str, tuple[str, frozenset[str]]] = {
    "sandbox.build": ("alignkit.sandbox.build:BuildConfig", frozenset({"world_seed"})),
    "sandbox.base_model": ("alignkit.sandbox.config:PretrainConfig", frozenset({"retrain"})),
    "feedback.simulate": ("alignkit.sandbox.config:SimulateConfig", frozenset()),
    "evaluate.sandbox": ("alignkit.sandbox.config:SandboxEvalConfig", frozenset({"annotators", "title", "summary"})),
    "train.sft": ("alignkit.train.config:SFTConfig", frozenset()),
    "train.rm": ("alignkit.train.config:RewardConfig", frozenset()),
    "train.dpo": ("alignkit.train.config:DPOConfig", frozenset()),
    "train.kto": ("alignkit.train.config:KTOConfig", frozenset()),
    "train.ppo": ("alignkit.train.config:PPOConfig", frozenset()),
    "train.rloo": ("alignkit.train.config:RLOOConfig", frozenset()),
    "train.grpo": ("alignkit.train.config:GRPOConfig", frozenset()),
    "safety.redteam": ("alignkit.safety.config:RedTeamConfig", frozenset()),
    "train.safe_align": ("alignkit.train.config:SafeAlignConfig", frozenset()),
}
STAGE_KEYS: dict[str, frozenset[str]] = {  # stages without a config class
    "report": frozenset({"results"}),
    "safety.report": frozenset({"results", "safety"}),
}


def stage_fields(uses: str) -> tuple[type[BaseModel] | None, frozenset[str]] | None:
    """``(config class or None, other accepted keys)`` of a built-in stage; ``None`` when unknown (``python:`` stages)."""
    if uses in STAGE_CONFIGS:
        target, extra = STAGE_CONFIGS[uses]
        cls: type[BaseModel] = load_object(target, what=f"config of stage '{uses}'", callable_only=False)
        return cls, extra
    if uses in STAGE_KEYS:
        return None, STAGE_KEYS[uses]
    return None


class StageNotFound(PluginError):
    """``uses:`` names no built-in stage, or a ``python:`` target that cannot be loaded."""


def load_target(target: str) -> StageFn:
    """Import ``"package.module:function"`` and return the function."""
    try:
        fn: StageFn = load_object(target, what=f"'{target}'")
    except PluginError as err:
        raise StageNotFound(str(err)) from err
    return fn


def check_uses(uses: str, registry: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`StageNotFound` for a ``uses:`` that names nothing (before any stage runs)."""
    registry = STAGES if registry is None else registry
    if uses.startswith(PYTHON_PREFIX):
        target = uses[len(PYTHON_PREFIX) :]
        module_name, sep, attr = target.partition(":")
        if not sep or not module_name or not attr:
            raise StageNotFound(f"'uses: {uses}': expected python:package.module:function")
    elif uses not in registry:
        raise StageNotFound(f"unknown 'uses: {uses}' (known: {sorted(registry)}, or python:package.module:function)")


def resolve_stage(uses: str, registry: Mapping[str, Any] | None = None) -> StageFn:
    """The function for ``uses``: a registry entry (a function or a "module:function" string) or ``python:``."""
    registry = STAGES if registry is None else registry
    check_uses(uses, registry)
    if uses.startswith(PYTHON_PREFIX):
        return load_target(uses[len(PYTHON_PREFIX) :])
    entry = registry[uses]
    return load_target(entry) if isinstance(entry, str) else entry
