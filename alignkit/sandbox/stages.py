"""The sandbox's pipeline stages (``sandbox.build``, ``sandbox.base_model``, ``feedback.simulate``,
``evaluate.sandbox``), in the same (params, folder) -> outputs form as the library's.

The pipeline names them by string in :data:`alignkit.pipeline.registry.STAGES`, so it never
imports the sandbox; this module is loaded only when a pipeline uses one of them.

Two seeds, kept apart (issue #22): the pipeline's ``seed`` is the *run* seed (crowd, sampling,
training order) and reaches every stage; the *world* seed (the KB, the prompts and their splits,
the curated datasets) is ``world_seed`` of ``sandbox.build`` (default 0, the world the shipped base
model was pretrained on), which the build stage outputs for the stages after it. Before, one seed
did both, so ``seed: 1`` evaluated a base model on facts it had never seen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.sandbox.build import BuildConfig, build_folder
from alignkit.sandbox.config import SHIPPED_BASE_MODEL, PretrainConfig, SandboxEvalConfig, SimulateConfig
from alignkit.sandbox.evaluation import evaluate_sandbox
from alignkit.sandbox.pretrain import pretrain_base_model
from alignkit.sandbox.simulate import simulate


def build(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The world of ``world_seed`` (default 0) and its datasets; the run seed does not change it."""
    params = dict(params)
    params.pop("seed", None)  # the run seed
    world_seed = int(params.pop("world_seed", 0))
    return {**build_folder(BuildConfig(**{**params, "seed": world_seed, "output": folder})), "world_seed": world_seed}


def base_model(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The shipped base model (pretrained on world 0), or (``retrain: true``) one pretrained on ``world_seed``."""
    params = dict(params)
    world_seed = int(params.pop("world_seed", 0))
    if not params.pop("retrain", False):
        if world_seed != 0:
            raise ValueError(
                f"base_model: the shipped base model was pretrained on world 0, not world {world_seed}; "
                "set retrain: true to pretrain one on this world"
            )
        return {"model": str(SHIPPED_BASE_MODEL)}
    config = PretrainConfig(**{"progress": False, **params, "world_seed": world_seed, "output": folder})
    return {"model": str(pretrain_base_model(config))}


def feedback_simulate(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The sandbox crowd labels comparison tasks in a real feedback store; QC; aggregated pairs out."""
    result = simulate(SimulateConfig(**{"progress": False, **params, "output": str(folder)}))
    spammers = set(result.spammers)
    rows = []
    for q in result.quality:
        status = (
            "excluded at screening"
            if q["annotator"] in result.excluded
            else "flagged"
            if q["annotator"] in result.flagged
            else q.get("status", "")
        )
        rows.append(
            {
                "annotator": q["annotator"],
                "status": status,
                "spammer (truth)": q["annotator"] in spammers,
                **{
                    k: (round(v, 3) if isinstance(v, float) else v)
                    for k, v in q.items()
                    if k in ("n_judgments", "n_gold", "gold_accuracy", "peer_agreement", "super_rater")
                },
            }
        )
    (folder / "annotators.json").write_text(json.dumps(rows, indent=2))
    (folder / "result.json").write_text(result.model_dump_json(indent=2))
    return {
        "pairs": result.export_path,
        "annotators": str(folder / "annotators.json"),
        "accuracy": result.accuracy,
        "judgments_per_item": result.judgments_per_item,
    }


def evaluate(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Evaluate models on the sandbox; ``annotators`` may name a JSON file of quality rows."""
    params = dict(params)
    extra: dict[str, Any] = {}
    annotators = params.pop("annotators", None)
    if annotators:
        extra["annotators"] = json.loads(Path(annotators).read_text())
    for key in ("title", "summary"):
        if key in params:
            extra[key] = params.pop(key)
    config = SandboxEvalConfig(**{"progress": False, **params, "output": folder})
    if config.world is not None and "world_seed" not in params:  # the seed of the world folder, for the report
        config.world_seed = int(json.loads((config.world / "world.json").read_text())["world_config"]["seed"])
    evaluate_sandbox(config, extra)
    return {"results": str(folder / "results.json"), "responses": str(folder / "responses.jsonl")}
