"""People as judges: evaluation comparisons as compare tasks in the feedback store, and back.

The same pairs an LLM judge sees become ``compare`` tasks (per-criterion choices and harm
categories, as the store's compare schema has them) in a feedback-store project, so the store's
machinery applies unchanged: overlap (dynamic if configured), gold tasks, screening, spammer
flags, and aggregation (Dawid–Skene by default). :func:`read_back` turns the aggregated answers
into battle records (``source: "people"``) that the ladders and win rates use like the judge's.

Mixed mode (``people="uncertain"``): the judge decides the pairs it is confident about
(``max(p, 1 − p) >= confident``) and people the rest; wherever both answered, the judge's
agreement with people is reported (as AlpacaEval and MT-Bench report judge-human agreement).

Which models each task compares is kept in ``people_tasks.json`` next to the results, not in the
task (annotators see two anonymous answers in a random order).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignkit.data.chat import prompt_text
from alignkit.data.files import atomic_write_text
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import aggregate_stage
from alignkit.feedback.store import FeedbackStore

TASKS_FILE = "people_tasks.json"
DEFAULT_HARMS = ["violence", "illegal", "privacy", "hate", "self-harm", "misinformation"]


def push_comparisons(
    store: FeedbackStore,
    project: str,
    folder: Path,
    prompts: Sequence[dict[str, Any]],
    answers: dict[str, list[str]],
    jobs: Sequence[tuple[int, str, str]],
    criteria: Sequence[str],
    overlap: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Create one compare task per ``(prompt index, model_a, model_b)`` job (once: a rerun reuses them).

    Criteria other than ``overall`` are asked per task under their own names (helpful, honest,
    harmless, or yours). Returns the task map written to ``folder/people_tasks.json``.
    """
    path = Path(folder) / TASKS_FILE
    if path.exists():
        return list(json.loads(path.read_text())["tasks"])
    asked = [c for c in criteria if c != "overall"]
    stage = StageConfig(name="compare", task_type="compare", overlap=overlap, payload={"criteria": asked, "harms": DEFAULT_HARMS})
    store.create_project(project, ProjectConfig(stages=[stage], seed=seed), exist_ok=True)
    rng = random.Random(seed)
    tasks = []
    for i, a, b in jobs:
        shown = (b, a) if rng.random() < 0.5 else (a, b)  # people see a random order, independent of the record's
        pid = store.add_prompt(project, prompt_text(prompts[i]["prompt"]), status="accepted", source="evaluate")
        ids = [store.add_response(pid, answers[m][i], model=m) for m in shown]
        task = store.add_task(project, "compare", prompt_id=pid, response_ids=ids)
        tasks.append({"task_id": task, "prompt_index": i, "shown": list(shown), "model_a": a, "model_b": b})
    atomic_write_text(path, json.dumps({"project": project, "criteria": asked, "tasks": tasks}, indent=2))
    return tasks


def _winner(label: Any, shown: Sequence[str], model_a: str) -> str:
    if label not in ("A", "B"):
        return "tie"
    picked = shown[0] if label == "A" else shown[1]
    return "model_a" if picked == model_a else "model_b"


def read_back(
    store: FeedbackStore,
    project: str,
    tasks: Sequence[dict[str, Any]],
    prompts: Sequence[dict[str, Any]],
    criteria: Sequence[str],
    method: str = "dawid_skene",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Battles from the aggregated answers of the tasks that have any (``overall`` by ``method``,
    other criteria by per-criterion majority of the raw answers)."""
    aggs = aggregate_stage(store, project, "compare", method, seed=seed)  # type: ignore[arg-type]
    raw: dict[int, list[dict[str, Any]]] = {}
    for j in store.judgments(project, "compare", include_gold=False, statuses=("active",)):
        raw.setdefault(j.task_id, []).append(j.answer)
    battles = []
    for t in tasks:
        agg = aggs.get(t["task_id"])
        if agg is None:
            continue
        base = {
            "model_a": t["model_a"],
            "model_b": t["model_b"],
            "prompt_index": t["prompt_index"],
            "category": prompts[t["prompt_index"]]["category"],
            "source": "people",
            "n_judgments": agg.n_judgments,
            "agreement": agg.agreement,
        }
        battles.append({**base, "criterion": "overall", "winner": _winner(agg.label, t["shown"], t["model_a"])})
        for c in criteria:
            if c == "overall":
                continue
            votes = Counter((a.get("criteria") or {}).get(c) for a in raw.get(t["task_id"], []))
            votes.pop(None, None)
            if votes:
                (top, n), *rest = votes.most_common()
                label = top if not rest or rest[0][1] < n else "tie"
                battles.append({**base, "criterion": c, "winner": _winner(label, t["shown"], t["model_a"])})
    return battles


def judge_people_agreement(judge_battles: Sequence[dict[str, Any]], people_battles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Share of pairs (both decided by people, non-tie) where the judge's winner equals people's."""
    key = lambda b: (b["prompt_index"], b["model_a"], b["model_b"], b["criterion"])  # noqa: E731
    judged = {key(b): b["winner"] for b in judge_battles}
    both = [(judged[key(b)], b["winner"]) for b in people_battles if key(b) in judged and b["winner"] != "tie"]
    agree = sum(j == p for j, p in both)
    return {"pairs": len(both), "agreement": agree / len(both) if both else None}
