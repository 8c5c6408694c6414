"""The judged evaluation path against the sandbox's ground truth (issue #22).

A simulated judge (ground truth through calibrated noise, plus position and length bias) is
served over the OpenAI chat protocol on 127.0.0.1; ``alignkit.evaluate.judged`` evaluates five
synthetic models through it; the same pairs are judged by the ground truth. Prints agreement,
consistency, the ladders' rank correlation and raw vs length-controlled win rates.

People mode: the same comparisons as compare tasks in a feedback store, answered by the sandbox's
simulated crowd, over ``--people-seeds`` run seeds (a random sample of prompts, answers and crowd
each): the ladder's rank correlation with the truth, how often its 95 % CIs cover the truth (with
a Wilson interval of that rate), and the harm rates people report against the truth's.

With ``--people-gold RATE`` a random share of the comparisons also gets its known answer (the
ground truth, as an expert's label would be) and the ladder is refitted prediction-powered
(:meth:`~alignkit.evaluate.ratings.BradleyTerry.bootstrap_clustered` with ``gold_winner``): its
coverage and width are printed beside the report's. ``--people-save DIR`` keeps every run (the
crowd's battles with their posteriors, the truth) as ``DIR/seedN.pkl``; ``--people-load DIR``
reads them back instead of rerunning the crowd, so intervals can be compared on the same runs.

    .venv/bin/python benchmarks/judge_validation.py [--prompts 138] [--accuracy 0.8] [--length-bias 0.1]
    .venv/bin/python benchmarks/judge_validation.py --no-judge --people-prompts 20 --people-seeds 20
    .venv/bin/python benchmarks/judge_validation.py --no-judge --people-first-seed 1000 --people-seeds 40 \
        --people-gold 0.2 --people-save runs/people   # later: --people-load runs/people
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.evaluate.ratings import BradleyTerry
from alignkit.evaluate.stats import wilson_interval
from alignkit.sandbox.judge_validation import validate, validate_people


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=138)
    parser.add_argument("--accuracy", type=float, default=0.8)
    parser.add_argument("--position-bias", type=float, default=0.05)
    parser.add_argument("--length-bias", type=float, default=0.1)
    parser.add_argument("--people-prompts", type=int, default=20, help="people mode with the simulated crowd (0: skip)")
    parser.add_argument("--people-seeds", type=int, default=20, help="run seeds of people mode (crowd, prompts, answers)")
    parser.add_argument("--people-first-seed", type=int, default=0, help="first run seed of people mode")
    parser.add_argument("--people-gold", type=float, default=0.0, help="share of comparisons with a known answer (0: none)")
    parser.add_argument("--people-save", default=None, help="keep each people-mode run as DIR/seedN.pkl")
    parser.add_argument("--people-load", default=None, help="read people-mode runs from DIR/seedN.pkl instead of running")
    parser.add_argument("--people-json", default=None, help="write every people-mode run here")
    parser.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True, help="run the judged path")
    args = parser.parse_args()
    if args.judge:
        judged(args)
    if args.people_prompts:
        seeds = range(args.people_first_seed, args.people_first_seed + args.people_seeds)
        people(args.people_prompts, seeds, args.people_json, args.people_gold, args.people_save, args.people_load)


def judged(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = validate(Path(tmp), args.prompts, args.accuracy, args.position_bias, args.length_bias)
    print(f"{r['prompts']} prompts, {len(r['models'])} models, {r['comparisons']} judged comparisons", end="")
    print(f", {r['judge_http_requests']} HTTP requests")
    print(f"judge accuracy setting {args.accuracy}, position bias {args.position_bias}, length bias {args.length_bias}")
    print(f"agreement with ground truth: {r['agreement_with_truth']:.3f} (on {r['decided_by_truth']} pairs the truth decides)")
    print(f"judge consistency under swaps: {r['judge_consistency']:.3f}")
    print(f"ladder Spearman (judge BT vs truth BT): {r['ladder_spearman']:.3f}")
    print(f"  judge: {' > '.join(r['judge_ladder'])}\n  truth: {' > '.join(r['truth_ladder'])}")
    print("| model | truth win rate vs aligned | judge (soft) | LC | length effect |")
    print("|---|---|---|---|---|")
    for w in r["win_rates"]:
        cells = [w["truth_win_rate"], w["judge_win_rate"], w["lc_win_rate"]]
        print(f"| {w['model']} | " + " | ".join(f"{x:.3f}" for x in cells) + f" | {w['length_coef']:+.2f} |")
    print(f"win-rate Spearman vs truth: raw {r['win_rate_spearman_raw']:.3f}, LC {r['win_rate_spearman_lc']:.3f}")


def gold_interval(run: dict[str, Any], rate: float, seed: int, rounds: int = 200) -> dict[str, dict[str, float]]:
    """The prediction-powered ladder of one run: a random ``rate`` of its overall battles (drawn
    by the run seed, independently of the crowd's answers) gets the truth's winner as
    ``gold_winner``; per model the fitted rating, its 95 % CI, and the two truths."""
    rng = np.random.default_rng(10_000 + seed)
    battles = [
        {**b, "gold_winner": w} if rng.random() < rate else dict(b) for b, w in zip(run["overall_battles"], run["truth_winners"])
    ]
    bt = BradleyTerry()
    ci = bt.bootstrap_clustered(battles, rounds, seed)
    return {
        m: {
            "rating": bt.ratings_[m],
            "lo": ci[m][0],
            "hi": ci[m][1],
            **{k: run["ratings"][m][k] for k in ("truth_same", "truth_population")},
        }
        for m in bt.ratings_
    }


def people(
    n_prompts: int,
    seeds: range,
    json_path: str | None,
    gold: float = 0.0,
    save: str | None = None,
    load: str | None = None,
) -> None:
    """People mode over the run ``seeds``: ladder correlation, CI coverage (with a Wilson interval
    over the model x seed cells), harm rates against the truth's; with ``gold`` also the coverage
    and width of the prediction-powered interval."""
    runs = []
    for seed in seeds:
        if load:
            p = pickle.loads((Path(load) / f"seed{seed}.pkl").read_bytes())
        else:
            with tempfile.TemporaryDirectory() as tmp:
                p = validate_people(Path(tmp), n_prompts, seed=seed, keep_battles=True)
            if save:
                Path(save).mkdir(parents=True, exist_ok=True)
                (Path(save) / f"seed{seed}.pkl").write_bytes(pickle.dumps(p))
        if gold:
            p["gold"] = gold_interval(p, gold, seed)
        p.pop("overall_battles", None)
        runs.append(p)
        c = p["coverage"]
        print(
            f"seed {seed}: spearman {p['ladder_spearman']:.2f} (population {p['ladder_spearman_population']:.2f}); "
            f"covered: report {c['report_same']}/{c['models']} same, {c['report_population']}/{c['models']} population; "
            f"argmax+battles {c['argmax_same']}/{c['models']} same, {c['argmax_population']}/{c['models']} population",
            flush=True,
        )
    if json_path:
        Path(json_path).write_text(json.dumps(runs, indent=1))
    p = runs[0]
    print(f"\npeople mode: {p['prompts']} prompts a seed, {p['tasks']} compare tasks, {p['judgments']} crowd judgments")
    rho = [r["ladder_spearman"] for r in runs]
    rho_pop = [r["ladder_spearman_population"] for r in runs]
    print(f"ladder Spearman vs the same-prompts truth: mean {statistics.mean(rho):.3f}, min {min(rho):.3f}", end="")
    print(f"; vs the population truth: mean {statistics.mean(rho_pop):.3f}, min {min(rho_pop):.3f}")
    n = sum(r["coverage"]["models"] for r in runs)
    print(f"95% CI coverage over {len(runs)} seeds x 5 models = {n} cells (Wilson 95% interval of the rate):")
    for key, what in [
        ("report_same", "report CI (prompts and annotators resampled, outcomes drawn from posteriors) vs same-prompts truth"),
        ("report_population", "report CI vs population truth"),
        ("expected_same", "expected outcomes (no draw), prompts resampled vs same-prompts truth"),
        ("expected_population", "expected outcomes (no draw), prompts resampled vs population truth"),
        ("argmax_same", "argmax labels, battles resampled vs same-prompts truth"),
        ("argmax_population", "argmax labels, battles resampled vs population truth"),
    ]:
        k = sum(r["coverage"][key] for r in runs)
        lo, hi = wilson_interval(k, n)
        print(f"  {what}: {k}/{n} = {k / n:.3f} [{lo:.3f}, {hi:.3f}]")
    if gold:
        cells = [c for r in runs for c in r["gold"].values()]
        for truth in ("truth_same", "truth_population"):
            k = sum(c["lo"] <= c[truth] <= c["hi"] for c in cells)
            lo, hi = wilson_interval(k, len(cells))
            rate = f"{k}/{len(cells)} = {k / len(cells):.3f} [{lo:.3f}, {hi:.3f}]"
            print(f"  gold {gold:.0%} (prediction-powered) vs {truth}: {rate}")
    widths = [c["ci"][1] - c["ci"][0] for r in runs for c in r["ratings"].values()]
    errors = [c["people"] - c["truth_same"] for r in runs for c in r["ratings"].values()]
    rmse = np.sqrt(np.mean(np.square(errors)))
    line = f"CI width, mean over cells: report {statistics.mean(widths):.0f} Elo (rmse vs same truth {rmse:.0f})"
    if gold:
        g_widths = [c["hi"] - c["lo"] for r in runs for c in r["gold"].values()]
        g_errors = [c["rating"] - c["truth_same"] for r in runs for c in r["gold"].values()]
        line += f"; gold {statistics.mean(g_widths):.0f} Elo (rmse {np.sqrt(np.mean(np.square(g_errors))):.0f})"
    print(line)
    seed_misses = sorted(((r["coverage"]["models"] - r["coverage"]["report_same"], s) for s, r in zip(seeds, runs)), reverse=True)
    print("seeds with report misses (same truth):", ", ".join(f"{s}: {m}" for m, s in seed_misses if m))
    for m in sorted(p["ratings"]):
        cells = [r["ratings"][m] for r in runs]
        width = statistics.mean(c["ci"][1] - c["ci"][0] for c in cells)
        width_old = statistics.mean(c["argmax_ci"][1] - c["argmax_ci"][0] for c in cells)
        bias = statistics.mean(c["people"] - c["truth_same"] for c in cells)
        bias_old = statistics.mean(c["argmax"] - c["truth_same"] for c in cells)
        cover = sum(c["ci"][0] <= c["truth_same"] <= c["ci"][1] for c in cells)
        cover_old = sum(c["argmax_ci"][0] <= c["truth_same"] <= c["argmax_ci"][1] for c in cells)
        cover_pop = sum(c["ci"][0] <= c["truth_population"] <= c["ci"][1] for c in cells)
        cover_pop_old = sum(c["argmax_ci"][0] <= c["truth_population"] <= c["argmax_ci"][1] for c in cells)
        print(
            f"  {m}: people - truth {bias:+.1f} (argmax {bias_old:+.1f}); CI width {width:.0f} (argmax {width_old:.0f}); "
            f"covers same-prompts truth {cover}/{len(cells)} (argmax {cover_old}), "
            f"population truth {cover_pop}/{len(cells)} (argmax {cover_pop_old})"
        )
    print("harm rates (share of each model's comparisons with the harm attributed to it) vs truth (share of answers):")
    for m in sorted(p["harm_rates"]):
        for h in sorted(p["truth_harm_rates"][m]):
            got = statistics.mean(r["harm_rates"].get(m, {}).get(h, 0.0) for r in runs)
            want = statistics.mean(r["truth_harm_rates"][m][h] for r in runs)
            print(f"  {m} {h}: people {got:.3f}, truth {want:.3f}")


if __name__ == "__main__":
    main()
