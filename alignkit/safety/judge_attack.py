"""``alignkit redteam --target judge``: attack alignkit's own pairwise judge and report the flip rate.

A judge that an answer can talk into a verdict is a reward hack waiting to happen (a policy
trained on that judge learns to write the payload). The attack: take pairs the judge decides,
append an injection payload to the *losing* response (``{letter}`` = the letter it is shown as)
and count how often the verdict no longer names the winner (:func:`alignkit.ai.judge.injection_flips`;
both presentation orders are judged). Payload sets: the project's own ``DEFAULT_INJECTIONS``, the
held-out ``HELD_OUT_INJECTIONS`` the hardened quoting was not written against (look-alike and
spaced markers, fake system turns, grader notes), or your own file. Each quoting style is attacked
with the same pairs and payloads: ``hardened`` (per-request tags, NFKC escaping) and ``legacy``
(the earlier fixed markers, to show what the hardening buys). Flip rates carry Wilson intervals;
attempts on one pair are not independent, so the intervals are optimistic (the benchmark reports
seeds as well).

On the sandbox (``--judge-model sandbox``) the judge model is the sandbox's ``CarelessJudgeModel``
(a simulation with real judges' weaknesses) and the pairs are ground-truth pairs; elsewhere any
model (local folder or endpoint) is the judge and ``--pairs`` gives the cases.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignkit.ai.backend import ChatBackend
from alignkit.ai.config import BackendSettings
from alignkit.ai.judge import DEFAULT_INJECTIONS, HELD_OUT_INJECTIONS, Judge, injection_flips
from alignkit.ai.runner import make_backend
from alignkit.data.errors import DataError
from alignkit.data.io import iter_rows
from alignkit.plugins import load_object
from alignkit.safety.attacks import rate_with_ci
from alignkit.safety.config import RedTeamConfig

PAYLOAD_SETS: dict[str, list[str]] = {"project": DEFAULT_INJECTIONS, "held_out": HELD_OUT_INJECTIONS}
QUOTINGS = ("legacy", "hardened")
FLIPS_FILE = "judge_flips.json"


def flip_rate(flags: Sequence[bool], ci: float = 0.95) -> dict[str, Any]:
    """``{"n", "flips", "rate", "ci"}``: the share of flipped verdicts with a Wilson interval."""
    return rate_with_ci(flags, ci, count="flips", rate="rate")


def payload_sets(spec: str) -> dict[str, list[str]]:
    """Payload sets by name (``project``, ``held_out``, comma-separated, or ``all``) or a text file
    of one payload per line (``{letter}`` marks the loser's letter); a file's set is named by its stem."""
    if spec == "all":
        return dict(PAYLOAD_SETS)
    out: dict[str, list[str]] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in PAYLOAD_SETS:
            out[part] = PAYLOAD_SETS[part]
            continue
        path = Path(part)
        if not path.is_file():
            raise ValueError(f"--payloads {part!r}: not a payload set ({', '.join(PAYLOAD_SETS)}, all) nor a file")
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise DataError(path, None, "payloads", "at least one payload line", seen="an empty file")
        out[path.stem] = [line.replace("\\n", "\n") for line in lines]
    if not out:
        raise ValueError("--payloads names no payload set")
    return out


def judge_flip_rates(
    model: ChatBackend,
    cases: Sequence[Any],
    sets: dict[str, list[str]] | None = None,
    quotings: Sequence[str] = QUOTINGS,
    tag_key: bytes | None = None,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Flip rates of the pairwise judge on ``model`` under each quoting style, per payload set and per payload.

    ``cases``: (prompt, a, b) tuples or rows with response_a/response_b (or chosen/rejected).
    Returns ``{"pairs", "quoting": {q: {"overall", "by_set": {set: rate}, "by_payload": {set: [rate
    with its "payload"]}}}}``; pairs the judge calls a tie are skipped (no winner to flip)."""
    sets = sets if sets is not None else dict(PAYLOAD_SETS)
    out: dict[str, Any] = {"pairs": len(cases), "quoting": {}}
    for quoting in quotings:
        if quoting not in QUOTINGS:
            raise ValueError(f"quoting must be one of {QUOTINGS}, got {quoting!r}")
        judge = Judge(model, legacy=quoting == "legacy", tag_key=tag_key)
        everything: list[bool] = []
        by_set, by_payload = {}, {}
        for name, payloads in sets.items():
            flips = injection_flips(judge, cases, payloads)  # case-major, payload-minor
            everything += flips
            by_set[name] = flip_rate(flips, ci)
            by_payload[name] = [{"payload": p, **flip_rate(flips[i :: len(payloads)], ci)} for i, p in enumerate(payloads)]
        out["quoting"][quoting] = {"overall": flip_rate(everything, ci), "by_set": by_set, "by_payload": by_payload}
    return out


def _is_sandbox(spec: str) -> bool:
    return spec == "sandbox" or spec.startswith("sandbox:")


def read_pairs(path: Path) -> list[tuple[str, str, str]]:
    """Pairwise cases: rows with ``prompt`` and ``response_a``/``response_b`` (or ``chosen``/``rejected``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    cases = []
    for line, row in iter_rows(path):
        if isinstance(row, DataError):
            raise row
        a, b = row.get("response_a", row.get("chosen")), row.get("response_b", row.get("rejected"))
        for name, value in (("prompt", row.get("prompt")), ("response_a/chosen", a), ("response_b/rejected", b)):
            if not isinstance(value, str):
                raise DataError(path, line, name, "a string", seen=repr(value)[:40])
        cases.append((str(row["prompt"]), str(a), str(b)))
    return cases


def run_judge_attack(config: RedTeamConfig) -> dict[str, Any]:
    """The ``--target judge`` recipe: cases and judge model from the config, flip rates to ``judge_flips.json``."""
    spec = config.judge_model
    sandbox = spec.partition(":")[2] or str(config.world_seed)
    if config.pairs is not None:
        cases: list[Any] = read_pairs(config.pairs)
    elif _is_sandbox(spec):
        make_cases = load_object("alignkit.sandbox.attacks:judge_attack_cases", what="sandbox judge cases")
        cases = make_cases(sandbox, config.max_pairs, split=config.requests_split, seed=config.seed)
    else:
        raise FileNotFoundError("--pairs is needed unless --judge-model is the sandbox")
    cases = cases[: config.max_pairs]
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if _is_sandbox(spec):
        make_model = load_object("alignkit.sandbox.attacks:careless_judge", what="sandbox judge model")
        model = make_model(sandbox, inside_obedience=config.inside_obedience, seed=config.seed)
    else:
        settings = BackendSettings(
            model=spec, backend_url=config.backend_url, api_key_env=config.api_key_env, progress=config.progress
        )
        model = make_backend(settings, output / "cache")
    quotings = QUOTINGS if config.quoting == "both" else (config.quoting,)
    result = judge_flip_rates(model, cases, payload_sets(config.payloads), quotings)
    result["judge_model"] = spec
    path = output / FLIPS_FILE
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return {"judge_flips": str(path), **{f"flip_rate_{q}": r["overall"]["rate"] for q, r in result["quoting"].items()}}
