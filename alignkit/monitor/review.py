"""Flagged answers into the feedback store as review-and-correct tasks; corrections back out as data.

A monitoring project has one stage, ``correct``: the store's ``review_completion`` task (accept /
edit / reject with a reason), one reviewer per answer by default. Each task's payload carries what
the judge said (grade, confidence, reason, why), so the reviewer sees it next to the answer.
Tasks are created most-confident-first; the store serves open tasks in creation order, so that is
the order people get them. Queuing is idempotent: an answer already queued (same prompt and
answer text) is not queued twice.

Export (:func:`correction_records`): every task whose review ended in an edit gives an SFT record
(prompt, corrected answer) and a DPO pair (corrected over original), both with provenance: the
log id, model, judge verdict, reviewer(s), review time and task id. Accepted answers (the judge's
false alarms) and rejected ones without a correction are counted, not exported.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from alignkit.data.io import write_records
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.models import Prompt, Response
from alignkit.feedback.store import FeedbackError, FeedbackStore
from alignkit.monitor.judge import Verdict

STAGE = "correct"


def monitor_project(overlap: int = 1, guidelines: str = "") -> ProjectConfig:
    return ProjectConfig(
        stages=[StageConfig(name=STAGE, task_type="review_completion", input="none", overlap=overlap)],
        guidelines=guidelines
        or "The judge flagged these answers. Read its reason, then accept the answer if it is fine, edit it into a correct "
        "answer, or reject it with a reason if you cannot correct it.",
    )


def _key(prompt: str, response: str) -> str:
    return hashlib.sha256(f"{prompt}\x00{response}".encode()).hexdigest()


def priority(v: Verdict) -> float:
    """How sure the judge is that the answer is bad: P(grade below threshold), or 1 - faithfulness if larger."""
    unfaithful = 1.0 - v.faithfulness if v.faithfulness is not None and v.faithfulness == v.faithfulness else 0.0
    return max(v.p_bad, unfaithful)


def queue_for_review(
    store: FeedbackStore, project: str, verdicts: Sequence[Verdict], overlap: int = 1, limit: int | None = None
) -> list[int]:
    """Create a ``correct`` task per flagged verdict (most confident first); returns the new task ids."""
    try:
        store.project(project)
    except FeedbackError:
        store.create_project(project, monitor_project(overlap))
    _, cfg = store.project(project)
    cfg.stage(STAGE)  # a clear error when the project is not a monitoring project
    have = {t.payload.get("monitor_key") for t in store.tasks(project, STAGE)}
    flagged = sorted((v for v in verdicts if v.flagged), key=lambda v: (-priority(v), v.entry.id))
    ids: list[int] = []
    for v in flagged:
        if limit is not None and len(ids) >= limit:
            break
        key = _key(v.entry.prompt, v.entry.response)
        if key in have:
            continue
        have.add(key)
        meta = {"log_id": v.entry.id, "source": "monitor"}
        pid = store.add_prompt(project, v.entry.prompt, status="accepted", source="monitor", meta=meta)
        rid = store.add_response(pid, v.entry.response, model=v.entry.model or "deployed", meta=meta)
        payload = {
            "monitor_key": key,
            "log_id": v.entry.id,
            "judge_score": round(v.score, 4),
            "judge_confidence": round(priority(v), 4),
            "judge_reason": v.reason,
            "judge_why": v.why,
            "contexts": v.entry.contexts,
        }
        ids.append(store.add_task(project, STAGE, prompt_id=pid, response_ids=[rid], payload=payload))
    return ids


def correction_records(store: FeedbackStore, project: str) -> dict[str, Any]:
    """SFT records and corrected-over-original pairs from the finished reviews, with counts."""
    tasks = {t.id: t for t in store.tasks(project, STAGE)}
    judged: dict[int, list[Any]] = defaultdict(list)
    for j in store.judgments(project, STAGE, include_gold=False, statuses=("active", "candidate")):
        judged[j.task_id].append(j)
    with store.read() as s:
        originals = {
            r.id: r
            for r in s.scalars(
                select(Response).where(Response.id.in_([t.response_ids[0] for t in tasks.values() if t.response_ids]))
            )
        }
        edits = {
            r.parent_id: r
            for r in s.scalars(select(Response).where(Response.parent_id.in_(list(originals))))
            if r.status == "accepted"
        }
        prompts = {r.id: r.prompt_id for r in originals.values()}
        prompt_text = {p.id: p.text for p in s.scalars(select(Prompt).where(Prompt.id.in_(list(set(prompts.values())))))}
    sft, pairs = [], []
    counts = {"reviewed": 0, "corrected": 0, "accepted": 0, "rejected": 0, "open": 0}
    for tid, t in sorted(tasks.items()):
        if t.status != "done":
            counts["open"] += 1
            continue
        counts["reviewed"] += 1
        original = originals[t.response_ids[0]]
        corrected = edits.get(original.id)
        if corrected is None:
            counts["accepted" if original.status == "accepted" else "rejected"] += 1
            continue
        counts["corrected"] += 1
        js = judged.get(tid, [])
        provenance = {
            "task_id": tid,
            "log_id": t.payload.get("log_id"),
            "model": original.model,
            "judge_score": t.payload.get("judge_score"),
            "judge_confidence": t.payload.get("judge_confidence"),
            "judge_reason": t.payload.get("judge_reason"),
            "annotator_ids": [j.annotator for j in js],
            "created_at": max(j.created_at for j in js).isoformat() if js else None,
            "source": "monitor-correction",
        }
        prompt = prompt_text[prompts[original.id]]
        sft.append({"prompt": prompt, "completion": corrected.text, "original": original.text, **provenance})
        pairs.append({"prompt": prompt, "chosen": corrected.text, "rejected": original.text, **provenance})
    return {"sft": sft, "pairs": pairs, "counts": counts}


def export_corrections(store: FeedbackStore, project: str, output: str | Path) -> dict[str, Any]:
    """Write ``sft.jsonl`` and ``pairs.jsonl`` into ``output``; returns the counts and paths."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    recs = correction_records(store, project)
    write_records(out / "sft.jsonl", recs["sft"])
    write_records(out / "pairs.jsonl", recs["pairs"])
    return {**recs["counts"], "sft": str(out / "sft.jsonl"), "pairs": str(out / "pairs.jsonl")}
