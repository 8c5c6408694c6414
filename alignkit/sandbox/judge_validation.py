"""The judged evaluation path checked against the sandbox's ground truth (issue #22's acceptance).

Synthetic "models" answer held-out sandbox prompts with known behaviour mixes (an aligned one, a
helpful-but-unsafe one, a hallucinator, a rude one, ...). Their answers go through
``evaluate_prompts`` exactly as a user's would, judged by :class:`~alignkit.sandbox.judge_server.SimulatedJudge`
served over HTTP on 127.0.0.1 through the OpenAI protocol by ``alignkit serve``'s app
(:func:`alignkit.ai.server.make_app`, the judge wrapped as a causal LM by
:func:`~alignkit.sandbox.judge_server.judge_lm`). The same pairs are also judged by the
ground-truth scorer. Reported: the judge's verdict agreement with the truth (on pairs the truth
does not tie), its consistency under position swaps, Spearman's rank correlation between its
Bradley–Terry ladder and the ground-truth ladder, and raw vs length-controlled win rates against
the truth's win rates.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

from alignkit.ai.server import BackgroundServer, make_app
from alignkit.evaluate.battles import scorer_judge
from alignkit.evaluate.config import JudgedEvalConfig
from alignkit.evaluate.judged import evaluate_prompts
from alignkit.evaluate.people import TASKS_FILE, read_back
from alignkit.evaluate.ratings import BradleyTerry, win_rate
from alignkit.evaluate.stats import spearman
from alignkit.feedback.store import FeedbackStore
from alignkit.sandbox.crowd import make_crowd
from alignkit.sandbox.judge_server import SimulatedJudge, judge_lm
from alignkit.sandbox.world import World, build_world

# behaviour -> probability, per prompt category the model deviates from the ideal behaviour
MODELS: dict[str, dict[str, tuple[str, float]]] = {
    "aligned": {},
    "unsafe": {"harmful": ("harmful_compliance", 0.8), "jailbreak": ("harmful_compliance", 0.9)},
    "hallucinator": {"unanswerable": ("wrong_fact", 0.8), "factual": ("wrong_fact", 0.3)},
    "rude": {"factual": ("rude", 0.5), "safe_scary": ("over_refusal", 0.5)},
    "sloppy": {"factual": ("wrong_fact", 0.5), "unanswerable": ("wrong_fact", 0.4), "harmful": ("harmful_compliance", 0.4)},
}


def synthetic_answers(world: World, prompts: list[Any], seed: int = 0) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, deviations in MODELS.items():
        rng = random.Random(f"{seed}:{name}")
        texts = []
        for p in prompts:
            behaviour = world.ideal_behaviour(p)
            dev = deviations.get(p.category)
            if dev is not None and rng.random() < dev[1]:
                behaviour = dev[0]
            try:
                texts.append(world.respond(p, behaviour, rng))
            except ValueError:
                texts.append(world.respond(p, world.ideal_behaviour(p), rng))
        out[name] = texts
    return out


def _write_inputs(
    folder: Path, n_prompts: int, seed: int, sample: bool = False
) -> tuple[World, list[Any], dict[str, list[str]], dict[str, str]]:
    """Prompts (the eval split's first ``n_prompts``, or with ``sample`` a seeded random sample of
    them, so that prompts are the random draw a prompt-resampling bootstrap assumes), the
    synthetic models' answers, and the files ``evaluate_prompts`` reads."""
    world = build_world(0)
    pool = world.prompts("eval")
    prompts = random.Random(f"prompts:{seed}").sample(pool, min(n_prompts, len(pool))) if sample else pool[:n_prompts]
    answers = synthetic_answers(world, prompts, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "prompt": p.text, "category": p.category}) + "\n" for i, p in enumerate(prompts))
    )
    sources = {}
    for name, texts in answers.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": str(i), "response": t}) + "\n" for i, t in enumerate(texts)))
        sources[name] = f"file:{path}"
    return world, prompts, answers, sources


def _truth_battle(world: World, prompt: Any, a: str, b: str) -> str:
    t = scorer_judge(world.score, criterion="utility")(prompt.text, a, b)
    return {"A": "model_a", "B": "model_b", "tie": "tie"}[t]


def _truth(
    world: World, prompts: list[Any], answers: dict[str, list[str]], battles: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The same (prompt, model_a, model_b) jobs judged by the ground truth (overall utility)."""
    seen, out = set(), []
    for b in battles:
        key = (b["prompt_index"], b["model_a"], b["model_b"])
        if key in seen or b["criterion"] != "overall":
            continue
        seen.add(key)
        i = b["prompt_index"]
        winner = _truth_battle(world, prompts[i], answers[b["model_a"]][i], answers[b["model_b"]][i])
        out.append({**dict(zip(("prompt_index", "model_a", "model_b"), key)), "winner": winner})
    return out


@functools.lru_cache(maxsize=4)
def population_truth(draws: int = 30) -> dict[str, float]:
    """The ground-truth Bradley–Terry ratings of the synthetic models over the whole eval split and
    ``draws`` independent answer draws: what a sample of prompts estimates (the estimand of a
    bootstrap that resamples prompts)."""
    world = build_world(0)
    prompts = world.prompts("eval")
    names = list(MODELS)
    battles = []
    for d in range(draws):
        answers = synthetic_answers(world, prompts, seed=100_000 + d)
        for i, p in enumerate(prompts):
            for x, a in enumerate(names):
                for b in names[x + 1 :]:
                    battles.append({"model_a": a, "model_b": b, "winner": _truth_battle(world, p, answers[a][i], answers[b][i])})
    return BradleyTerry().fit(battles).ratings_


# Harm categories the simulated people tick, from the scorer's labels of each answer.
SANDBOX_HARMS = {"dangerous": "harmful", "insult": "insult"}


def _crowd_harms(annotator: Any, world: World, prompt: str, a: str, b: str, rng: random.Random) -> list[str]:
    """Harms present in either answer as one simulated annotator ticks them: a present harm with
    probability ``skill``, an absent one with ``(1 - skill) / 2``; a spammer ticks each at 0.2.
    (The crowd's own noise model has no harms; this is the validation's, stated here.)"""
    labels = set(world.score(prompt, a).labels) | set(world.score(prompt, b).labels)
    out = []
    for name, label in SANDBOX_HARMS.items():
        p = 0.2 if annotator.is_spammer else annotator.skill if label in labels else (1 - annotator.skill) / 2
        if rng.random() < p:
            out.append(name)
    return out


def _coverage(rows: dict[str, tuple[float, float]], truth: dict[str, float]) -> list[str]:
    return [m for m, (lo, hi) in rows.items() if lo <= truth[m] <= hi]


def validate_people(
    folder: Path,
    n_prompts: int = 40,
    n_annotators: int = 12,
    spammer_fraction: float = 0.15,
    overlap: int = 3,
    seed: int = 0,
    rounds: int = 200,
    population_draws: int = 30,
    keep_battles: bool = False,
) -> dict[str, Any]:
    """People mode with the sandbox's simulated crowd: push every comparison (overall and harmless,
    with harm categories) to the store, let the crowd answer through ``next_task``/``submit``, read
    back; compare the people's ladder with the truth's and check its CIs' coverage.

    Two ground truths: ``same`` is the truth's Bradley–Terry fit on exactly these prompts, answers
    and pairs (what the people judged); ``population`` (:func:`population_truth`) is the rating
    over the whole eval split and many answer draws, which the prompts here are a random sample of.
    Coverage is reported for the report's interval (prompts and annotators resampled, outcomes drawn
    from the posteriors), prompts alone resampled without the draw (expected outcomes resampled) and, for comparison, the
    argmax labels with battles resampled (the interval before issue #22's fix). ``keep_battles``
    also returns the people's ``overall`` battles (with their posteriors and ``posterior_rounds``
    arrays, so not JSON) and the truth's winner of each (``truth_winners``), for interval studies."""
    world, prompts, answers, sources = _write_inputs(folder, n_prompts, seed, sample=True)
    config = JudgedEvalConfig(
        prompts=folder / "prompts.jsonl",
        models=sources,
        output=folder / "people",
        reference="aligned",
        judge="none",
        people="all",
        criteria="overall,harmless",
        harms=",".join(SANDBOX_HARMS),
        checks=False,
        rounds=rounds,
        seed=seed,
        progress=False,
    )
    evaluate_prompts(config)  # pushes the tasks (nothing answered yet)
    store = FeedbackStore(str(folder / "people" / "feedback.db"))
    crowd = make_crowd(world, n=n_annotators, spammer_fraction=spammer_fraction, seed=seed)
    for a in crowd:
        store.add_annotator(a.id, status="active", exist_ok=True, project=config.project)
    names = {"helpfulness": "helpful", "honesty": "honest", "harmlessness": "harmless"}
    answered = 0
    while True:
        worked = False
        for a in crowd:
            view = store.next_task(config.project, a.id)
            if view is None:
                continue
            rng = random.Random(f"{seed}:{a.id}:{view.id}")
            prompt, (ra, rb) = view.prompt or "", view.responses[:2]
            out = a.compare(prompt, ra, rb, rng)
            asked = set(view.payload.get("criteria", []))
            crit = {names.get(k, k): v for k, v in out["criteria"].items() if names.get(k, k) in asked}
            harms = _crowd_harms(a, world, prompt, ra, rb, rng)
            store.submit(a.id, view.id, {"overall": out["overall"], "criteria": crit, "harms": harms})
            answered += 1
            worked = True
        if not worked:
            break
    store.close()
    data = evaluate_prompts(config)  # reads the people's answers back
    battles = [json.loads(x) for x in (folder / "people" / "battles.jsonl").read_text().splitlines()]
    overall = [b for b in battles if b["criterion"] == "overall"]
    truth = _truth(world, prompts, answers, battles)
    same = BradleyTerry().fit(truth).ratings_
    population = population_truth(population_draws)
    rows = {r.model: r for r in data.ladders["Bradley-Terry"]}
    model_names = sorted(rows)
    report_ci = {m: (float(rows[m].ci_low), float(rows[m].ci_high)) for m in model_names}  # type: ignore[arg-type]
    expected = BradleyTerry()
    expected_ci = expected.bootstrap_clustered(overall, rounds, seed, draw=False)
    argmax = BradleyTerry()
    argmax_ci = argmax.bootstrap([{k: b[k] for k in ("model_a", "model_b", "winner")} for b in overall], rounds, seed)
    truth_harm = {
        m: {
            h: sum(label in world.score(p, answers[m][i]).labels for i, p in enumerate(prompts)) / len(prompts)
            for h, label in SANDBOX_HARMS.items()
        }
        for m in model_names
    }
    extra: dict[str, Any] = {}
    if keep_battles:
        truth_of = {(t["prompt_index"], t["model_a"], t["model_b"]): t["winner"] for t in truth}
        store = FeedbackStore(str(folder / "people" / "feedback.db"))
        tasks = json.loads((folder / "people" / TASKS_FILE).read_text())["tasks"]
        rows_in = [json.loads(x) for x in (folder / "prompts.jsonl").read_text().splitlines()]
        kept = read_back(store, config.project, tasks, rows_in, ["overall"], seed=seed, rounds=rounds)
        store.close()
        extra = {
            "overall_battles": kept,
            "truth_winners": [truth_of[(b["prompt_index"], b["model_a"], b["model_b"])] for b in kept],
        }
    return extra | {
        "prompts": len(prompts),
        "tasks": data.people.get("tasks"),
        "judgments": answered,
        "people_ladder": [r.model for r in data.ladders["Bradley-Terry"]],
        "truth_ladder": sorted(model_names, key=lambda m: -same[m]),
        "ladder_spearman": spearman([rows[m].rating for m in model_names], [same[m] for m in model_names]),
        "ladder_spearman_population": spearman([rows[m].rating for m in model_names], [population[m] for m in model_names]),
        "ci_covers_truth": f"{len(_coverage(report_ci, same))}/{len(model_names)}",
        "coverage": {
            "report_same": len(_coverage(report_ci, same)),
            "report_population": len(_coverage(report_ci, population)),
            "expected_same": len(_coverage(expected_ci, same)),
            "expected_population": len(_coverage(expected_ci, population)),
            "argmax_same": len(_coverage(argmax_ci, same)),
            "argmax_population": len(_coverage(argmax_ci, population)),
            "models": len(model_names),
        },
        "ratings": {
            m: {
                "people": rows[m].rating,
                "ci": report_ci[m],
                "expected_ci": expected_ci[m],
                "argmax": argmax.ratings_[m],
                "argmax_ci": argmax_ci[m],
                "truth_same": same[m],
                "truth_population": population[m],
            }
            for m in model_names
        },
        "harm_rates": data.people.get("harm_rates", {}),
        "truth_harm_rates": truth_harm,
    }


def validate(
    folder: Path, n_prompts: int = 60, accuracy: float = 0.8, position_bias: float = 0.05, length_bias: float = 0.1, seed: int = 0
) -> dict[str, Any]:
    """Run the judged path against the simulated judge on loopback; compare with ground truth."""
    world, prompts, answers, sources = _write_inputs(folder, n_prompts, seed)
    judge = SimulatedJudge(world, accuracy, position_bias, length_bias, seed)
    model, tokenizer = judge_lm(judge)
    app = make_app(model, tokenizer, model_name="sandbox-judge")
    with BackgroundServer(app) as server:
        config = JudgedEvalConfig(
            prompts=folder / "prompts.jsonl",
            models=sources,
            output=folder / "judged",
            reference="aligned",
            judge=f"{server.url}#sandbox-judge",
            checks=False,
            rounds=100,
            progress=False,
        )
        data = evaluate_prompts(config)
    judged = [json.loads(x) for x in (folder / "judged" / "battles.jsonl").read_text().splitlines()]
    truth_judge = scorer_judge(world.score, criterion="utility")
    agree = n = 0
    truth_battles = []
    for b in judged:
        i = b["prompt_index"]
        t = truth_judge(prompts[i].text, answers[b["model_a"]][i], answers[b["model_b"]][i])
        winner = {"A": "model_a", "B": "model_b", "tie": "tie"}[t]
        truth_battles.append({"model_a": b["model_a"], "model_b": b["model_b"], "winner": winner})
        if winner != "tie":
            n += 1
            agree += b["winner"] == winner
    truth_bt = BradleyTerry().fit(truth_battles)
    judge_bt = {r.model: r.rating for r in data.ladders["Bradley-Terry"]}
    names = sorted(judge_bt)
    rows: list[dict[str, Any]] = []
    for w in data.win_rates:
        truth = win_rate(truth_battles, w.model, "aligned")
        rows.append(
            {
                "model": w.model,
                "truth_win_rate": truth["win_rate"],
                "judge_win_rate": w.soft_win_rate,
                "lc_win_rate": w.lc_win_rate,
                "length_coef": w.length_coef,
            }
        )
    truth_rates = [float(r["truth_win_rate"]) for r in rows]
    return {
        "prompts": len(prompts),
        "models": names,
        "comparisons": len(judged),
        "judge_http_requests": app.state.stats["chat_completions"],
        "judge_verdicts": judge.requests,
        "agreement_with_truth": agree / n if n else float("nan"),
        "decided_by_truth": n,
        "judge_consistency": data.judge_consistency,
        "ladder_spearman": spearman([judge_bt[m] for m in names], [truth_bt.ratings_[m] for m in names]),
        "judge_ladder": [r.model for r in data.ladders["Bradley-Terry"]],
        "truth_ladder": sorted(names, key=lambda m: -truth_bt.ratings_[m]),
        "win_rate_spearman_raw": spearman([float(r["judge_win_rate"]) for r in rows], truth_rates),
        "win_rate_spearman_lc": spearman([float(r["lc_win_rate"]) for r in rows], truth_rates),
        "win_rates": rows,
    }
