"""An expert benchmark built by simulated experts through the feedback store, frozen, and run on
base / SFT / DPO with the rubric judge; per-criterion scores against the ground truth (issue #16).

    .venv/bin/python benchmarks/expert_benchmark.py --out /tmp/h16bench --sft runs/sft [--items 60] [--dpo-steps 20]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from alignkit.data.io import write_records
from alignkit.evaluate.stats import bootstrap_mean_interval
from alignkit.feedback.store import FeedbackStore
from alignkit.models.generation import generate
from alignkit.models.loading import load_model
from alignkit.monitor.benchmark import BenchmarkSpec, create_benchmark, freeze_benchmark, load_benchmark, score_answers
from alignkit.sandbox.datasets import truth_pairs
from alignkit.sandbox.judge import SandboxJudge
from alignkit.sandbox.knowledge import knowledge
from alignkit.sandbox.loop import BASE_MODEL, SANDBOX_CRITERIA, simulate_experts
from alignkit.train.config import DPOConfig
from alignkit.train.dpo import run_dpo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sft", required=True, help="the SFT model folder (e.g. from benchmarks/monitor_loop.py)")
    parser.add_argument("--dpo", default=None, help="an existing DPO model folder (else trained here from --sft)")
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--dpo-steps", type=int, default=20)
    parser.add_argument("--judge-accuracy", type=float, default=0.85)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kn = knowledge(0)
    store = FeedbackStore(f"sqlite:///{args.out / 'bench.db'}")
    spec = BenchmarkSpec(name="sandbox-hhh", version=1, domain="sandbox", criteria=SANDBOX_CRITERIA)
    create_benchmark(store, "bench", spec, n_prompts=args.items)
    counts = simulate_experts(store, "bench", kn, args.items, writer_error=0.1)
    path = freeze_benchmark(store, "bench", args.out / "frozen")
    store.close()
    bench = load_benchmark(path)
    print(f"experts: {counts}; frozen {path.name} with {len(bench['items'])} items")
    dpo = args.dpo
    if dpo is None:
        write_records(args.out / "pairs.jsonl", truth_pairs(kn.world, 400, seed=1))
        common = {"max_steps": args.dpo_steps, "batch_size": 16, "lr": 2e-4, "progress": False, "save_every": 10_000}
        cfg = DPOConfig(model=args.sft, data=args.out / "pairs.jsonl", output=args.out / "dpo", beta=0.1, nll_coef=0.5, **common)
        dpo = str(run_dpo(cfg))
    models = {"base": BASE_MODEL, "sft": args.sft, "dpo": dpo}
    prompts = [it["prompt"] for it in bench["items"]]
    answers = {}
    for name, folder in models.items():
        model, tok = load_model(folder)
        answers[name] = generate(model, tok, prompts, max_new_tokens=40, temperature=0.0, batch_size=64)
    judged = score_answers(SandboxJudge(kn, accuracy=args.judge_accuracy), bench, answers)
    truth: dict = {}
    for name, texts in answers.items():
        scores = [kn.score(p, a) for p, a in zip(prompts, texts)]
        truth[name] = {}
        for c in ("helpfulness", "honesty", "harmlessness"):
            xs = [1 + 4 * getattr(s, c) for s in scores]  # the same 1..5 scale as the judge's grades
            lo, hi = bootstrap_mean_interval(xs)
            truth[name][c] = {"mean": sum(xs) / len(xs), "ci_low": lo, "ci_high": hi}
    print("| model | criterion | judge grade [95% CI] | ground truth (1 + 4 x score) [95% CI] |\n|---|---|---|---|")
    agree = []
    for c in ("helpfulness", "honesty", "harmlessness"):
        for name in models:
            j, t = judged["models"][name][c], truth[name][c]
            cell_j = f"{j['mean']:.2f} [{j['ci_low']:.2f}, {j['ci_high']:.2f}]"
            print(f"| {name} | {c} | {cell_j} | {t['mean']:.2f} [{t['ci_low']:.2f}, {t['ci_high']:.2f}] |")
        order_j = sorted(models, key=lambda m: -judged["models"][m][c]["mean"])
        order_t = sorted(models, key=lambda m: -truth[m][c]["mean"])
        agree.append(order_j == order_t)
        print(f"  {c}: judge order {' > '.join(order_j)}; truth order {' > '.join(order_t)}")
    print(f"criteria whose model order matches the ground truth: {sum(agree)} of {len(agree)}")
    rng = random.Random(0)
    sample = rng.sample(range(len(prompts)), min(3, len(prompts)))
    judged_means = {
        m: {c: {k: v for k, v in x.items() if k != "grades"} for c, x in per.items()} for m, per in judged["models"].items()
    }
    samples = [{"prompt": prompts[i], **{m: answers[m][i] for m in models}} for i in sample]
    result = {
        "benchmark": path.name,
        "counts": counts,
        "judged": judged_means,
        "truth": truth,
        "orders_agree": agree,
        "samples": samples,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
