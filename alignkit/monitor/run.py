"""``alignkit monitor run`` and ``alignkit monitor export``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from alignkit.ai.backend import ChatBackend
from alignkit.ai.runner import make_backend
from alignkit.data.io import DataError, read_jsonl_objects, write_records
from alignkit.feedback.store import FeedbackStore
from alignkit.models.generation import generate
from alignkit.models.loading import load_model
from alignkit.monitor.benchmark import BenchmarkSpec, create_benchmark, freeze_benchmark, load_benchmark, score_answers
from alignkit.monitor.config import (
    BenchmarkCreateConfig,
    BenchmarkFreezeConfig,
    BenchmarkRunConfig,
    CorrectionsExportConfig,
    JudgeSettings,
    MonitorConfig,
)
from alignkit.monitor.judge import judge_entries
from alignkit.monitor.log import read_log
from alignkit.monitor.review import export_corrections, queue_for_review
from alignkit.plugins import load_object


def judge_backend(settings: JudgeSettings, cache: Any) -> ChatBackend:
    if settings.judge_plugin:
        return load_object(settings.judge_plugin, what="judge_plugin")()
    return make_backend(settings, cache)


def run_monitor(config: MonitorConfig) -> dict[str, Any]:
    entries = read_log(config.log)
    backend = judge_backend(config, config.output.with_name(config.output.name + ".cache"))
    verdicts = judge_entries(
        backend,
        entries,
        threshold=config.threshold,
        rubric=config.rubric,
        min_faithfulness=config.min_faithfulness,
        reasons=config.reasons,
    )
    write_records(config.output, [v.to_dict() for v in verdicts])
    flagged = sum(v.flagged for v in verdicts)
    result: dict[str, Any] = {
        "entries": len(verdicts),
        "flagged": flagged,
        "flag_rate": flagged / len(verdicts) if verdicts else 0.0,
    }
    result["by_reason"] = dict(Counter(v.reason for v in verdicts if v.flagged).most_common(5))
    if config.store:
        store = FeedbackStore(config.store)
        try:
            result["queued"] = len(
                queue_for_review(store, config.project, verdicts, overlap=config.overlap, limit=config.max_tasks)
            )
        finally:
            store.close()
    (config.output.with_name(config.output.stem + ".summary.json")).write_text(json.dumps(result, indent=2))
    return result


def run_export(config: CorrectionsExportConfig) -> dict[str, Any]:
    store = FeedbackStore(config.store)
    try:
        return export_corrections(store, config.project, config.output)
    finally:
        store.close()


def run_benchmark_create(config: BenchmarkCreateConfig) -> dict[str, Any]:
    spec = BenchmarkSpec.model_validate(yaml.safe_load(Path(config.spec).read_text()))
    store = FeedbackStore(config.store)
    try:
        ids = create_benchmark(store, config.project, spec, config.n_prompts, config.overlap)
    finally:
        store.close()
    return {"project": config.project, "tasks": len(ids), "criteria": [c.name for c in spec.criteria]}


def run_benchmark_freeze(config: BenchmarkFreezeConfig) -> Path:
    store = FeedbackStore(config.store)
    try:
        return freeze_benchmark(store, config.project, config.output)
    finally:
        store.close()


def _read_answers(path: Path, items: list[dict[str, Any]]) -> dict[str, list[str]]:
    rows = {str(r.get("id")): (line, r) for line, r in read_jsonl_objects(path)}
    models = [k for k in next(iter(rows.values()))[1] if k != "id"] if rows else []
    out: dict[str, list[str]] = {m: [] for m in models}
    for it in items:
        if it["id"] not in rows:
            raise DataError(path, None, "id", f"expected an answer row for every item, saw none for {it['id']}")
        line, row = rows[it["id"]]
        for m in models:
            if not isinstance(row.get(m), str):
                raise DataError(path, line, m, f"expected the answer of model {m} as a string, saw {type(row.get(m)).__name__}")
            out[m].append(row[m])
    return out


def run_benchmark(config: BenchmarkRunConfig) -> dict[str, Any]:
    bench = load_benchmark(config.benchmark)
    answers: dict[str, list[str]] = _read_answers(config.answers, bench["items"]) if config.answers else {}
    prompts = [it["prompt"] for it in bench["items"]]
    for name, path in config.models.items():
        model, tok = load_model(path)
        answers[name] = generate(model, tok, prompts, max_new_tokens=config.max_new_tokens, temperature=0.0, seed=config.seed)
    if not answers:
        raise ValueError("give --models name=folder,... or --answers FILE")
    backend = judge_backend(config, config.output.with_name(config.output.name + ".cache"))
    result = score_answers(backend, bench, answers, seed=config.seed)
    result["answers"] = answers
    config.output.parent.mkdir(parents=True, exist_ok=True)
    config.output.write_text(json.dumps(result, indent=2))
    return result
