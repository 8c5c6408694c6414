"""The judged evaluation path against the sandbox's ground truth (issue #22).

A simulated judge (ground truth through calibrated noise, plus position and length bias) is
served over the OpenAI chat protocol on 127.0.0.1; ``alignkit.evaluate.judged`` evaluates five
synthetic models through it; the same pairs are judged by the ground truth. Prints agreement,
consistency, the ladders' rank correlation and raw vs length-controlled win rates.

People mode: the same comparisons as compare tasks in a feedback store, answered by the sandbox's
simulated crowd, over ``--people-seeds`` run seeds (a random sample of prompts, answers and crowd
each): the ladder's rank correlation with the truth, how often its 95 % CIs cover the truth (with
a Wilson interval of that rate), and the harm rates people report against the truth's.

    .venv/bin/python benchmarks/judge_validation.py [--prompts 138] [--accuracy 0.8] [--length-bias 0.1]
    .venv/bin/python benchmarks/judge_validation.py --no-judge --people-prompts 20 --people-seeds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

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
    parser.add_argument("--people-json", default=None, help="write every people-mode run here")
    parser.add_argument("--judge", action=argparse.BooleanOptionalAction, default=True, help="run the judged path")
    args = parser.parse_args()
    if args.judge:
        judged(args)
    if args.people_prompts:
        people(args.people_prompts, args.people_seeds, args.people_json)


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


def people(n_prompts: int, seeds: int, json_path: str | None) -> None:
    """People mode over ``seeds`` run seeds: ladder correlation, CI coverage (with a Wilson interval
    over the model x seed cells), harm rates against the truth's."""
    runs = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            p = validate_people(Path(tmp), n_prompts, seed=seed)
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
