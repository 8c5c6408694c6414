"""Evaluate a set of models on the sandbox and assemble the report data.

For every model: sample responses to held-out sandbox prompts, score them with the ground-truth
scorer (HHH metrics with CIs), measure held-out LM loss on the world's fact sentences (the
alignment tax against the base model), and the KL to a reference model on its own samples. Then
every pair of models battles on every prompt, judged by the ground truth, giving Bradley–Terry
and Elo ladders with bootstrap CIs and win rates against the reference.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alignkit.data.io import write_records
from alignkit.evaluate.battles import CRITERIA, run_battles, scorer_judge
from alignkit.evaluate.hhh import alignment_tax, heldout_lm_loss, hhh_metrics
from alignkit.evaluate.kl import sampled_kl
from alignkit.evaluate.ratings import BradleyTerry, EloRating, win_rate
from alignkit.evaluate.report import AlignmentTax, MetricCI, ModelResult, ReportData, Sample, WinRateRow, ladder_rows
from alignkit.models.generation import generate
from alignkit.models.loading import load_model
from alignkit.safety.config import GuardSource
from alignkit.safety.moderate import build_guard, flag_rates
from alignkit.sandbox.build import load_world
from alignkit.sandbox.config import SandboxEvalConfig
from alignkit.sandbox.world import build_world

log = logging.getLogger(__name__)


def _metric_models(metrics: dict[str, dict[str, Any]]) -> dict[str, MetricCI]:
    return {k: MetricCI(**v) for k, v in metrics.items()}


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def training_summary(
    runs: dict[str, str], max_points: int = 200
) -> tuple[dict[str, list[dict[str, float]]], list[dict[str, Any]]]:
    """Training curves (``metrics.jsonl``, evaluation rows dropped, thinned to ``max_points``) and a
    row per stage: wall time (the pipeline's ``stage.json``), steps, target tokens, held-out metrics
    (a reward model's pairwise accuracy) from ``alignkit_run.json``. Missing files are skipped."""
    curves: dict[str, list[dict[str, float]]] = {}
    rows: list[dict[str, Any]] = []
    for stage, folder in runs.items():
        path = Path(folder)
        metrics = []
        if (path / "metrics.jsonl").is_file():
            for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and not any(str(k).startswith("eval") for k in row):
                    metrics.append(_numbers(row))
        stride = max(1, len(metrics) // max_points)
        if metrics:
            curves[stage] = metrics[::stride]
        info: dict[str, Any] = {"stage": stage}
        if (path / "stage.json").is_file():
            info["seconds"] = float(json.loads((path / "stage.json").read_text()).get("seconds", float("nan")))
        if metrics:
            info["steps"] = int(max(m.get("step", 0) for m in metrics))
            tokens = sum(m.get("target_tokens", m.get("tokens", 0.0)) for m in metrics)
            if tokens:
                info["target tokens"] = int(tokens)
        if (path / "alignkit_run.json").is_file():
            summary = json.loads((path / "alignkit_run.json").read_text())
            for key, value in (summary.get("eval") or {}).items():
                if isinstance(value, (int, float)) and key.endswith("loss"):
                    info[f"held-out {key.removeprefix('eval/')}"] = float(value)
            accuracy = summary.get("eval_accuracy")  # the reward model's held-out pairwise accuracy
            if isinstance(accuracy, dict) and isinstance(accuracy.get("accuracy"), (int, float)):
                info["held-out pairwise accuracy"] = float(accuracy["accuracy"])
        rows.append(info)
    return curves, rows


def category_metrics(prompts: list[Any], scores: list[Any], seed: int) -> dict[str, dict[str, MetricCI]]:
    """HHH metrics per prompt category (only those measured on it)."""
    out = {}
    for category in sorted({p.category for p in prompts}):
        sub = [s for p, s in zip(prompts, scores) if p.category == category]
        ms = hhh_metrics(sub, seed=seed, n_boot=200)
        out[category] = {k: MetricCI(**v) for k, v in ms.items() if v["n"]}
    return out


def guard_flag_metrics(guard: Any, prompts: list[str], responses: Mapping[str, Sequence[str]]) -> dict[str, MetricCI]:
    """``guard_flag_rate`` per model: the share of its answers the guard flags, with a Wilson CI
    (:func:`alignkit.safety.moderate.flag_rates`; one guard reads every model's answers to the same
    prompts, so its own errors hit all models alike and the rates compare them)."""
    rates = flag_rates(guard, prompts, {m: list(r) for m, r in responses.items()})
    return {m: MetricCI(value=r["rate"], ci_low=r["ci"][0], ci_high=r["ci"][1], n=r["n"]) for m, r in rates.items()}


def evaluate_sandbox(config: SandboxEvalConfig, extra: dict[str, Any] | None = None) -> ReportData:
    """Run the whole evaluation; writes ``results.json`` (ReportData) and ``responses.jsonl``."""
    world = load_world(config.world) if config.world is not None else build_world(config.world_seed)
    prompts = [p for split in config.splits.split(",") for p in world.prompts(split.strip())]
    if config.n_prompts is not None:
        prompts = prompts[: config.n_prompts]
    texts = [p.text for p in prompts]
    facts = [s for name in sorted(world.kb) for s in world.fact_sentences(name)]

    responses: dict[str, list[str]] = {}
    by_category: dict[str, dict[str, dict[str, MetricCI]]] = {}
    results: list[ModelResult] = []
    losses: dict[str, float] = {}
    loaded: dict[str, tuple[Any, Any]] = {}
    for name, path in config.models.items():
        model, tok = load_model(str(path))
        loaded[name] = (model, tok)
        responses[name] = generate(
            model,
            tok,
            texts,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            seed=config.seed,
            batch_size=64,
            progress=config.progress,
        )
        scores = world.score_many(list(zip(texts, responses[name])))
        losses[name] = heldout_lm_loss(model, tok, facts, batch_size=32)
        results.append(ModelResult(name=name, metrics=_metric_models(hhh_metrics(scores, seed=config.seed))))
        by_category[name] = category_metrics(prompts, scores, config.seed)
        log.info("%s: evaluated %d prompts", name, len(texts))

    if config.guard is not None:
        flags = guard_flag_metrics(build_guard(GuardSource(guard=config.guard)), texts, responses)
        for result in results:
            result.metrics["guard_flag_rate"] = flags[result.name]
    for result in results:
        if config.tax_reference in losses and result.name != config.tax_reference:
            result.alignment_tax = AlignmentTax(**alignment_tax(losses[config.tax_reference], losses[result.name]))
    kl: dict[str, float] = {}
    if config.reference in loaded:
        ref_model = loaded[config.reference][0]
        for name, (model, tok) in loaded.items():
            if name != config.reference:
                kl[name] = sampled_kl(model, ref_model, tok, texts, responses[name])
                next(r for r in results if r.name == name).metrics["kl_to_reference"] = MetricCI(value=kl[name], n=len(texts))

    judge = scorer_judge(world.score, criterion="utility", criteria=CRITERIA)
    battles = run_battles(responses, texts, judge, seed=config.seed, progress=config.progress) if len(responses) > 1 else []
    ladders = {}
    for label, rater in (("Bradley-Terry", BradleyTerry()), ("Elo", EloRating())):
        if not battles:
            break  # one model: metrics only, nothing to rank
        rater.fit(battles)
        rater.bootstrap(battles, rounds=config.n_boot, seed=config.seed)
        ladders[label] = ladder_rows(rater)
    win_rates = []
    if config.reference in responses and battles:
        for name in responses:
            if name == config.reference:
                continue
            w = win_rate(battles, name, config.reference, seed=config.seed)
            win_rates.append(
                WinRateRow(
                    model=name,
                    reference=config.reference,
                    win_rate=w["win_rate"],
                    ci_low=w["ci_low"],
                    ci_high=w["ci_high"],
                    n=w["n"],
                    win=w["win"],
                    tie=w["tie"],
                    loss=w["loss"],
                )
            )

    rng = random.Random(config.seed)
    samples = []
    for category in sorted({p.category for p in prompts}):
        idx = [i for i, p in enumerate(prompts) if p.category == category]
        for i in rng.sample(idx, min(config.n_samples, len(idx))):
            samples.append(Sample(prompt=texts[i], category=category, responses={m: responses[m][i] for m in responses}))

    curves, stage_rows = training_summary(config.runs)
    extra = extra or {}
    data = ReportData(
        title=extra.get("title", "alignkit sandbox evaluation"),
        summary=extra.get(
            "summary",
            f"{len(config.models)} models, {len(texts)} held-out sandbox prompts "
            f"({config.splits}), sampled at T={config.temperature}, scored by the ground-truth scorer.",
        ),
        baseline=config.reference if config.reference in config.models else None,
        models=results,
        ladders=ladders,
        win_rates=win_rates,
        samples=samples,
        reward_kl={m: [(kl[m], next(r for r in results if r.name == m).metrics["utility"].value)] for m in kl},
        annotators=extra.get("annotators", []),
        reward_kl_label="ground-truth utility (KL to the reference on the model's own samples)",
        world_seed=world.config.seed,
        run_seed=config.seed,
        category_metrics=by_category,
        training=curves,
        stages=stage_rows,
    )
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    write_records(
        out / "responses.jsonl",
        [
            {"prompt": t, "category": p.category, **{m: responses[m][i] for m in responses}}
            for i, (t, p) in enumerate(zip(texts, prompts))
        ],
    )
    (out / "results.json").write_text(data.model_dump_json(indent=2))
    (out / "battles.json").write_text(json.dumps(battles))
    return data
