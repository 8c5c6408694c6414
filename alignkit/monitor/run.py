"""``alignkit monitor run`` and ``alignkit monitor export``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from alignkit.ai.backend import ChatBackend
from alignkit.ai.runner import make_backend
from alignkit.data.io import write_records
from alignkit.feedback.store import FeedbackStore
from alignkit.monitor.config import CorrectionsExportConfig, JudgeSettings, MonitorConfig
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
