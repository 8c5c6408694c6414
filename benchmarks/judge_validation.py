"""The judged evaluation path against the sandbox's ground truth (issue #22).

A simulated judge (ground truth through calibrated noise, plus position and length bias) is
served over the OpenAI chat protocol on 127.0.0.1; ``alignkit.evaluate.judged`` evaluates five
synthetic models through it; the same pairs are judged by the ground truth. Prints agreement,
consistency, the ladders' rank correlation and raw vs length-controlled win rates.

    .venv/bin/python benchmarks/judge_validation.py [--prompts 138] [--accuracy 0.8] [--length-bias 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alignkit.sandbox.judge_validation import validate, validate_people


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=138)
    parser.add_argument("--accuracy", type=float, default=0.8)
    parser.add_argument("--position-bias", type=float, default=0.05)
    parser.add_argument("--length-bias", type=float, default=0.1)
    parser.add_argument("--people-prompts", type=int, default=60, help="people mode with the simulated crowd (0: skip)")
    args = parser.parse_args()
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
    if args.people_prompts:
        with tempfile.TemporaryDirectory() as tmp:
            p = validate_people(Path(tmp), args.people_prompts)
        print(f"\npeople mode: {p['prompts']} prompts, {p['tasks']} compare tasks, {p['judgments']} crowd judgments")
        print(f"ladder Spearman (people BT vs truth BT): {p['ladder_spearman']:.3f}", end="")
        print(f"; 95% CIs cover the truth for {p['ci_covers_truth']}")
        print(f"  people: {' > '.join(p['people_ladder'])}\n  truth:  {' > '.join(p['truth_ladder'])}")
        for m, (r_, lo, hi, t) in p["ratings"].items():
            print(f"  {m}: people {r_:.1f} [{lo:.1f}, {hi:.1f}], truth {t:.1f}")


if __name__ == "__main__":
    main()
