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
    from alignkit.train.config import SFTConfig
    from alignkit.train.sft import run_sft

    config = SFTConfig(**{"progress": False, **params, "output": folder})
    return {"model": str(run_sft(config))}


def _feedback_simulate(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The sandbox crowd labels comparison tasks in a real feedback store; QC; aggregated pairs out."""
    import json

    from alignkit.feedback.simulate import SimulateConfig, simulate

    result = simulate(SimulateConfig(**{"progress": False, **params, "output": str(folder)}))
    spammers = set(result.spammers)
    rows = []
    for q in result.quality:
        status = "excluded at screening" if q["annotator"] in result.excluded else "flagged" if q["annotator"] in result.flagged else q.get("status", "")
        rows.append({"annotator": q["annotator"], "status": status, "spammer (truth)": q["annotator"] in spammers,
                     **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in q.items() if k in ("n_judgments", "n_gold", "gold_accuracy", "peer_agreement", "super_rater")}})
    (folder / "annotators.json").write_text(json.dumps(rows, indent=2))
    (folder / "result.json").write_text(result.model_dump_json(indent=2))
    return {"pairs": result.export_path, "annotators": str(folder / "annotators.json"), "accuracy": result.accuracy,
            "judgments_per_item": result.judgments_per_item}


def _train_rm(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.config import RewardConfig
    from alignkit.train.reward_model import run_reward_model

    path = run_reward_model(RewardConfig(**{"progress": False, **params, "output": folder}))
    return {"model": str(path)}


def _train_dpo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.config import DPOConfig
    from alignkit.train.dpo import run_dpo

    return {"model": str(run_dpo(DPOConfig(**{"progress": False, **params, "output": folder})))}


def _train_kto(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.config import KTOConfig
    from alignkit.train.kto import run_kto

    return {"model": str(run_kto(KTOConfig(**{"progress": False, **params, "output": folder})))}


def _train_ppo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.config import PPOConfig
    from alignkit.train.ppo import run_ppo

    return _rl_outputs(run_ppo(PPOConfig(**{"progress": False, **params, "output": folder})))


def _train_rloo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.config import RLOOConfig
    from alignkit.train.rloo import run_rloo

    return _rl_outputs(run_rloo(RLOOConfig(**{"progress": False, **params, "output": folder})))


def _train_grpo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.train.config import GRPOConfig
    from alignkit.train.rloo import run_rloo

    return _rl_outputs(run_rloo(GRPOConfig(**{"progress": False, **params, "output": folder})))


def _rl_outputs(path: Path) -> dict[str, Any]:
    """The policy, plus its (KL, score) trajectory for the reward-vs-KL plot."""
    import json

    curve = []
    metrics = Path(path) / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if "kl" in row and "score" in row:
                curve.append([row["kl"], row["score"]])
    return {"model": str(path), "reward_kl": curve}


def _evaluate_sandbox(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Evaluate models on the sandbox; ``annotators`` may name a JSON file of quality rows."""
    import json

    from alignkit.evaluate.suite import SandboxEvalConfig, evaluate_sandbox

    params = dict(params)
    extra: dict[str, Any] = {}
    annotators = params.pop("annotators", None)
    if annotators:
        extra["annotators"] = json.loads(Path(annotators).read_text())
    for key in ("title", "summary"):
        if key in params:
            extra[key] = params.pop(key)
    evaluate_sandbox(SandboxEvalConfig(**{"progress": False, **params, "output": folder}), extra)
    return {"results": str(folder / "results.json"), "responses": str(folder / "responses.jsonl")}


def _report(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    from alignkit.evaluate.report import load_report_data, write_report

    return {"report": str(write_report(folder / "report.html", load_report_data(params["results"])))}


STAGES: dict[str, Any] = {
    "feedback.simulate": _feedback_simulate,
    "train.rm": _train_rm,
    "train.dpo": _train_dpo,
    "train.kto": _train_kto,
    "train.ppo": _train_ppo,
    "train.rloo": _train_rloo,
    "train.grpo": _train_grpo,
    "evaluate.sandbox": _evaluate_sandbox,
    "report": _report,
    "sandbox.build": _sandbox_build,
    "sandbox.base_model": _sandbox_base_model,
    "train.sft": _train_sft,
}
