"""The judged evaluation path checked against the sandbox's ground truth (issue #22's acceptance).

Synthetic "models" answer held-out sandbox prompts with known behaviour mixes (an aligned one, a
helpful-but-unsafe one, a hallucinator, a rude one, ...). Their answers go through
``evaluate_prompts`` exactly as a user's would, judged by :class:`~alignkit.sandbox.judge_server.SimulatedJudge`
served over HTTP on 127.0.0.1 through the OpenAI protocol. The same pairs are also judged by the
ground-truth scorer. Reported: the judge's verdict agreement with the truth (on pairs the truth
does not tie), its consistency under position swaps, Spearman's rank correlation between its
Bradley–Terry ladder and the ground-truth ladder, and raw vs length-controlled win rates against
the truth's win rates.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from alignkit.ai.server import BackgroundServer
from alignkit.evaluate.battles import scorer_judge
from alignkit.evaluate.config import JudgedEvalConfig
from alignkit.evaluate.judged import evaluate_prompts
from alignkit.evaluate.ratings import BradleyTerry, win_rate
from alignkit.evaluate.stats import spearman
from alignkit.sandbox.judge_server import SimulatedJudge, make_judge_app
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


def validate(
    folder: Path, n_prompts: int = 60, accuracy: float = 0.8, position_bias: float = 0.05, length_bias: float = 0.1, seed: int = 0
) -> dict[str, Any]:
    """Run the judged path against the simulated judge on loopback; compare with ground truth."""
    world = build_world(0)
    prompts = world.prompts("eval")[:n_prompts]
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
    judge = SimulatedJudge(world, accuracy, position_bias, length_bias, seed)
    with BackgroundServer(make_judge_app(judge)) as server:
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
        "judge_http_requests": judge.requests,
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
