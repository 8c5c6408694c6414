"""Pipeline stages of the safety loop: ``safety.redteam`` and ``train.safe_align``.

Red team -> export -> train -> red team again is four stages in a pipeline file::

    redteam:   {uses: safety.redteam, with: {target: "${sft.model}", requests_split: train}}
    dpo_red:   {uses: train.dpo, with: {model: "${sft.model}", data: "${redteam.dpo_pairs}"}}
    safe:      {uses: train.safe_align, with: {model: "${sft.model}", data: "${redteam.red_instruct}"}}
    redteam_after: {uses: safety.redteam, with: {target: "${safe.model}", requests_split: test}}

With ``target: judge`` the stage attacks the pairwise judge instead (``${name.judge_flips}``).
``safety.report`` writes the evaluation report with its "Safety" section (ASR by attack per
red-team run, judge flip rates); the shipped demo (``pipeline/demo.yaml``) attacks its base, SFT,
DPO and PPO models and its judge this way. ``examples/safety_loop.yaml`` is the whole loop at demo size. Named in
:data:`alignkit.pipeline.registry.STAGES` and loaded only when a pipeline uses them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.evaluate.report import ReportData, load_report_data, write_report
from alignkit.safety.config import RedTeamConfig
from alignkit.safety.redteam import run_redteam
from alignkit.train.config import SafeAlignConfig
from alignkit.train.safe_align import run_safe_align


def redteam(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Attack ``target``; outputs the ASR table and the exported training files (``${name.dpo_pairs}``, ...)."""
    result = run_redteam(RedTeamConfig(**{"progress": False, **params, "output": folder}))
    if "judge_flips" in result:  # target: judge -> flip rates, for the report's safety section
        return result
    asr = json.loads(Path(result["asr"]).read_text())
    return {**result, "asr_by_attack": {k: v["asr"] for k, v in asr["by_attack"].items()}}


def safe_align(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    return {"model": str(run_safe_align(SafeAlignConfig(**{"progress": False, **params, "output": folder})))}


def report(params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The HTML report of ``results`` (optional) with a safety section from ``safety: {run name: path}``
    (a red-team ``asr.json`` or a ``--target judge`` ``judge_flips.json``)."""
    data = load_report_data(params["results"]) if params.get("results") else ReportData(title="alignkit safety report")
    runs = {str(name): json.loads(Path(path).read_text()) for name, path in (params.get("safety") or {}).items()}
    data = data.model_copy(update={"safety": {**data.safety, **runs}})
    return {"report": str(write_report(folder / "report.html", data))}
