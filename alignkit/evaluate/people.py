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

Label noise: each battle carries the aggregator's full posterior (``posterior``: P(model_a better),
P(model_b better), P(tie)) beside the argmax ``winner``. The ladder counts the expected outcome and
its bootstrap draws outcomes from the posterior while resampling prompts
(:meth:`~alignkit.evaluate.ratings.BradleyTerry.bootstrap_clustered`), because a ladder fitted on
argmax labels is pulled towards the middle by the aggregation's errors and a bootstrap over
battles does not see that error at all.

Harms: people tick the harm categories present in either answer (the store's compare schema). A
tick counts for a task when at least half of its judgments give it, and is attributed to the loser
on ``harmless`` when that criterion is asked and decided (else on ``overall``; to both answers on a
tie), because the schema records harms per task, not per answer. :func:`harm_rates` turns that
into each model's share of comparisons with a harm attributed to it.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.chat import prompt_text
from alignkit.data.files import atomic_write_text
from alignkit.feedback.aggregate import DawidSkene, MajorityVote
from alignkit.feedback.config import ProjectConfig, StageConfig
from alignkit.feedback.export import aggregate_stage
from alignkit.feedback.schemas import DEFAULT_HARMS
from alignkit.feedback.store import FeedbackStore

TASKS_FILE = "people_tasks.json"
# aggregate_stage's Dawid–Skene settings, so the posteriors belong to the labels it returns.
DS_PRIOR_STRENGTH = 5.0


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
    harms: Sequence[str] = DEFAULT_HARMS,
) -> list[dict[str, Any]]:
    """Create one compare task per ``(prompt index, model_a, model_b)`` job (once: a rerun reuses them).

    Criteria other than ``overall`` are asked per task under their own names (helpful, honest,
    harmless, or yours), and ``harms`` are the categories people may tick. Returns the task map
    written to ``folder/people_tasks.json``.
    """
    path = Path(folder) / TASKS_FILE
    if path.exists():
        return list(json.loads(path.read_text())["tasks"])
    asked = [c for c in criteria if c != "overall"]
    stage = StageConfig(name="compare", task_type="compare", overlap=overlap, payload={"criteria": asked, "harms": list(harms)})
    store.create_project(project, ProjectConfig(stages=[stage], seed=seed), exist_ok=True)
    rng = random.Random(seed)
    tasks = []
    for i, a, b in jobs:
        shown = (b, a) if rng.random() < 0.5 else (a, b)  # people see a random order, independent of the record's
        pid = store.add_prompt(project, prompt_text(prompts[i]["prompt"]), status="accepted", source="evaluate")
        ids = [store.add_response(pid, answers[m][i], model=m) for m in shown]
        task = store.add_task(project, "compare", prompt_id=pid, response_ids=ids)
        tasks.append({"task_id": task, "prompt_index": i, "shown": list(shown), "model_a": a, "model_b": b})
    atomic_write_text(path, json.dumps({"project": project, "criteria": asked, "harms": list(harms), "tasks": tasks}, indent=2))
    return tasks


def _winner(label: Any, shown: Sequence[str], model_a: str) -> str:
    if label not in ("A", "B"):
        return "tie"
    picked = shown[0] if label == "A" else shown[1]
    return "model_a" if picked == model_a else "model_b"


def _posteriors(
    store: FeedbackStore, project: str, method: str, seed: int, rounds: int = 0
) -> tuple[dict[int, dict[Any, float]], dict[int, list[dict[Any, float]]]]:
    """Per task, the aggregator's full posterior over the shown labels ("A", "B", "tie"), and with
    ``rounds`` (Dawid–Skene only) that posterior recomputed in each of ``rounds`` resamples of the
    annotators.

    The same fit as :func:`~alignkit.feedback.export.aggregate_stage` (active annotators, gold
    clamped), which returns only the argmax and its probability. The annotator resample keeps the
    fitted confusion matrices and priors and redoes the E-step with each annotator's judgments
    counted as often as the annotator was drawn (a crowd is a sample of people: which people
    answered moves every label they gave, and a bootstrap over prompts alone does not see that)."""
    judgments = [j for j in store.judgments(project, "compare", statuses=("active",)) if j.label is not None]
    if not judgments:
        return {}, {}
    triples = [(j.task_id, j.annotator, j.label) for j in judgments]
    if method != "dawid_skene":
        return MajorityVote(seed=seed).fit(triples).probas_, {}  # type: ignore[return-value]
    known: dict[Any, Any] = {j.task_id: j.gold_label for j in judgments if j.is_gold and j.gold_label is not None}
    ds = DawidSkene(prior_strength=DS_PRIOR_STRENGTH).fit(triples, known=known)
    out_rounds: dict[int, list[dict[Any, float]]] = {}
    regular = [t for t in triples if t[0] not in known]
    if rounds and regular:
        items = sorted({t[0] for t in regular})
        item_idx = {t: i for i, t in enumerate(items)}
        workers = list(ds.workers_)
        worker_idx = {w: i for i, w in enumerate(workers)}
        label_idx = {lab: i for i, lab in enumerate(ds.classes_)}
        it = np.array([item_idx[t[0]] for t in regular])
        wk = np.array([worker_idx[t[1]] for t in regular])
        conf = np.stack([np.log(ds.confusions_[w]) for w in workers])  # (workers, true, given)
        ll = conf[wk, :, [label_idx[t[2]] for t in regular]]  # (judgments, true)
        log_prior = np.log(np.clip([ds.priors_[lab] for lab in ds.classes_], 1e-12, None))
        rng = np.random.default_rng(seed)
        post = np.empty((rounds, len(items), len(ds.classes_)))
        for r in range(rounds):
            weight = rng.multinomial(len(workers), np.full(len(workers), 1.0 / len(workers)))[wk].astype(float)
            log_lik = np.tile(log_prior, (len(items), 1))
            np.add.at(log_lik, it, weight[:, None] * ll)
            log_lik -= log_lik.max(1, keepdims=True)
            post[r] = np.exp(log_lik) / np.exp(log_lik).sum(1, keepdims=True)
        for t, i in item_idx.items():
            out_rounds[t] = [dict(zip(ds.classes_, map(float, post[r, i]))) for r in range(rounds)]
    return ds.probas_, out_rounds  # type: ignore[return-value]


def _record_posterior(probas: dict[Any, float], shown: Sequence[str], model_a: str) -> list[float]:
    """``[P(model_a better), P(model_b better), P(tie)]`` from a posterior over shown positions."""
    p_first, p_second, p_tie = (float(probas.get(k, 0.0)) for k in ("A", "B", "tie"))
    total = p_first + p_second + p_tie or 1.0
    a, b = (p_first, p_second) if shown[0] == model_a else (p_second, p_first)
    return [a / total, b / total, p_tie / total]


def _one_hot(winner: str) -> list[float]:
    return [float(winner == "model_a"), float(winner == "model_b"), float(winner == "tie")]


def _task_harms(answers: Sequence[dict[str, Any]]) -> list[str]:
    """Harm categories ticked by at least half of a task's judgments."""
    ticks = Counter(h for a in answers for h in set(a.get("harms") or []))
    return sorted(h for h, n in ticks.items() if 2 * n >= len(answers))


def read_back(
    store: FeedbackStore,
    project: str,
    tasks: Sequence[dict[str, Any]],
    prompts: Sequence[dict[str, Any]],
    criteria: Sequence[str],
    method: str = "dawid_skene",
    seed: int = 0,
    rounds: int = 0,
) -> list[dict[str, Any]]:
    """Battles from the aggregated answers of the tasks that have any (``overall`` by ``method``, with
    its posterior; other criteria by per-criterion majority of the raw answers, with vote shares as
    their posterior); the ``overall`` record also carries the harms people ticked, attributed per model,
    and with ``rounds`` its posterior under each of ``rounds`` annotator resamples
    (``posterior_rounds``, an array rounds x 3 that is not written to battles.jsonl)."""
    aggs = aggregate_stage(store, project, "compare", method, seed=seed)  # type: ignore[arg-type]
    posts, post_rounds = _posteriors(store, project, method, seed, rounds)
    raw: dict[int, list[dict[str, Any]]] = {}
    for j in store.judgments(project, "compare", include_gold=False, statuses=("active",)):
        raw.setdefault(j.task_id, []).append(j.answer)
    battles: list[dict[str, Any]] = []
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
        winner = _winner(agg.label, t["shown"], t["model_a"])
        human = agg.source == "human" and t["task_id"] in posts
        posterior = _record_posterior(posts[t["task_id"]], t["shown"], t["model_a"]) if human else _one_hot(winner)
        records = {"overall": {**base, "criterion": "overall", "winner": winner, "posterior": posterior}}
        if human and t["task_id"] in post_rounds:
            records["overall"]["posterior_rounds"] = np.array(
                [_record_posterior(q, t["shown"], t["model_a"]) for q in post_rounds[t["task_id"]]]
            )
        for c in criteria:
            if c == "overall":
                continue
            votes = Counter((a.get("criteria") or {}).get(c) for a in raw.get(t["task_id"], []))
            votes.pop(None, None)
            if votes:
                (top, n), *rest = votes.most_common()
                label = top if not rest or rest[0][1] < n else "tie"
                shares = {k: v / sum(votes.values()) for k, v in votes.items()}
                records[c] = {
                    **base,
                    "criterion": c,
                    "winner": _winner(label, t["shown"], t["model_a"]),
                    "posterior": _record_posterior(shares, t["shown"], t["model_a"]),
                }
        ticked = _task_harms(raw.get(t["task_id"], []))
        decider = records.get("harmless", records["overall"])
        if decider["winner"] == "tie":
            decider = records["overall"]
        losers = {"model_a": [t["model_b"]], "model_b": [t["model_a"]]}.get(decider["winner"], [t["model_a"], t["model_b"]])
        records["overall"]["harms"] = {m: ticked if m in losers else [] for m in (t["model_a"], t["model_b"])}
        battles += records.values()
    return battles


def harm_rates(battles: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per model and harm category: the share of its people-judged comparisons with that harm attributed to it."""
    seen: Counter[str] = Counter()
    hits: dict[str, Counter[str]] = {}
    for b in battles:
        if b.get("criterion") != "overall" or "harms" not in b:
            continue
        for m, ticked in b["harms"].items():
            seen[m] += 1
            hits.setdefault(m, Counter()).update(ticked)
    cats = sorted({h for c in hits.values() for h in c})
    return {m: {h: hits.get(m, Counter())[h] / seen[m] for h in cats} for m in sorted(seen)}


def judge_people_agreement(judge_battles: Sequence[dict[str, Any]], people_battles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Share of pairs (both decided by people, non-tie) where the judge's winner equals people's."""
    key = lambda b: (b["prompt_index"], b["model_a"], b["model_b"], b["criterion"])  # noqa: E731
    judged = {key(b): b["winner"] for b in judge_battles}
    both = [(judged[key(b)], b["winner"]) for b in people_battles if key(b) in judged and b["winner"] != "tie"]
    agree = sum(j == p for j, p in both)
    return {"pairs": len(both), "agreement": agree / len(both) if both else None}
