"""Feedback store core operations at growing numbers of judgments (SQLite), and how their cost grows.

For each size N the benchmark builds a fresh SQLite store holding one pairwise ``compare`` stage
with N submitted judgments (N/3 finished tasks, 3 judgments each, by a fixed crowd of annotators),
a queue of open tasks, and gold tasks answered by screening candidates. The judgments are
bulk-loaded in batches through the store's own SQLAlchemy models (``alignkit.feedback.models``);
then the store's public operations are timed on it:

* ``next_task`` + ``submit``: an annotator takes a task and answers it (per operation; these are
  the web app's hot path and should cost the same at any N);
* ``screen``: the screening test over every candidate's gold answers (``feedback.quality.screen``);
* ``aggregate``: Dawid–Skene over the whole stage (``feedback.export.aggregate_stage``);
* ``export``: preference pairs with provenance to JSONL (``feedback.export.export_dataset``).

With ``--split-aggregate`` the aggregation's parts are timed once more on their own: reading the
judgments (``store.judgments``), the Dawid–Skene fit (with its number of EM rounds: it stops when
no posterior moves by 1e-5, or after 100 rounds) and reading the tasks (``store.tasks``).

Whole-stage operations are reported per judgment as well, so "linear" reads as a flat column.
Times are CPU seconds of this process (``time.process_time``; SQLite runs in-process), so a
machine shared with other jobs changes them far less than wall time.

    python benchmarks/store_scale.py [--sizes 10000,100000,1000000] [--annotators 100] [--ops 200] [--split-aggregate]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Hashable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from alignkit.feedback.aggregate import DawidSkene
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import aggregate_stage, export_dataset
from alignkit.feedback.models import Annotation, Annotator, Assignment, GoldAnswer, Prompt, Response, Task, utcnow
from alignkit.feedback.quality import screen
from alignkit.feedback.store import FeedbackStore

PROJECT, STAGE = "scale", "compare"
CHOICES = ("A", "B", "tie")


def build(
    path: str, n_judgments: int, n_annotators: int, n_open: int, n_candidates: int, seed: int
) -> tuple[FeedbackStore, float]:
    """A store with ``n_judgments`` submitted judgments; returns it and the bulk-load seconds."""
    rng = random.Random(seed)
    store = FeedbackStore(path)
    config = ProjectConfig(stages=[StageConfig(name=STAGE, task_type="compare", overlap=3)], max_pending=8, seed=seed)
    pid = store.create_project(PROJECT, config, gold_key=str(seed))
    payload = config.stage(STAGE).task_payload()
    for i in range(n_annotators):
        store.add_annotator(f"a{i}", project=PROJECT, status="active")
    for i in range(n_candidates):
        store.add_annotator(f"c{i}", project=PROJECT, status="candidate")
    with store.read() as s:
        ids = dict(s.execute(select(Annotator.name, Annotator.id)).all())
    crowd = [ids[f"a{i}"] for i in range(n_annotators)]
    candidates = [ids[f"c{i}"] for i in range(n_candidates)]

    started = time.process_time()
    n_done = n_judgments // 3
    n_gold = 60
    n_tasks = n_done + n_open + n_gold
    now = utcnow()
    batch = 20_000
    next_prompt = next_response = next_task = next_assignment = 1
    for lo in range(0, n_tasks, batch):
        hi = min(n_tasks, lo + batch)
        prompts, responses, tasks, gold, assignments, annotations = [], [], [], [], [], []
        for t in range(lo, hi):
            kind = "done" if t < n_done else ("open" if t < n_done + n_open else "gold")
            prompts.append(
                {"id": next_prompt, "project_id": pid, "text": f"prompt {t}", "status": "accepted", "source": "import"}
            )
            for side in ("A", "B"):
                responses.append(
                    {"id": next_response, "prompt_id": next_prompt, "text": f"answer {side} to {t}", "status": "accepted"}
                )
                next_response += 1
            rids = [next_response - 2, next_response - 1]
            is_gold = kind == "gold"
            judges = rng.sample(crowd, 3) if kind == "done" else (candidates if is_gold else [])
            tasks.append(
                {
                    "id": next_task,
                    "project_id": pid,
                    "stage": STAGE,
                    "type": "compare",
                    "prompt_id": next_prompt,
                    "response_ids": rids,
                    "payload": payload,
                    "author_ids": [],
                    "overlap": 1_000_000 if is_gold else 3,
                    "max_overlap": 1_000_000 if is_gold else 3,
                    "n_active": len(judges),
                    "n_done": len(judges),
                    "is_gold": is_gold,
                    "status": "done" if kind == "done" else "open",
                    "created_at": now,
                    "completed_at": now if kind == "done" else None,
                }
            )
            truth = rng.choice(("A", "B"))
            if is_gold:
                gold.append({"task_id": next_task, "answer": {"overall": truth}})
            for who in judges:
                label = truth if rng.random() < 0.75 else rng.choice(CHOICES)
                assignments.append(
                    {
                        "id": next_assignment,
                        "task_id": next_task,
                        "annotator_id": who,
                        "status": "submitted",
                        "assigned_at": now,
                        "lease_expires_at": now + timedelta(hours=1),
                        "submitted_at": now,
                    }
                )
                annotations.append(
                    {
                        "task_id": next_task,
                        "annotator_id": who,
                        "assignment_id": next_assignment,
                        "answer": {"overall": label, "criteria": {}, "harms": []},
                        "created_at": now,
                    }
                )
                next_assignment += 1
            next_prompt += 1
            next_task += 1
        with store.write() as s:
            for model, rows in (
                (Prompt, prompts),
                (Response, responses),
                (Task, tasks),
                (GoldAnswer, gold),
                (Assignment, assignments),
                (Annotation, annotations),
            ):
                if rows:
                    s.execute(insert(model), rows)
    with store.write() as s:
        s.execute(text("ANALYZE"))
    return store, time.process_time() - started


def time_ops(store: FeedbackStore, n_ops: int, n_annotators: int, out_dir: str) -> dict[str, float]:
    """Seconds per operation (point ops) or per call (whole-stage ops)."""
    rng = random.Random(1)
    took_next = took_submit = 0.0
    served = 0
    for i in range(n_ops):
        who = f"a{i % n_annotators}"
        t0 = time.process_time()
        view = store.next_task(PROJECT, who)
        t1 = time.process_time()
        assert view is not None, "the open queue ran dry; raise --open"
        store.submit(who, view.id, {"overall": rng.choice(CHOICES)})
        t2 = time.process_time()
        took_next += t1 - t0
        took_submit += t2 - t1
        served += 1
    out = {"next_task": took_next / served, "submit": took_submit / served}
    t0 = time.process_time()
    screen(store, PROJECT)
    out["screen"] = time.process_time() - t0
    t0 = time.process_time()
    aggregate_stage(store, PROJECT, STAGE, "dawid_skene")
    out["aggregate"] = time.process_time() - t0
    t0 = time.process_time()
    export_dataset(store, PROJECT, "pairs", Path(out_dir) / "pairs.jsonl")
    out["export"] = time.process_time() - t0
    return out


def split_aggregate(store: FeedbackStore) -> dict[str, float]:
    """CPU seconds of aggregation's parts, and the Dawid–Skene fit's EM rounds (as aggregate_stage runs them)."""
    t0 = time.process_time()
    judgments = [j for j in store.judgments(PROJECT, STAGE, statuses=("active",)) if j.label is not None]
    t1 = time.process_time()
    known: dict[Hashable, Hashable] = {j.task_id: j.gold_label for j in judgments if j.is_gold and j.gold_label is not None}
    model = DawidSkene(prior_strength=5.0).fit([(j.task_id, j.annotator, j.label) for j in judgments], known=known)
    t2 = time.process_time()
    store.tasks(PROJECT, STAGE)
    t3 = time.process_time()
    return {"judgments": t1 - t0, "fit": t2 - t1, "rounds": float(model.n_iter_), "tasks": t3 - t2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated numbers of judgments")
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=20, help="screening candidates, each with 60 gold answers")
    parser.add_argument("--open", type=int, default=2000, help="open tasks in the queue")
    parser.add_argument("--ops", type=int, default=200, help="next_task + submit pairs timed per size")
    parser.add_argument("--split-aggregate", action="store_true", help="also time aggregation's parts on their own")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store, load_s = build(str(Path(tmp) / "store.db"), n, args.annotators, args.open, args.candidates, seed=0)
            ops = time_ops(store, args.ops, args.annotators, tmp)
            if args.split_aggregate:
                part = split_aggregate(store)
                print(
                    f"N={n}: aggregate parts, µs/judgment: read judgments {1e6 * part['judgments'] / n:.1f}, "
                    f"Dawid-Skene {1e6 * part['fit'] / n:.1f} ({part['rounds']:.0f} EM rounds, "
                    f"{1e6 * part['fit'] / n / part['rounds']:.2f} per round), read tasks {1e6 * part['tasks'] / n:.1f}",
                    flush=True,
                )
            store.close()
        rows.append((n, load_s, ops))
        print(
            f"N={n}: load {load_s:.1f} s; next_task {1e3 * ops['next_task']:.2f} ms, submit {1e3 * ops['submit']:.2f} ms, "
            f"screen {ops['screen']:.2f} s, aggregate {ops['aggregate']:.2f} s, export {ops['export']:.2f} s",
            flush=True,
        )
    print()
    print(
        "| judgments | bulk load µs/judgment | next_task ms | submit ms "
        "| screen s | aggregate s (µs/judgment) | export s (µs/judgment) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, load_s, ops in rows:
        print(
            f"| {n:,} | {1e6 * load_s / n:.0f} | {1e3 * ops['next_task']:.2f} | {1e3 * ops['submit']:.2f} "
            f"| {ops['screen']:.2f} | "
            f"{ops['aggregate']:.2f} ({1e6 * ops['aggregate'] / n:.1f}) | {ops['export']:.2f} ({1e6 * ops['export'] / n:.1f}) |"
        )
    if len(rows) > 1:
        (n0, _, a), (n1, _, b) = rows[0], rows[-1]
        growth = n1 / n0
        print(
            f"\ngrowth from {n0:,} to {n1:,} judgments ({growth:.0f}x data): " + ", ".join(f"{k} {b[k] / a[k]:.2f}x" for k in a)
        )


if __name__ == "__main__":
    main()
