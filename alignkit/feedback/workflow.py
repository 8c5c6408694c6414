"""Stages feed each other: accepted outputs of one stage become the tasks of the next.

``advance`` is idempotent: it creates, for every stage, the tasks its input calls for that do
not exist yet (one task per prompt / response / pair / set), so it can be run after every batch
of submissions, or by a cron, without duplicating work.

    verified prompts -> completion tasks -> review tasks -> SFT dataset
    prompts -> model responses -> comparison tasks -> preference dataset
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alignkit.feedback.config import StageConfig
from alignkit.feedback.models import Prompt, Response, Task
from alignkit.feedback.store import FeedbackStore


def _inputs(s: Session, project_id: int, st: StageConfig) -> list[dict[str, Any]]:
    """What the stage's input names, as task specs (prompt id, response ids, authors)."""

    def prompts(status: list[str]) -> list[Prompt]:
        query = select(Prompt).where(Prompt.project_id == project_id, Prompt.status.in_(status)).order_by(Prompt.id)
        return list(s.scalars(query))

    out: list[dict[str, Any]] = []
    if st.input == "new_prompts":
        out = [
            {"prompt_id": p.id, "response_ids": [], "author_ids": [p.author_id] if p.author_id else []}
            for p in prompts(["pending"])
        ]
    elif st.input == "accepted_prompts":
        out = [{"prompt_id": p.id, "response_ids": [], "author_ids": []} for p in prompts(["accepted"])]
    else:
        for p in prompts(["pending", "accepted"]):
            rs = list(s.scalars(select(Response).where(Response.prompt_id == p.id).order_by(Response.id)))
            if st.input == "pending_responses":
                rs = [r for r in rs if r.status == "pending" and r.author_id is not None]
                out += [{"prompt_id": p.id, "response_ids": [r.id], "author_ids": [r.author_id]} for r in rs]
                continue
            rs = [r for r in rs if r.status != "rejected"]
            authors = sorted({r.author_id for r in rs if r.author_id is not None})
            if st.input == "responses":
                out += [
                    {"prompt_id": p.id, "response_ids": [r.id], "author_ids": [r.author_id] if r.author_id else []} for r in rs
                ]
            elif st.input == "response_pairs" and len(rs) >= 2:
                for a, b in itertools.islice(itertools.combinations(rs, 2), st.max_pairs_per_prompt):
                    out.append(
                        {
                            "prompt_id": p.id,
                            "response_ids": [a.id, b.id],
                            "author_ids": [x for x in (a.author_id, b.author_id) if x],
                        }
                    )
            elif st.input == "response_sets" and len(rs) >= 2:
                k = int(st.payload.get("k", 4))
                out.append({"prompt_id": p.id, "response_ids": [r.id for r in rs[:k]], "author_ids": authors})
    return out


def advance(store: FeedbackStore, project: str) -> dict[str, int]:
    """Create the tasks every stage's input calls for; returns the number created per stage."""
    pid, cfg = store.project(project)
    created: dict[str, int] = {}
    with store.write() as s:
        for st in cfg.stages:
            if st.input == "none":
                continue
            # Gold tasks count as existing too: an ordinary twin of a gold item would label it twice and
            # give the gold copy away (same prompt and responses, different id).
            have = {
                (t.prompt_id, tuple(t.response_ids or []))
                for t in s.scalars(select(Task).where(Task.project_id == pid, Task.stage == st.name))
            }
            n = 0
            for spec in _inputs(s, pid, st):
                key = (spec["prompt_id"], tuple(spec["response_ids"]))
                if key in have:
                    continue
                store._add_task(s, pid, st, spec["prompt_id"], spec["response_ids"], None, None, None, spec["author_ids"])
                have.add(key)
                n += 1
            created[st.name] = n
    return created


def import_items(
    store: FeedbackStore,
    project: str,
    rows: list[dict[str, Any]],
    stage: str | None = None,
    gold_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, int]:
    """Import prompts and model responses (and optionally task-ready comparisons).

    Each row: ``prompt`` and, optionally, ``responses`` (list of texts, or of ``{"text", "model"}``),
    or a pair ``chosen``/``rejected`` / ``a``/``b`` (order shuffled so position carries no signal),
    ``gold`` (the researcher's answer: makes a gold task of ``stage``), ``prelabel`` and
    ``prelabel_confidence`` (a model's answer). With ``stage`` given a task of that stage is created
    per row; without, run :func:`advance` to let the stages pick the items up.
    """

    rng = random.Random(seed)
    pid, cfg = store.project(project)
    if gold_fraction > 0 and not stage:
        raise ValueError("gold tasks are made for one stage: give the stage with the gold fraction (e.g. --stage compare)")
    st = cfg.stage(stage) if stage else None
    n_prompts = n_tasks = n_gold = 0
    with store.write() as s:
        for line, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not str(row.get("prompt", "")).strip():
                raise ValueError(f"row {line}: expected an object with a non-empty 'prompt'")
            p = Prompt(
                project_id=pid,
                text=row["prompt"],
                status=row.get("status", "accepted" if stage else "pending"),
                source=row.get("source", "import"),
                meta={k: v for k, v in row.items() if k in ("id", "category", "prompt_id")},
            )
            s.add(p)
            s.flush()
            n_prompts += 1
            responses: list[tuple[str, str | None]] = []
            gold = row.get("gold")
            pair_answer: dict[str, str] | None = None
            if "chosen" in row and "rejected" in row:
                pair = [(row["chosen"], row.get("chosen_model")), (row["rejected"], row.get("rejected_model"))]
                swap = rng.random() < 0.5
                responses = pair[::-1] if swap else pair
                pair_answer = {"overall": "B" if swap else "A"}  # the pair's own order is the researcher's answer
                if gold is True:
                    gold = pair_answer
            else:
                for r in row.get("responses", []):
                    responses.append((r["text"], r.get("model")) if isinstance(r, dict) else (r, row.get("model")))
            ids = []
            for text, model in responses:
                r = Response(prompt_id=p.id, text=text, model=model)
                s.add(r)
                s.flush()
                ids.append(r.id)
            if st is not None:
                truth = row.get("truth", pair_answer)
                if gold is None and gold_fraction > 0 and rng.random() < gold_fraction and truth is not None:
                    gold = truth
                store._add_task(
                    s,
                    pid,
                    st,
                    p.id,
                    ids,
                    gold if isinstance(gold, dict) else None,
                    row.get("prelabel"),
                    row.get("prelabel_confidence"),
                    [],
                )
                n_tasks += 1
                n_gold += int(isinstance(gold, dict))
    return {"prompts": n_prompts, "tasks": n_tasks, "gold": n_gold}
