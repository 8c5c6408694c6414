"""Aggregate a stage's judgments and export training data with provenance.

Every exported row carries who judged it, when, how much they agreed and how confident the
aggregate is (``annotator_ids``, ``created_at``, ``agreement``, ``confidence``, ``n_judgments``,
``judgments``), so a dataset can later be filtered by quality without going back to the store.
"""

from __future__ import annotations

import gc
import warnings
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select

from alignkit.data.io import write_records
from alignkit.feedback.aggregate import ComparisonAggregator, DawidSkene, MajorityVote, ranking_to_comparisons
from alignkit.feedback.models import Annotation, Annotator, Prompt, Response, Task
from alignkit.feedback.schemas import label_of
from alignkit.feedback.store import FeedbackStore, Judgment

Method = Literal["majority", "dawid_skene"]
# Most ids in one ``IN (...)`` list. Each id is one bind parameter: PostgreSQL allows 65,535 per
# statement and SQLite builds before 3.32 only 999, so 900 fits every backend; a 1M-judgment
# export (333k tasks) then takes a few hundred queries per table instead of one per row.
IN_CHUNK = 900
ExportKind = Literal["sft", "pairs", "binary", "rankings"]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a whole stage is read and built.

    Reading a stage allocates a few objects per judgment (rows, dicts, ORM state) and keeps them
    all; every collection the allocations trigger walks that growing heap, which made a 300k
    judgment export cost 182 µs per judgment with the collector on against 83 with it off
    (benchmarks/README.md, issue #18). Reference counting still frees what is dropped; cycles
    left behind are collected once the collector is back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Aggregate(BaseModel):
    task_id: int
    label: Any
    confidence: float  # the aggregator's posterior (majority: vote share) for the label
    agreement: float  # raw share of judgments equal to the label
    n_judgments: int
    annotator_ids: list[str]
    created_at: str | None
    source: str = "human"  # "model" for auto-labelled pre-labels, "adjudicated" for review-queue decisions


@_gc_paused()
def aggregate_stage(
    store: FeedbackStore,
    project: str,
    stage: str,
    method: Method = "dawid_skene",
    seed: int = 0,
    statuses: tuple[str, ...] = ("active",),
    prior_strength: float = 5.0,
    clamp_gold: bool = True,
) -> dict[int, Aggregate]:
    """One label per non-gold task of ``stage`` from the judgments of annotators whose status is in
    ``statuses`` (default: active only; screened-out and flagged people are left out), plus auto
    pre-labels. A task an admin decided in the review queue takes that decision (confidence 1).

    Gold tasks take part in the Dawid–Skene fit but are not returned. With ``clamp_gold`` (the
    default) their researcher label is fixed, so every annotator's confusion matrix is anchored on
    the gold they answered (screening alone gives each admitted annotator 16–60), which matters
    most for annotators with few regular judgments. ``prior_strength``: Dirichlet
    pseudo-counts per confusion row; with under a hundred judgments per annotator the
    unregularised matrices overfit, and 5 was the best of 0/2/5/10/20 on simulated crowds (see
    ``benchmarks/feedback_quality.py``).
    """
    if method not in ("majority", "dawid_skene"):
        raise ValueError(f"method must be 'majority' or 'dawid_skene', got {method!r}")
    judgments = [j for j in store.judgments(project, stage, statuses=statuses) if j.label is not None]
    out: dict[int, Aggregate] = {}
    by_task: dict[int, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_task[j.task_id].append(j)
    if judgments:
        triples = [(j.task_id, j.annotator, j.label) for j in judgments]
        model: DawidSkene | MajorityVote
        if method == "dawid_skene":
            known: dict[Hashable, Hashable] = {
                j.task_id: j.gold_label for j in judgments if j.is_gold and j.gold_label is not None
            }
            ds = DawidSkene(prior_strength=prior_strength).fit(triples, known=known if clamp_gold else None)
            if not ds.converged_:  # labels are still usable, but say the fit hit its cap
                gain = ds.log_likelihood_[-1] - ds.log_likelihood_[-2] if ds.n_iter_ > 1 else float("nan")
                warnings.warn(
                    f"Dawid-Skene stopped at its cap of {ds.n_iter} rounds, still gaining {gain:.2e} "
                    f"log-likelihood per judgment a round (tolerance {ds.tol:g})",
                    RuntimeWarning,
                    stacklevel=2,
                )
            model = ds
        else:
            model = MajorityVote(seed=seed).fit(triples)
        for tid, rows in by_task.items():
            if rows[0].is_gold:
                continue
            label = model.labels_[tid]
            out[tid] = Aggregate(
                task_id=tid,
                label=label,
                confidence=model.probas_[tid][label],
                agreement=sum(r.label == label for r in rows) / len(rows),
                n_judgments=len(rows),
                annotator_ids=[r.annotator for r in rows],
                created_at=max(r.created_at for r in rows).isoformat(),
            )
    decided = store.adjudications(project, stage)
    for t in store.tasks(project, stage):
        if t.id in decided:
            label = label_of(t.type, decided[t.id])
            prior = out.get(t.id)
            rows_for = by_task.get(t.id, [])  # not a scan of every judgment per decided task
            out[t.id] = Aggregate(
                task_id=t.id,
                label=label,
                confidence=1.0,
                agreement=sum(j.label == label for j in rows_for) / len(rows_for) if rows_for else 1.0,
                n_judgments=len(rows_for),
                annotator_ids=prior.annotator_ids if prior else [],
                created_at=prior.created_at if prior else None,
                source="adjudicated",
            )
        elif t.status == "auto" and t.prelabel is not None and t.id not in out:
            out[t.id] = Aggregate(
                task_id=t.id,
                label=label_of(t.type, t.prelabel),
                confidence=t.prelabel_confidence or 0.0,
                agreement=1.0,
                n_judgments=0,
                annotator_ids=[],
                created_at=None,
                source="model",
            )
    return out


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    """``ids`` in slices of at most :data:`IN_CHUNK`, one ``IN`` list (and bind parameter set) each."""
    for lo in range(0, len(ids), IN_CHUNK):
        yield list(ids[lo : lo + IN_CHUNK])


def _texts(store: FeedbackStore, task_ids: list[int]) -> dict[int, tuple[str, list[str], Task]]:
    """task id -> (prompt text, response texts in the task's order, task), in three chunked ``IN``
    queries per :data:`IN_CHUNK` tasks (tasks, then their prompts, then their responses) rather
    than one query per row: per-row lookups were 88 % of an export's time (benchmarks/README.md)."""
    out = {}
    with store.read() as s:
        for chunk in _chunks(task_ids):
            tasks = {t.id: t for t in s.scalars(select(Task).where(Task.id.in_(chunk)))}
            prompt_ids = sorted({t.prompt_id for t in tasks.values() if t.prompt_id})
            response_ids = sorted({r for t in tasks.values() for r in t.response_ids or []})
            prompts: dict[int, str] = {}
            for part in _chunks(prompt_ids):
                prompts.update(s.execute(select(Prompt.id, Prompt.text).where(Prompt.id.in_(part))).all())
            responses: dict[int, str] = {}
            for part in _chunks(response_ids):
                responses.update(s.execute(select(Response.id, Response.text).where(Response.id.in_(part))).all())
            for tid in chunk:
                t = tasks[tid]
                prompt = prompts[t.prompt_id] if t.prompt_id else ""
                out[tid] = (prompt, [responses[r] for r in t.response_ids or []], t)
    return out


def _provenance(agg: Aggregate) -> dict[str, Any]:
    return {
        "annotator_ids": agg.annotator_ids,
        "created_at": agg.created_at,
        "agreement": round(agg.agreement, 6),
        "confidence": round(agg.confidence, 6),
        "n_judgments": agg.n_judgments,
        "label_source": agg.source,
    }


@_gc_paused()
def build_records(
    store: FeedbackStore,
    project: str,
    kind: ExportKind,
    stage: str | None = None,
    method: Method = "dawid_skene",
    min_agreement: float = 0.0,
    min_confidence: float = 0.0,
) -> list[dict[str, Any]]:
    """Training records of ``kind`` from the project; rows below the quality bars are dropped."""
    _, cfg = store.project(project)
    want = {"pairs": "compare", "binary": "binary", "rankings": "rank", "sft": "review_completion"}[kind]
    stages = [s.name for s in cfg.stages if s.task_type == want] if stage is None else [stage]
    if not stages:
        have = ", ".join(f"{s.name} ({s.task_type})" for s in cfg.stages) or "none"
        raise ValueError(
            f"kind: expected a kind project {project!r} has data for, saw {kind!r}: it needs a {want} stage (stages: {have})"
        )
    records: list[dict[str, Any]] = []
    if kind == "sft":
        return _sft_records(store, project, stages, method, min_agreement, min_confidence)
    for st in stages:
        aggs = aggregate_stage(store, project, st, method)
        keep = {tid: a for tid, a in aggs.items() if a.agreement >= min_agreement and a.confidence >= min_confidence}
        texts = _texts(store, list(keep))
        raw = _raw(store, project, list(keep))
        for tid, agg in sorted(keep.items()):
            prompt, responses, task = texts[tid]
            base = {"task_id": tid, "stage": st, **_provenance(agg), "judgments": raw.get(tid, [])}
            if kind == "pairs":
                if agg.label == "tie":
                    continue  # a tie is kept in the store (raw judgments) but is not a training pair
                chosen, rejected = (responses[0], responses[1]) if agg.label == "A" else (responses[1], responses[0])
                crit = _criteria_majority(raw.get(tid, []), flip=agg.label == "B")
                records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "criteria": crit, **base})
            elif kind == "binary":
                records.append({"prompt": prompt, "completion": responses[0], "label": bool(agg.label), **base})
            elif kind == "rankings":
                comparisons = []
                for j in raw.get(tid, []):
                    comparisons += ranking_to_comparisons(j["order"])
                if not comparisons:
                    continue
                bt = ComparisonAggregator(alpha=0.1).fit(comparisons)
                order = bt.rank(list(range(len(responses))))
                records.append(
                    {
                        "prompt": prompt,
                        "completions": [responses[i] for i in order],
                        "scores": [round(bt.scores_[i], 6) for i in order],
                        **base,
                    }
                )
    return records


def _raw(store: FeedbackStore, project: str, task_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """task id -> its active annotators' raw answers, oldest first; one ``IN`` query per
    :data:`IN_CHUNK` tasks (a single list of every id broke the databases' bind-parameter limits)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    active = {p.id for p in store.people(project).values() if p.status == "active"}  # active in this project
    with store.read() as s:
        for chunk in _chunks(task_ids):
            q = (
                select(Annotation, Annotator.name)
                .join(Annotator, Annotator.id == Annotation.annotator_id)
                .where(Annotation.task_id.in_(chunk))
                .order_by(Annotation.id)
            )
            for note, name in s.execute(q).all():
                if note.annotator_id not in active:
                    continue
                out[note.task_id].append({"annotator": name, **note.answer})
    return out


def _criteria_majority(raw: list[dict[str, Any]], flip: bool) -> dict[str, str]:
    """Per-criterion majority, expressed as "chosen" / "rejected" / "tie" (the sandbox's convention)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for j in raw:
        for c, v in (j.get("criteria") or {}).items():
            votes[c][v] += 1
    out = {}
    for c, cnt in votes.items():
        top = cnt.most_common()
        v = "tie" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]
        if v == "tie":
            out[c] = "tie"
        else:
            out[c] = "chosen" if (v == "A") != flip else "rejected"
    return out


def _sft_records(
    store: FeedbackStore, project: str, stages: list[str], method: Method, min_agreement: float, min_confidence: float
) -> list[dict[str, Any]]:
    pid, _ = store.project(project)
    provenance: dict[int, Aggregate] = {}
    for st in stages:
        aggs = aggregate_stage(store, project, st, method)
        for tid, (_p, _r, task) in _texts(store, list(aggs)).items():
            provenance[task.response_ids[0]] = aggs[tid]
    records = []
    with store.read() as s:
        q = (
            select(Response, Prompt)
            .join(Prompt, Prompt.id == Response.prompt_id)
            .where(Prompt.project_id == pid, Response.status == "accepted")
            .order_by(Response.id)
        )
        for resp, prompt in s.execute(q).all():
            agg = provenance.get(resp.parent_id or resp.id)
            if agg is not None and (agg.agreement < min_agreement or agg.confidence < min_confidence):
                continue
            author = s.get_one(Annotator, resp.author_id).name if resp.author_id else None
            row = {
                "prompt": prompt.text,
                "completion": resp.text,
                "response_id": resp.id,
                "author": author,
                "model": resp.model,
                "domain": resp.domain,
                "edited": resp.parent_id is not None,
            }
            row |= _provenance(agg) if agg is not None else {"annotator_ids": [], "created_at": resp.created_at.isoformat()}
            records.append(row)
    return records


def export_dataset(store: FeedbackStore, project: str, kind: ExportKind, path: str | Path, **kwargs: Any) -> tuple[Path, int]:
    """Write :func:`build_records` through ``alignkit.data.io.write_records``; returns (path, rows)."""

    records = build_records(store, project, kind, **kwargs)
    return write_records(path, records), len(records)
