"""An expert benchmark built by simulated experts through the feedback store, frozen, and run on
base / SFT / DPO with the rubric judge; per-criterion scores against the ground truth (issue #16).

    .venv/bin/python benchmarks/expert_benchmark.py --out /tmp/h16bench --sft runs/sft [--items 60] [--dpo-steps 20]

The run in benchmarks/README.md (the RAG-SFT model from ``benchmarks/monitor_loop.py --skip-loop
--rag-steps 150 --rag-demos 1000 --rag-lr 3e-3 --rag-share 0.7 --out /tmp/rag/ragsft``):

    .venv/bin/python benchmarks/expert_benchmark.py --out /tmp/rag/bench --sft /tmp/rag/ragsft/sft/model \
        --items 45 --dpo-steps 15
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


def _diff(a: list[float], b: list[float]) -> dict:
    d = [x - y for x, y in zip(a, b)]
    lo, hi = bootstrap_mean_interval(d)
    return {"mean": sum(d) / len(d), "ci_low": lo, "ci_high": hi}


def _pairwise(judged: dict, truth_items: dict, names: list[str]) -> list[dict]:
    """Per criterion and model pair, the paired mean difference (same items) of the judge's grades
    and of the ground truth, each with a bootstrap CI.

    The order test above compares two sorted lists, so a tie or a gap well inside the noise in the
    ground truth decides it by chance; the paired differences say which orderings the ground truth
    actually resolves (its CI excludes 0) and whether the judge's sign agrees on those.
    """
    out = []
    for c in ("helpfulness", "honesty", "harmlessness"):
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                j = _diff(judged["models"][a][c]["grades"], judged["models"][b][c]["grades"])
                t = _diff(truth_items[a][c], truth_items[b][c])
                resolved = t["ci_low"] > 0 or t["ci_high"] < 0
                out.append(
                    {
                        "criterion": c,
                        "pair": f"{a} - {b}",
                        "judge": j,
                        "truth": t,
                        "resolved": resolved,
                        "agree": (j["mean"] > 0) == (t["mean"] > 0) if t["mean"] != 0 else None,
                    }
                )
    return out


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
    truth_items: dict = {}
    for name, texts in answers.items():
        scores = [kn.score(p, a) for p, a in zip(prompts, texts)]
        truth[name] = {}
        truth_items[name] = {}
        for c in ("helpfulness", "honesty", "harmlessness"):
            xs = [1 + 4 * getattr(s, c) for s in scores]  # the same 1..5 scale as the judge's grades
            truth_items[name][c] = xs
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
    pairs = _pairwise(judged, truth_items, list(models))
    print("\npaired differences (first minus second model, same items; 95% bootstrap CI):")
    print("| criterion | pair | judge | ground truth | truth resolved | signs agree |\n|---|---|---|---|---|---|")
    for p in pairs:
        cj, ct = p["judge"], p["truth"]
        print(
            f"| {p['criterion']} | {p['pair']} | {cj['mean']:+.2f} [{cj['ci_low']:+.2f}, {cj['ci_high']:+.2f}] "
            f"| {ct['mean']:+.2f} [{ct['ci_low']:+.2f}, {ct['ci_high']:+.2f}] | {p['resolved']} | {p['agree']} |"
        )
    resolved = [p for p in pairs if p["resolved"]]
    print(
        f"pairs the ground truth resolves: {len(resolved)} of {len(pairs)}; the judge's sign agrees on"
        f" {sum(p['agree'] for p in resolved)} of them"
    )
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
        "pairs": pairs,
        "per_item": {
            "judge": {m: {c: x["grades"] for c, x in per.items()} for m, per in judged["models"].items()},
            "truth": truth_items,
        },
        "samples": samples,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
