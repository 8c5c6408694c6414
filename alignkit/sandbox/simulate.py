"""Let the sandbox's simulated crowd work through a comparison project, end to end.

import sandbox pairs (A/B order shuffled) -> candidates screened on gold tasks -> active
annotators take tasks with overlap (fixed or dynamic) and gold mixed in -> spammers flagged ->
aggregation (majority vote and Dawid–Skene) -> preference export. Because the sandbox knows the
true preference of every pair, the result reports how accurate each aggregate is.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import aggregate_stage, export_dataset
from alignkit.feedback.models import Prompt, Response
from alignkit.feedback.quality import annotator_quality, flag_spammers, screen
from alignkit.feedback.store import FeedbackStore
from alignkit.sandbox.config import SimulateConfig
from alignkit.sandbox.crowd import make_crowd
from alignkit.sandbox.datasets import truth_pairs
from alignkit.sandbox.world import build_world
from alignkit.web.crowd import WebCrowd

CRITERIA_MAP = {"helpfulness": "helpful", "honesty": "honest", "harmlessness": "harmless"}


class SimulateResult(BaseModel):
    n_items: int
    judgments_per_item: float
    spammers: list[str]
    excluded: list[str]
    flagged: list[str]
    accuracy: dict[str, float]  # majority / dawid_skene / confusion_oracle / best_single(_oracle), vs ground truth
    best_single: str | None
    screening_gold_per_candidate: float = 0.0  # gold answers the screening test needed, mean over candidates
    probation: list[str] = Field(default_factory=list)  # still on probation at the end (probation rule)
    admitted_from_probation: list[str] = Field(default_factory=list)
    gold_per_annotator: float = 0.0  # every gold answer (screening and spot checks), mean over the crowd
    extra_per_item: float = 0.0  # probation judgments beyond the overlap, per item
    export_path: str | None = None
    export_rows: int = 0
    quality: list[dict[str, Any]] = Field(default_factory=list)


def confusion_oracle_accuracy(judgments: list[tuple[int, str, str]], truth: dict[int, str]) -> float:
    """Accuracy of the vote Dawid–Skene would cast if it knew every annotator's confusion matrix.

    Each annotator's P(answer | true label) is measured on the ground truth itself (add-half
    smoothing), then every item gets the label of highest log-likelihood. No aggregator that
    weighs annotators by a confusion matrix can be expected to beat this, so it shows how much
    room a crowd leaves over majority vote; where it barely beats majority vote, the crowd's
    errors are not the kind per-annotator weights can undo.
    """
    if not judgments:
        return float("nan")
    truths = sorted(set(truth.values()))
    answers = sorted({lab for _, _, lab in judgments} | set(truths))
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.full((len(truths), len(answers)), 0.5))
    for item, who, lab in judgments:
        counts[who][truths.index(truth[item]), answers.index(lab)] += 1
    log_conf = {who: np.log(c / c.sum(1, keepdims=True)) for who, c in counts.items()}
    score: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(len(truths)))
    for item, who, lab in judgments:
        score[item] += log_conf[who][:, answers.index(lab)]
    return sum(truths[int(np.argmax(v))] == truth[item] for item, v in score.items()) / len(truth)


def simulate(cfg: SimulateConfig, world: Any = None, crowd: Any = None, export: bool = True) -> SimulateResult:
    world = world or build_world(cfg.world_seed)
    crowd = crowd or make_crowd(
        world,
        n=cfg.n_annotators,
        spammer_fraction=cfg.spammer_fraction,
        seed=cfg.seed,
        skill_range=(cfg.skill_low, cfg.skill_high),
        position_bias=cfg.position_bias,
        length_bias=cfg.length_bias,
        helpful_lean=cfg.helpful_lean,
    )
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    url = cfg.db_url or str(out / "feedback.db")
    if cfg.db_url is None and Path(url).exists():
        for suffix in ("", "-wal", "-shm"):
            Path(url + suffix).unlink(missing_ok=True)  # a fresh run each time
    store = FeedbackStore(url)
    project = f"sim-{cfg.seed}"
    stage = StageConfig(
        name="compare",
        task_type="compare",
        overlap=cfg.overlap,
        max_overlap=cfg.max_overlap,
        agreement_threshold=cfg.agreement_threshold,
        gold_rate=cfg.gold_rate,
        probation_extra=cfg.probation_extra,
    )
    store.create_project(project, ProjectConfig(stages=[stage], seed=cfg.seed, max_pending=8), gold_key=str(cfg.seed))
    rng = random.Random(cfg.seed)
    pairs = truth_pairs(world, cfg.n_items + cfg.n_gold, seed=cfg.seed)
    truth: dict[int, str] = {}
    with store.write() as s:
        pid, _ = store.project(project)
        for i, pair in enumerate(pairs):
            p = Prompt(project_id=pid, text=pair["prompt"], status="accepted", meta={"category": pair["category"]})
            s.add(p)
            s.flush()
            swap = rng.random() < 0.5
            texts = [pair["rejected"], pair["chosen"]] if swap else [pair["chosen"], pair["rejected"]]
            ids = []
            for t in texts:
                r = Response(prompt_id=p.id, text=t, model="sandbox")
                s.add(r)
                s.flush()
                ids.append(r.id)
            label = "B" if swap else "A"
            gold = {"overall": label} if i < cfg.n_gold else None
            tid = store._add_task(s, pid, stage, p.id, ids, gold, None, None, [])
            if gold is None:
                truth[tid] = label
    (out / "truth.json").write_text(json.dumps({str(k): v for k, v in truth.items()}))  # for offline analysis
    for a in crowd:
        store.add_annotator(a.id, status="candidate" if cfg.n_screening else "active")
    web = WebCrowd(store, project, [a.id for a in crowd]) if cfg.web else None  # the same calls, over HTTP
    lease = web.next_task if web else (lambda name: store.next_task(project, name))
    give = web.submit if web else (lambda name, task_id, ans: store.submit(name, task_id, ans))

    def answer(a, view) -> dict[str, Any]:
        r = random.Random(f"{cfg.seed}:{a.id}:{view.id}")
        out = a.compare(view.prompt, view.responses[0], view.responses[1], r)
        return {"overall": out["overall"], "criteria": {CRITERIA_MAP.get(k, k): v for k, v in out["criteria"].items()}}

    excluded: list[str] = []
    screening_answers = 0
    gold_answers = 0
    on_probation: set[str] = set()
    admitted_from_probation: set[str] = set()
    probation = cfg.screening_rule == "probation"

    def screen_now(max_gold: int) -> dict[str, str]:
        return screen(
            store,
            project,
            threshold=cfg.screening_threshold,
            false_admit=cfg.screening_false_admit,
            max_gold=max_gold,
            rule=cfg.screening_rule,
            exclude_below=cfg.screening_exclude_below,
            probation_after=min(cfg.probation_after, max_gold),
        )

    if cfg.n_screening:
        # Round-robin: each undecided candidate answers one more gold task, then the sequential
        # test decides whoever has enough evidence; the rest go on.
        if not cfg.n_gold:
            raise ValueError("screening needs gold tasks: set --n-gold above 0 or --n-screening 0")
        max_gold = min(cfg.n_screening, cfg.n_gold)
        undecided = list(crowd)
        while undecided:
            answered = 0
            for a in undecided:
                view = lease(a.id)
                if view is not None:
                    give(a.id, view.id, answer(a, view))
                    answered += 1
            screening_answers += answered
            decided = screen_now(max_gold)
            excluded += [n for n, st in decided.items() if st == "excluded"]
            on_probation |= {n for n, st in decided.items() if st == "probation"}
            undecided = [a for a in undecided if a.id not in decided]
            if not answered and not decided:
                break  # out of gold tasks: the undecided stay candidates and get no regular work
    gold_answers = screening_answers
    active = [a for a in crowd if a.id not in excluded]
    flagged: list[str] = []
    bar = tqdm(total=len(truth), desc="simulated crowd", disable=not cfg.progress)
    done_before, rounds, extra = 0, 0, 0
    max_gold = min(cfg.n_screening, cfg.n_gold)
    # Someone told "nothing for you" is asked again only once that can have changed: until then the
    # store would answer None again (the gold draw depends on what they were served, not on how often
    # they asked), so skipping the call changes no result, only its cost. A person on probation gets
    # extras on items with a trusted judgment: asked again once an item got its first one, or someone
    # was decided or flagged (their extras and slots are discounted). An active annotator gets a free
    # slot: one opens only when someone is decided or flagged, or, with dynamic overlap, when an item
    # asks for one more judgment (so then they are always asked).
    first_judged: set[int] = set()
    events = people_events = 0
    told_none: dict[str, tuple[int, int]] = {}  # annotator -> (events, people_events) when told None
    slots_fixed = cfg.max_overlap is None or cfg.max_overlap <= cfg.overlap
    while active:
        rounds += 1
        worked = False
        for a in list(active):
            seen = told_none.get(a.id)
            if seen is not None and (seen[0] == events if a.id in on_probation else seen[1] == people_events):
                continue
            view = lease(a.id)
            if view is None:
                if a.id in on_probation or slots_fixed:
                    told_none[a.id] = (events, people_events)
                continue
            worked = worked or a.id not in on_probation  # extra judgments alone do not keep the project going
            give(a.id, view.id, answer(a, view))
            gold_answers += view.id not in truth
            extra += view.id in truth and a.id in on_probation
            if view.id in truth and a.id not in on_probation and view.id not in first_judged:
                first_judged.add(view.id)
                events += 1
        newly = flag_spammers(store, project) if rounds % 5 == 0 or not worked else []
        if newly:
            events += 1
            people_events += 1
            first_judged.clear()  # a flagged annotator's judgments may no longer count
        if on_probation and (rounds % 5 == 0 or not worked):
            decided = screen_now(max_gold)
            events += bool(decided)
            people_events += bool(decided)
            admitted_from_probation |= {n for n, st in decided.items() if st == "active"}
            newly += [n for n, st in decided.items() if st == "excluded"]
            excluded += [n for n, st in decided.items() if st == "excluded"]
            on_probation -= set(decided)
        flagged += [n for n in newly if n not in excluded]
        active = [a for a in active if a.id not in newly]
        done = store.count_tasks(project, "compare", status="done")
        bar.update(done - done_before)
        done_before = done
        if not worked and not newly:
            break
    bar.close()
    if web:
        web.close()
    # -- accuracy against the ground truth
    acc: dict[str, float] = {}
    for method in ("majority", "dawid_skene"):
        aggs = aggregate_stage(store, project, "compare", method, seed=cfg.seed)
        acc[method] = sum(aggs[t].label == truth[t] for t in truth if t in aggs) / len(truth)
    if probation:  # Dawid–Skene weighing the labels of those still on probation too
        aggs = aggregate_stage(store, project, "compare", "dawid_skene", seed=cfg.seed, statuses=("active", "probation"))
        acc["dawid_skene_with_probation"] = sum(aggs[t].label == truth[t] for t in truth if t in aggs) / len(truth)
    judged: dict[str, list[bool]] = defaultdict(list)
    n_judgments = 0
    active_judgments = store.judgments(project, "compare", include_gold=False, statuses=("active",))
    for j in active_judgments:
        judged[j.annotator].append(j.label == truth[j.task_id])
        n_judgments += 1
    acc["confusion_oracle"] = confusion_oracle_accuracy([(j.task_id, j.annotator, j.label) for j in active_judgments], truth)
    min_n = max(10, len(truth) // 10)
    singles = {a: sum(v) / len(v) for a, v in judged.items() if len(v) >= min_n}
    # "Best single annotator" as a practitioner would pick one: highest gold accuracy (ties: more
    # gold answered). Picking by accuracy on the items themselves would be upward biased (the max
    # of many noisy estimates), so that "oracle" number is reported separately.
    gold_acc = {
        q.annotator: (q.gold_accuracy or 0.0, q.n_gold)
        for q in annotator_quality(store, project)
        if q.annotator in singles and q.n_gold
    }
    best = max(gold_acc, key=lambda a: gold_acc[a]) if gold_acc else None
    acc["best_single"] = singles[best] if best else float("nan")
    acc["best_single_oracle"] = max(singles.values()) if singles else float("nan")
    result = SimulateResult(
        n_items=len(truth),
        judgments_per_item=n_judgments / max(len(truth), 1),
        spammers=sorted(a.id for a in crowd if a.is_spammer),
        excluded=sorted(excluded),
        flagged=flagged,
        probation=sorted(on_probation),
        admitted_from_probation=sorted(admitted_from_probation),
        gold_per_annotator=gold_answers / len(crowd),
        extra_per_item=extra / max(len(truth), 1),
        accuracy=acc,
        best_single=best,
        screening_gold_per_candidate=screening_answers / len(crowd),
        quality=[q.model_dump() for q in annotator_quality(store, project)],
    )
    if export:
        path, n = export_dataset(store, project, "pairs", out / "pairs.jsonl")
        result.export_path, result.export_rows = str(path), n
    store.close()
    return result
