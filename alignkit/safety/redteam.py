"""``alignkit redteam``: attack a target, measure ASR per attack and category, export training data.

The recipe: read harmful requests (a file, or on the sandbox its held-out harmful prompts with
ground truth), build the target (a local model or an endpoint), the success judge (ground truth,
a guard or a judge model) and, for PAIR, an attacker; run every selected attack; write
``attempts.jsonl`` (every conversation, answer and verdict), ``asr.json`` (Wilson intervals) and
the exports of the successful attacks: ``sft_refusals.jsonl``, ``dpo_pairs.jsonl`` and
``red_instruct.jsonl`` (for ``alignkit safe-align``). ``--target judge`` attacks the pairwise
judge instead and writes ``judge_flips.json`` (:mod:`alignkit.safety.judge_attack`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from alignkit.ai.config import BackendSettings
from alignkit.ai.runner import make_backend
from alignkit.data.errors import DataError
from alignkit.data.io import iter_rows, write_records
from alignkit.plugins import load_object
from alignkit.safety.attacks import attack_success_rates, dpo_pairs, red_instruct, run_attacks, select_attacks, sft_refusals
from alignkit.safety.config import RedTeamConfig
from alignkit.safety.judge_attack import run_judge_attack
from alignkit.safety.moderate import success_judge

log = logging.getLogger(__name__)

JUDGE_TARGET = "judge"


def _is_sandbox(spec: str) -> bool:
    return spec == "sandbox" or spec.startswith("sandbox:")


def read_requests(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for line, row in iter_rows(path):
        if isinstance(row, DataError):
            raise row
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise DataError(path, line, "prompt", "a non-empty request text", seen=repr(row.get("prompt"))[:40])
        rows.append(row)
    return rows


def run_redteam(config: RedTeamConfig) -> dict[str, Any]:
    """Attack ``config.target`` (``judge``: alignkit's pairwise judge, see :mod:`alignkit.safety.judge_attack`)."""
    if config.target == JUDGE_TARGET:
        return run_judge_attack(config)
    judge_spec = config.judge if config.judge != "sandbox" else f"sandbox:{config.world_seed}"
    if config.requests is not None:
        requests = read_requests(config.requests)
    elif _is_sandbox(judge_spec):
        make = load_object("alignkit.sandbox.attacks:redteam_requests", what="sandbox requests")
        requests = make(judge_spec.partition(":")[2] or None, split=config.requests_split, seed=config.seed)
    else:
        raise FileNotFoundError("--requests is needed unless the judge is the sandbox")
    if config.max_requests is not None:
        requests = requests[: config.max_requests]
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)

    target = make_backend(
        BackendSettings(
            model=config.target, backend_url=config.backend_url, api_key_env=config.api_key_env, progress=config.progress
        ),
        output / "cache",
    )
    attacks = select_attacks(config.attacks)
    attacker = None
    if config.attacker is not None:
        attacker = make_backend(
            BackendSettings(model=config.attacker, backend_url=config.backend_url, progress=False), output / "cache"
        )
    elif _is_sandbox(judge_spec):
        attacker = load_object("alignkit.sandbox.attacks:ScriptedAttacker", what="sandbox attacker")(seed=config.seed)
    if attacker is None and any(a.kind == "adaptive" for a in attacks):
        if config.attacks != "all":
            raise ValueError("the 'pair' attack needs --attacker (an attacker model) off the sandbox")
        log.warning("no --attacker: skipping the PAIR attack")
        attacks = [a for a in attacks if a.kind != "adaptive"]
    judge = success_judge(judge_spec, cache_dir=output / "cache")
    attempts = run_attacks(
        requests,
        attacks,
        target,
        judge,
        attacker=attacker,
        rounds=config.pair_rounds,
        threshold=config.success_threshold,
        max_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
    )
    rows = [a.to_dict() for a in attempts]
    write_records(output / "attempts.jsonl", rows)
    asr = attack_success_rates(rows)
    (output / "asr.json").write_text(json.dumps(asr, indent=2))
    exports = {
        "sft_refusals": write_records(output / "sft_refusals.jsonl", sft_refusals(rows)),
        "dpo_pairs": write_records(output / "dpo_pairs.jsonl", dpo_pairs(rows)),
        "red_instruct": write_records(output / "red_instruct.jsonl", red_instruct(rows)),
    }
    return {
        "attempts": str(output / "attempts.jsonl"),
        "asr": str(output / "asr.json"),
        "overall_asr": asr["overall"]["asr"],
        "successes": asr["overall"]["successes"],
        **{k: str(v) for k, v in exports.items()},
    }
