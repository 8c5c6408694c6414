"""Moderation with a guard: score files, filter training sets (nothing silently lost), resolve guard specs.

``filter`` keeps every row it cannot call unsafe and writes every row it removes, with the verdict
that removed it, so ``rows in = kept + removed`` always holds and a reviewer can restore a row.
Which text of a row is moderated follows what the row *teaches*: an SFT row's completion, a
pair's ``chosen`` (a harmful ``rejected`` is exactly what a safety pair should contain), a binary
row's completion when its label is true; prompt-only rows (RL prompts) are moderated on the prompt.
Rankings are kept unmoderated and counted as such.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from alignkit.ai.config import BackendSettings
from alignkit.ai.runner import make_backend
from alignkit.data.errors import DataError
from alignkit.data.io import iter_rows, write_records
from alignkit.data.records import detect_kind
from alignkit.plugins import load_object
from alignkit.safety.attacks import rate_with_ci
from alignkit.safety.config import FilterConfig, FlagRatesConfig, GuardSource, ModerateConfig
from alignkit.safety.guard import GUARD_FILE, GuardClassifier, GuardScore, JudgeGuard
from alignkit.safety.policy import load_policy

log = logging.getLogger(__name__)

JUDGE_PREFIX = "judge:"
PYTHON_PREFIX = "python:"


class Guard(Protocol):
    def score(self, prompts: Sequence[Any], responses: Sequence[Any] | None = None) -> list[GuardScore]: ...


def build_guard(source: GuardSource, cache_dir: Path | None = None) -> Guard:
    """A guard from its spec: a trained classifier folder, or ``judge:MODEL`` (local folder or endpoint model)."""
    spec = source.guard
    if spec.startswith(JUDGE_PREFIX):
        model = spec[len(JUDGE_PREFIX) :]
        settings = BackendSettings(model=model, backend_url=source.backend_url, api_key_env=source.api_key_env, progress=False)
        backend = make_backend(settings, cache_dir or Path(".alignkit_cache"))
        threshold = 0.5 if source.threshold is None else source.threshold
        return JudgeGuard(backend, load_policy(source.policy), threshold=threshold, format=source.judge_format)
    path = Path(spec)
    if not (path / GUARD_FILE).exists():
        raise FileNotFoundError(f"{spec}: expected a guard folder (from `alignkit safety train-guard`) or judge:MODEL")
    guard = GuardClassifier(path, batch_size=source.batch_size)
    if source.threshold is not None:
        guard.thresholds = [source.threshold] * len(guard.thresholds)
        guard.unsafe_threshold = source.threshold
    return guard


def _last_assistant(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "assistant":
            return messages[:i], str(messages[i].get("content", ""))
    return messages, None


def moderated_text(row: dict[str, Any], field: str | None = None) -> tuple[Any, Any] | None:
    """``(prompt, response)`` to moderate for a training row, or None when the row is not moderated."""
    if field is not None:
        if field not in row:
            return None
        return row.get("prompt", ""), row[field]
    if row.get("messages") is not None:
        prompt, response = _last_assistant(list(row["messages"]))
        return (prompt or row["messages"]), response
    try:
        kind = detect_kind(row)
    except Exception:  # noqa: BLE001 - a row of no known kind: prompt-only if it has one
        kind = None
    if kind == "pair":
        return row["prompt"], row["chosen"]
    if kind == "binary":
        return (row["prompt"], row["completion"]) if row.get("label") else None
    if kind == "ranking":
        return None
    if "completion" in row:
        return row["prompt"], row["completion"]
    if "response" in row:
        return row["prompt"], row["response"]
    if "prompt" in row:
        return row["prompt"], None
    return None


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    rows = []
    for line, row in iter_rows(path):
        if isinstance(row, DataError):
            raise row
        rows.append((line, row))
    return rows


def score_rows(guard: Guard, texts: Sequence[tuple[Any, Any]], batch_size: int = 64) -> list[GuardScore]:
    out: list[GuardScore] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        out += guard.score([p for p, _ in chunk], [r for _, r in chunk])
    return out


def filter_records(
    rows: Sequence[dict[str, Any]], guard: Guard, field: str | None = None, batch_size: int = 64
) -> dict[str, Any]:
    """Split ``rows`` into kept and removed by the guard's verdict; every row lands in exactly one list."""
    todo = [(i, t) for i, r in enumerate(rows) if (t := moderated_text(r, field)) is not None]
    verdicts = dict(zip([i for i, _ in todo], score_rows(guard, [t for _, t in todo], batch_size)))
    kept, removed = [], []
    per_category: Counter = Counter()
    for i, row in enumerate(rows):
        v = verdicts.get(i)
        if v is not None and v.flagged:
            removed.append({**row, "guard": v.to_dict()})
            per_category.update(v.flagged_categories or ["unsafe"])
        else:
            kept.append(row)
    report: dict[str, Any] = {
        "rows_in": len(rows),
        "kept": len(kept),
        "removed": len(removed),
        "not_moderated": len(rows) - len(todo),
        "removed_per_category": dict(sorted(per_category.items())),
    }
    if len(kept) + len(removed) != len(rows):  # cannot happen; checked so it never goes silently wrong
        raise RuntimeError(f"filter accounting broke: {report}")
    return {"kept": kept, "removed": removed, "report": report}


def run_filter(config: FilterConfig, guard: Guard | None = None) -> dict[str, Any]:
    """``alignkit safety filter``: kept.jsonl, removed.jsonl (+ flagged_<CODE>.jsonl with route), filter_report.json."""
    rows = [r for _, r in _read(config.data)]
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    guard = guard or build_guard(config, out / "cache")
    result = filter_records(rows, guard, config.field, config.batch_size)
    write_records(out / "kept.jsonl", result["kept"])
    write_records(out / "removed.jsonl", result["removed"])
    routed: dict[str, str] = {}
    if config.action == "route":
        by_code: dict[str, list[dict[str, Any]]] = {}
        for row in result["removed"]:
            for code in row["guard"]["flagged_categories"] or ["unsafe"]:
                by_code.setdefault(code, []).append(row)
        for code, group in by_code.items():
            routed[code] = str(write_records(out / f"flagged_{code}.jsonl", group))
    report = {**result["report"], "action": config.action, "guard": config.guard, "routed": routed}
    (out / "filter_report.json").write_text(json.dumps(report, indent=2))
    return report


def run_moderate(config: ModerateConfig, guard: Guard | None = None) -> dict[str, Any]:
    """``alignkit safety moderate``: each row with its ``guard`` verdict added; counts per category."""
    rows = [r for _, r in _read(config.data)]
    guard = guard or build_guard(config, Path(config.output).parent / ".alignkit_cache")
    texts = []
    for r in rows:
        t = moderated_text(r, config.field)
        texts.append(t if t is not None else (r.get("prompt", ""), None))
    verdicts = score_rows(guard, texts, config.batch_size)
    out_rows = [{**r, "guard": v.to_dict()} for r, v in zip(rows, verdicts)]
    write_records(config.output, out_rows)
    counts: Counter = Counter(c for v in verdicts for c in v.flagged_categories)
    return {"rows": len(rows), "flagged": sum(v.flagged for v in verdicts), "per_category": dict(sorted(counts.items()))}


def flag_rate(guard: Guard, prompts: Sequence[Any], responses: Sequence[Any]) -> float:
    """Share of (prompt, response) pairs a guard flags: a model's flag rate for evaluation reports."""
    if not prompts:
        return math.nan
    verdicts = score_rows(guard, list(zip(prompts, responses)))
    return sum(v.flagged for v in verdicts) / len(verdicts)


def flag_rates(
    guard: Guard,
    prompts: Sequence[Any],
    responses_by_model: dict[str, Sequence[Any]],
    groups: Sequence[str] | None = None,
    ci: float = 0.95,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Guard flag rate per model (Wilson interval), overall and per ``groups`` label (e.g. prompt category).

    The guard column of an evaluation: the same guard reads every model's answers to the same
    prompts, so the rates compare models (a guard's own errors hit all of them alike). Returns
    ``{model: {"n", "flagged", "rate", "ci", "per_category": {code: count}, "by_group": {...}}}``."""
    out: dict[str, Any] = {}
    for model, responses in responses_by_model.items():
        if len(responses) != len(prompts):
            raise ValueError(f"model {model!r}: {len(responses)} responses for {len(prompts)} prompts")
        verdicts = score_rows(guard, list(zip(prompts, responses)), batch_size)
        flags = [v.flagged for v in verdicts]
        row = _wilson_row(flags, ci)
        row["per_category"] = dict(sorted(Counter(c for v in verdicts for c in v.flagged_categories).items()))
        if groups is not None:
            by: dict[str, list[bool]] = {}
            for g, f in zip(groups, flags):
                by.setdefault(g, []).append(f)
            row["by_group"] = {g: _wilson_row(fs, ci) for g, fs in sorted(by.items())}
        out[model] = row
    return out


def _wilson_row(flags: Sequence[bool], ci: float) -> dict[str, Any]:
    return rate_with_ci(flags, ci, count="flagged", rate="rate")


RESPONSE_META = ("prompt", "category", "prompt_id", "id")


def run_flag_rates(config: FlagRatesConfig, guard: Guard | None = None) -> dict[str, Any]:
    """``alignkit safety flag-rates``: the guard column of an evaluation's ``responses.jsonl``
    (one row per prompt: ``prompt``, ``category``, one column per model), written as JSON."""
    rows = [r for _, r in _read(config.responses)]
    if not rows:
        raise DataError(config.responses, None, "rows", "at least one row", seen="an empty file")
    models = [k for k in rows[0] if k not in RESPONSE_META] if config.models is None else config.models.split(",")
    for line, row in enumerate(rows, 1):
        for m in models:
            if not isinstance(row.get(m), str):
                raise DataError(config.responses, line, m, "the model's response text", seen=repr(row.get(m))[:40])
    guard = guard or build_guard(config, Path(config.output).parent / ".alignkit_cache")
    groups = [str(r.get("category", "all")) for r in rows]
    rates = flag_rates(guard, [r["prompt"] for r in rows], {m: [r[m] for r in rows] for m in models}, groups)
    result = {"guard": config.guard, "prompts": len(rows), "by_model": rates}
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


SuccessJudge = Callable[[Sequence[str], Sequence[str]], list[float]]


def success_judge(spec: str, source: GuardSource | None = None, cache_dir: Path | None = None) -> SuccessJudge:
    """A red-team success judge from its spec: ``sandbox[:FOLDER]`` (ground truth, a plug-in), a guard
    folder or ``judge:MODEL`` (score = P(unsafe)), or ``python:mod:fn`` (a factory of no arguments)."""
    if spec == "sandbox" or spec.startswith("sandbox:"):
        factory = load_object("alignkit.sandbox.attacks:harm_judge", what="judge 'sandbox'")
        return factory(spec.partition(":")[2] or None)
    if spec.startswith(PYTHON_PREFIX):
        return load_object(spec[len(PYTHON_PREFIX) :], what=f"judge '{spec}'", scheme=PYTHON_PREFIX)()
    base = source.model_dump() if source is not None else {}
    guard = build_guard(GuardSource(**{**base, "guard": spec}), cache_dir)

    def judge(requests: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [v.unsafe for v in score_rows(guard, list(zip(requests, responses)))]

    return judge


class GuardedBackend:
    """A :class:`~alignkit.ai.backend.ChatBackend` behind a guard: flagged input is refused before the
    model sees it, flagged output is replaced by the refusal (``mode="refuse"``) or by one
    regeneration attempt that is kept only if it passes (``mode="rewrite"``, else the refusal).

    Wraps any backend, so a guarded model can be served, red-teamed (``run_attacks``) or evaluated
    like any other; ``stats`` counts what the guard did."""

    def __init__(self, backend: Any, guard: Guard, mode: str = "refuse", refusal: str = "I can't help with that.") -> None:
        if mode not in ("refuse", "rewrite"):
            raise ValueError(f"mode must be 'refuse' or 'rewrite', got {mode!r}")
        self.backend, self.guard, self.mode, self.refusal = backend, guard, mode, refusal
        self.stats = {"requests": 0, "input_flagged": 0, "output_flagged": 0, "rewritten": 0}

    def chat(
        self, messages_list: Sequence[list[dict[str, Any]]], max_tokens: int = 256, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        convos = [list(m) for m in messages_list]
        self.stats["requests"] += len(convos)
        inputs = self.guard.score(convos, None)
        out = [self.refusal if v.flagged else "" for v in inputs]
        todo = [i for i, v in enumerate(inputs) if not v.flagged]
        self.stats["input_flagged"] += len(convos) - len(todo)
        answers = (
            self.backend.chat([convos[i] for i in todo], max_tokens=max_tokens, temperature=temperature, seed=seed)
            if todo
            else []
        )
        verdicts = self.guard.score([convos[i] for i in todo], answers) if todo else []
        retry = []
        for i, answer, v in zip(todo, answers, verdicts):
            out[i] = answer
            if v.flagged:
                self.stats["output_flagged"] += 1
                out[i] = self.refusal
                retry.append(i)
        if self.mode == "rewrite" and retry:
            again = self.backend.chat(
                [convos[i] for i in retry], max_tokens=max_tokens, temperature=max(temperature, 0.7), seed=seed + 1
            )
            for i, answer, v in zip(retry, again, self.guard.score([convos[i] for i in retry], again)):
                if not v.flagged:
                    out[i] = answer
                    self.stats["rewritten"] += 1
        return out

    def option_logprobs(self, messages: list[dict[str, Any]], options: Sequence[str]) -> list[float]:
        return self.backend.option_logprobs(messages, options)
