"""Safety commands: ``alignkit safety moderate|train-guard|filter``, ``alignkit redteam``, ``alignkit safe-align``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from alignkit.cli.common import config_command
from alignkit.safety.config import FilterConfig, FlagRatesConfig, GuardTrainConfig, ModerateConfig, RedTeamConfig
from alignkit.train.config import SafeAlignConfig


def _filter_done(config: FilterConfig, report: dict[str, Any]) -> str:
    cats = ", ".join(f"{k}: {v}" for k, v in report["removed_per_category"].items()) or "none"
    return (
        f"rows in {report['rows_in']}: kept {report['kept']}, removed {report['removed']} "
        f"(per category: {cats}; not moderated: {report['not_moderated']})\n"
        f"wrote {config.output}/kept.jsonl, removed.jsonl, filter_report.json"
    )


def _flag_rates_done(config: FlagRatesConfig, result: dict[str, Any]) -> str:
    lines = [f"guard {result['guard']}: flag rate over {result['prompts']} prompts (Wilson 95 %)"]
    for model, row in result["by_model"].items():
        lo, hi = row["ci"]
        lines.append(f"  {model:<16} {row['rate']:.3f}  [{lo:.3f}, {hi:.3f}]  {row['flagged']}/{row['n']}")
    lines.append(f"wrote {config.output}")
    return "\n".join(lines)


def _judge_attack_done(result: dict[str, Any]) -> str:
    flips = json.loads(Path(result["judge_flips"]).read_text(encoding="utf-8"))
    lines = [f"judge {flips['judge_model']}: injection flip rate over {flips['pairs']} pairs (Wilson 95 %)"]
    for quoting, table in flips["quoting"].items():
        for name, row in [("all payloads", table["overall"]), *table["by_set"].items()]:
            lo, hi = row["ci"]
            lines.append(f"  {quoting:<9} {name:<14} {row['rate']:.3f}  [{lo:.3f}, {hi:.3f}]  {row['flips']}/{row['n']}")
    lines.append(f"per payload: {result['judge_flips']}")
    return "\n".join(lines)


def _redteam_done(config: RedTeamConfig, result: dict[str, Any]) -> str:
    if "judge_flips" in result:
        return _judge_attack_done(result)
    asr = json.loads(Path(result["asr"]).read_text(encoding="utf-8"))
    lines = [f"ASR overall {asr['overall']['asr']:.3f} ({asr['overall']['successes']}/{asr['overall']['n']})"]
    for name, row in asr["by_attack"].items():
        lo, hi = row["ci"]
        lines.append(f"  {name:<18} {row['asr']:.3f}  [{lo:.3f}, {hi:.3f}]  n={row['n']}")
    lines.append(f"exports: {result['sft_refusals']}, {result['dpo_pairs']}, {result['red_instruct']}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Moderation: guard classifiers, judge-model guards, filtering training data.", no_args_is_help=True)
    config_command(
        sub,
        "moderate",
        ModerateConfig,
        "alignkit.safety.moderate:run_moderate",
        done=lambda c, r: f"{r['flagged']} of {r['rows']} rows flagged {r['per_category']}; wrote {c.output}",
        help="Score prompts/responses with a guard (classifier folder or judge:MODEL); write verdicts per row.",
    )
    config_command(
        sub,
        "train-guard",
        GuardTrainConfig,
        "alignkit.safety.guard:train_guard",
        done="guard saved to {result} (per-category precision/recall in guard.json)",
        help="Train a multi-label guard classifier (full or --lora) on rows with prompt, response, categories.",
    )
    config_command(
        sub,
        "filter",
        FilterConfig,
        "alignkit.safety.moderate:run_filter",
        done=_filter_done,
        help="Filter a training set with a guard: kept.jsonl, removed.jsonl (every removed row, with its verdict).",
    )
    config_command(
        sub,
        "flag-rates",
        FlagRatesConfig,
        "alignkit.safety.moderate:run_flag_rates",
        done=_flag_rates_done,
        help="The guard column of an evaluation: flag rate per model (Wilson CI) of its responses.jsonl.",
    )
    app.add_typer(sub, name="safety")
    config_command(
        app,
        "redteam",
        RedTeamConfig,
        "alignkit.safety.redteam:run_redteam",
        done=_redteam_done,
        help="Attack a target (templates, obfuscation, crescendo, PAIR); ASR with CIs; export SFT/DPO/Red-Instruct data. "
        "--target judge: injection flip rate of alignkit's pairwise judge (hardened vs legacy quoting).",
    )
    config_command(
        app,
        "safe-align",
        SafeAlignConfig,
        "alignkit.train.safe_align:run_safe_align",
        done="safety-aligned model saved to {result}",
        help="Red-Instruct: NLL on safe completions + bounded gradient ascent on harmful ones (binary records).",
    )
