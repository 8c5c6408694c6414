"""The library's stage functions (``train.*``, ``report``): each takes (params, folder) and returns its outputs.

They are named in :data:`alignkit.pipeline.registry.STAGES` and loaded only when a pipeline uses
them; the sandbox's stages live in :mod:`alignkit.sandbox.stages`.

Stage functions are thin: they turn a params dict into the stage's typed config (so a pipeline
file accepts exactly the fields of the matching CLI command), run the library function, and
return paths and numbers for later stages to refer to as ``${stage.key}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.evaluate.report import load_report_data, write_report
from alignkit.train.config import DPOConfig, GRPOConfig, KTOConfig, PPOConfig, RewardConfig, RLOOConfig, SFTConfig
from alignkit.train.dpo import run_dpo
from alignkit.train.kto import run_kto
from alignkit.train.ppo import run_ppo
from alignkit.train.reward_model import run_reward_model
from alignkit.train.rloo import run_rloo
from alignkit.train.sft import run_sft


def train_sft(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    config = SFTConfig(**{"progress": False, **params, "output": folder})
    return {"model": str(run_sft(config))}


def train_rm(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = run_reward_model(RewardConfig(**{"progress": False, **params, "output": folder}))
    return {"model": str(path)}


def train_dpo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {"model": str(run_dpo(DPOConfig(**{"progress": False, **params, "output": folder})))}


def train_kto(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {"model": str(run_kto(KTOConfig(**{"progress": False, **params, "output": folder})))}


def train_ppo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return rl_outputs(run_ppo(PPOConfig(**{"progress": False, **params, "output": folder})))


def train_rloo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return rl_outputs(run_rloo(RLOOConfig(**{"progress": False, **params, "output": folder})))


def train_grpo(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return rl_outputs(run_rloo(GRPOConfig(**{"progress": False, **params, "output": folder})))


def rl_outputs(path: Path) -> dict[str, Any]:
    """The policy, plus its (KL, score) trajectory for the reward-vs-KL plot."""
    curve = []
    metrics = Path(path) / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if "kl" in row and "score" in row:
                curve.append([row["kl"], row["score"]])
    return {"model": str(path), "reward_kl": curve}


def report(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {"report": str(write_report(folder / "report.html", load_report_data(params["results"])))}
