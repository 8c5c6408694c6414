"""The demo's method comparison (base, SFT, DPO, KTO, PPO) over several run seeds (issue #22).

One seed's table cannot say "DPO beats SFT on harmful compliance": the crowd, the sampled
responses and the training order all change with the seed. This script runs the shipped demo
pipeline once per *run* seed, on one fixed *world* (world seed 0, the world the shipped base model
was pretrained on), and reports per method and metric the mean over seeds with a 95 % Student-t
interval, then each seed's difference against SFT and every *reversal*: a seed where a method's
difference from SFT has the opposite sign of its mean difference (averaging would hide those).

    .venv/bin/python benchmarks/methods_over_seeds.py --seeds 0,1,2,3,4 --workdir runs/seeds [--scale 0.5]

``--scale`` multiplies the demo's step counts and crowd size (the CPU is shared: the README
states the scale its figures were measured at). Each seed's pipeline is cached in
``WORKDIR/seed-N``, so an interrupted run resumes and a rerun only prints.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from alignkit.cli.pipeline import DEMO_PIPELINE
from alignkit.evaluate.stats import t_interval_95
from alignkit.pipeline.runner import load_pipeline, override_params, run_pipeline

METHODS = ("base", "sft", "dpo", "kto", "ppo")
METRICS = ("harmful_compliance_rate", "hallucination_rate", "over_refusal_rate", "helpfulness", "utility")
LOWER_IS_BETTER = {"harmful_compliance_rate", "hallucination_rate", "over_refusal_rate"}


def scaled(scale: float, n_prompts: int | None) -> dict[str, dict]:
    def s(x: int) -> int:
        return max(2, round(x * scale))

    out = {
        "sft": {"max_steps": s(40)},
        "feedback": {"n_items": s(800), "n_gold": s(80)},
        "rm": {"max_steps": s(150)},
        "dpo": {"max_steps": s(150)},
        "kto": {"max_steps": s(150)},
        "ppo": {"max_steps": s(60)},
        "eval": {"n_boot": 50},
    }
    if n_prompts is not None:
        out["eval"]["n_prompts"] = n_prompts
    return out


def run_seed(seed: int, workdir: Path, overrides: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    spec = load_pipeline(DEMO_PIPELINE)
    spec.workdir = workdir / f"seed-{seed}"
    spec.seed = seed
    spec = override_params(spec, {k: v for k, v in overrides.items() if k != "report"})
    outputs = run_pipeline(spec, echo=lambda line: print(f"  seed {seed}: {line}", flush=True))
    results = json.loads(Path(outputs["eval"]["results"]).read_text())
    assert results["world_seed"] == 0 and results["run_seed"] == seed
    return {m["name"]: {k: (m["metrics"].get(k) or {}).get("value") for k in METRICS} for m in results["models"]}


def fmt(mean: float, half: float, rate: bool) -> str:
    if rate:
        return f"{100 * mean:.1f} ± {100 * half:.1f}" if math.isfinite(half) else f"{100 * mean:.1f}"
    return f"{mean:.3f} ± {half:.3f}" if math.isfinite(half) else f"{mean:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workdir", type=Path, default=Path("runs/methods_over_seeds"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the demo's training steps and crowd size")
    parser.add_argument("--n-prompts", type=int, default=None, help="evaluate on at most this many held-out prompts")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = scaled(args.scale, args.n_prompts)
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = run_seed(seed, args.workdir, overrides)
    (args.workdir / "per_seed.json").write_text(json.dumps(per_seed, indent=2))

    print(f"\n{len(seeds)} run seeds {seeds}, world seed 0, scale {args.scale}; mean ± 95% t half-width over seeds")
    print("| method | " + " | ".join(m.replace("_", " ") for m in METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for method in METHODS:
        cells = []
        for metric in METRICS:
            xs = [per_seed[s][method][metric] for s in seeds if per_seed[s][method][metric] is not None]
            mean, half = t_interval_95(xs) if xs else (math.nan, math.nan)
            cells.append(fmt(mean, half, metric in LOWER_IS_BETTER))
        print(f"| {method} | " + " | ".join(cells) + " |")

    print("\nDifference against SFT (method − SFT), mean ± 95% t half-width; reversals = seeds against the mean's sign")
    print("| method | metric | mean diff | CI excludes 0 | per seed | reversals |")
    print("|---|---|---|---|---|---|")
    for method in METHODS:
        if method == "sft":
            continue
        for metric in METRICS:
            diffs = {
                s: per_seed[s][method][metric] - per_seed[s]["sft"][metric]
                for s in seeds
                if per_seed[s][method][metric] is not None and per_seed[s]["sft"][metric] is not None
            }
            if not diffs:
                continue
            mean, half = t_interval_95(list(diffs.values()))
            clear = math.isfinite(half) and abs(mean) > half
            rev = [s for s, d in diffs.items() if d * mean < 0]
            rate = metric in LOWER_IS_BETTER
            each = ", ".join(f"{100 * d:+.1f}" if rate else f"{d:+.3f}" for d in diffs.values())
            print(
                f"| {method} | {metric.replace('_', ' ')} | {fmt(mean, half, rate)} | {'yes' if clear else 'no'} | {each} | "
                f"{', '.join(f'seed {s}' for s in rev) or '–'} |"
            )


if __name__ == "__main__":
    main()
