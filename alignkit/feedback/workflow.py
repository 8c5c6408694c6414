"""Stages feed each other: accepted outputs of one stage become the tasks of the next.

``advance`` is idempotent: it creates, for every stage, the tasks its input calls for that do
not exist yet (one task per prompt / response / pair / set), so it can be run after every batch
of submissions, or by a cron, without duplicating work.

    verified prompts -> completion tasks -> review tasks -> SFT dataset
    prompts -> model responses -> comparison tasks -> preference dataset
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alignkit.data.errors import DataError, describe_value
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


ImportRow = tuple[int, Any]  # (line number in the source file, the row as parsed)


def content_key(row: dict[str, Any]) -> str:
    """The identity of an imported row: SHA-256 of its canonical JSON (keys sorted), so the same row
    imported again, from the same file or another, is recognised and adds nothing."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _text(path: str, line: int | None, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, line, field, "a non-empty string", seen=describe_value(value))
    return value


def _check_row(path: str, line: int | None, row: Any) -> list[tuple[str, str | None]]:
    """Strict types (nothing coerced: ``chosen: 12345`` is an error, not the text "12345"); returns
    the row's responses as (text, model) in file order."""
    if not isinstance(row, dict):
        raise DataError(path, line, None, "a JSON object", seen=describe_value(row))
    _text(path, line, "prompt", row.get("prompt"))
    for field in ("model", "chosen_model", "rejected_model", "source", "status"):
        if row.get(field) is not None and not isinstance(row[field], str):
            raise DataError(path, line, field, "a string", seen=describe_value(row[field]))
    for field in ("gold", "prelabel"):
        value = row.get(field)
        if value is not None and not isinstance(value, dict) and not (field == "gold" and isinstance(value, bool)):
            raise DataError(
                path, line, field, "an answer object" + (" or true/false" if field == "gold" else ""), seen=describe_value(value)
            )
    conf = row.get("prelabel_confidence")
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1):
        raise DataError(path, line, "prelabel_confidence", "a number from 0 to 1", seen=describe_value(conf))
    if "chosen" in row or "rejected" in row:
        return [
            (_text(path, line, "chosen", row.get("chosen")), row.get("chosen_model")),
            (_text(path, line, "rejected", row.get("rejected")), row.get("rejected_model")),
        ]
    responses = row.get("responses", [])
    if not isinstance(responses, list):
        raise DataError(path, line, "responses", "a list of texts or {text, model} objects", seen=describe_value(responses))
    out: list[tuple[str, str | None]] = []
    for i, r in enumerate(responses):
        if isinstance(r, dict):
            if r.get("model") is not None and not isinstance(r["model"], str):
                raise DataError(path, line, f"responses[{i}].model", "a string", seen=describe_value(r["model"]))
            out.append((_text(path, line, f"responses[{i}].text", r.get("text")), r.get("model")))
        else:
            out.append((_text(path, line, f"responses[{i}]", r), row.get("model")))
    return out


def import_items(
    store: FeedbackStore,
    project: str,
    rows: Sequence[dict[str, Any]] | Sequence[ImportRow],
    stage: str | None = None,
    gold_fraction: float = 0.0,
    seed: int = 0,
    source: str = "rows",
    on_bad_row: Literal["error", "skip"] = "error",
) -> dict[str, Any]:
    """Import prompts and model responses (and optionally task-ready comparisons); idempotent.

    Each row: ``prompt`` and, optionally, ``responses`` (list of texts, or of ``{"text", "model"}``),
    or a pair ``chosen``/``rejected`` / ``a``/``b`` (order shuffled so position carries no signal),
    ``gold`` (the researcher's answer: makes a gold task of ``stage``), ``prelabel`` and
    ``prelabel_confidence`` (a model's answer). With ``stage`` given a task of that stage is created
    per row; without, run :func:`advance` to let the stages pick the items up.

    Idempotent: every row has a :func:`content_key`; a row whose key the project already holds adds
    nothing (with ``stage``, its missing task of that stage is still made), so importing a file
    twice, or rerunning an import that was killed (it is one transaction: all of it or none), ends
    with one copy. The pair order and the gold draw come from the key and ``seed``, so they are the
    same on every import. ``rows``: objects, or (line, object) pairs from the file ``source`` (for
    messages). Bad rows raise :class:`DataError` naming the line and field and nothing is written;
    with ``on_bad_row="skip"`` they are left out and counted as rejected (with their message).
    Returns counts: added / already_present / rejected rows, prompts, tasks, gold.
    """
    pid, cfg = store.project(project)
    if gold_fraction > 0 and not stage:
        raise ValueError("gold tasks are made for one stage: give the stage with the gold fraction (e.g. --stage compare)")
    st = cfg.stage(stage) if stage else None
    numbered: list[ImportRow] = [r if isinstance(r, tuple) else (i, r) for i, r in enumerate(rows, 1)]
    if not numbered:
        raise DataError(source, None, None, "at least one row to import", seen="none")
    checked: list[tuple[int, dict[str, Any], list[tuple[str, str | None]]]] = []
    rejected: list[str] = []
    for line, row in numbered:
        try:
            checked.append((line, row, _check_row(source, line, row)))
        except DataError as err:
            if on_bad_row == "error":
                raise
            rejected.append(str(err))
    counts = {"added": 0, "already_present": 0, "rejected": len(rejected), "prompts": 0, "tasks": 0, "gold": 0}
    with store.write() as s:
        for _line, row, responses in checked:
            key = content_key(row)
            rng = random.Random(f"{seed}:{key}")
            swap = rng.random() < 0.5
            draw = rng.random()
            prompt = s.scalar(select(Prompt).where(Prompt.project_id == pid, Prompt.content_key == key))
            if prompt is None:
                prompt = Prompt(
                    project_id=pid,
                    text=row["prompt"],
                    status=row.get("status", "accepted" if stage else "pending"),
                    source=row.get("source", "import"),
                    meta={k: v for k, v in row.items() if k in ("id", "category", "prompt_id")},
                    content_key=key,
                )
                s.add(prompt)
                s.flush()
                pair = "chosen" in row
                for text, model in responses[::-1] if pair and swap else responses:
                    s.add(Response(prompt_id=prompt.id, text=text, model=model))
                s.flush()
                counts["added"] += 1
                counts["prompts"] += 1
            elif st is None or s.scalar(select(Task.id).where(Task.project_id == pid, Task.content_key == _task_key(key, st))):
                counts["already_present"] += 1
                continue
            else:
                counts["added"] += 1  # known row, new to this stage
            if st is None:
                continue
            ids = list(s.scalars(select(Response.id).where(Response.prompt_id == prompt.id).order_by(Response.id)))
            gold = row.get("gold")
            pair_answer = {"overall": "B" if swap else "A"} if "chosen" in row else None  # the pair's own order
            if gold is True:
                gold = pair_answer
            truth = row.get("truth", pair_answer)
            if gold is None and gold_fraction > 0 and draw < gold_fraction and isinstance(truth, dict):
                gold = truth
            tid = store._add_task(
                s,
                pid,
                st,
                prompt.id,
                ids,
                gold if isinstance(gold, dict) else None,
                row.get("prelabel"),
                row.get("prelabel_confidence"),
                [],
            )
            s.get_one(Task, tid).content_key = _task_key(key, st)
            counts["tasks"] += 1
            counts["gold"] += int(isinstance(gold, dict))
    return {**counts, "rejected_rows": rejected} if rejected else counts


def _task_key(row_key: str, st: StageConfig) -> str:
    return hashlib.sha256(f"{row_key}:{st.name}".encode()).hexdigest()
