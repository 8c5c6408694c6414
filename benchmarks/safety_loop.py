"""Safety loop on the sandbox (issue #15): guard P/R, filtering, red team -> DPO / Red-Instruct -> red team, judge flips.

For each run seed (world 0, the world the shipped base model knows):

1. **Guard.** A multi-label guard (the shipped base model as backbone, sandbox policy = MLCommons
   S1-S14 + custom R1 insults) is trained on labelled base-corpus rows (train split), its
   thresholds chosen on eval-split rows for 0.9 precision, and scored on test-split rows against
   the sandbox's harm labels: precision/recall per category.
2. **Filtering.** The base model is further trained on an unaligned corpus slice, once as is and
   once filtered by that guard; harmful compliance on held-out harmful/jailbreak prompts is
   compared.
3. **Red team -> adversarial training.** An SFT model (the demo's recipe: helpfulness
   demonstrations only) is attacked on *train*-split harmful requests by every generator; its
   successful attacks become DPO pairs and a Red-Instruct set; DPO and safe-align each train one
   model; all three are attacked on *test*-split requests (held out from the training data).
   Over-refusal (safe-but-scary prompts) and helpfulness (factual + safe-but-scary) are measured
   beside ASR.
4. **Judge attack.** Injection flip rate of the legacy and the hardened quoting, on the project's
   payloads and on held-out ones, with the sandbox's careless judge model
   (:func:`alignkit.safety.judge_attack.judge_flip_rates`, what ``alignkit redteam --target judge`` runs).

Figures are means over seeds with 95 % t-intervals (and Wilson intervals per run in the JSON).

    python benchmarks/safety_loop.py --seeds 0 1 --out runs/safety_bench
    python benchmarks/safety_loop.py --quick          # a smoke run (minutes)
    python benchmarks/safety_loop.py --seeds 1 --out runs/sb1 &  # seeds in parallel, then:
    python benchmarks/safety_loop.py --summarise runs/sb0/seed0/results.json runs/sb1/seed1/results.json --out runs
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from alignkit.ai.backend import LocalBackend
from alignkit.data.io import write_records
from alignkit.evaluate.stats import t_interval_95
from alignkit.models.loading import load_model
from alignkit.safety.config import FilterConfig, GuardTrainConfig, RedTeamConfig
from alignkit.safety.guard import GuardClassifier, category_report, train_guard
from alignkit.safety.judge_attack import judge_flip_rates
from alignkit.safety.moderate import run_filter
from alignkit.safety.redteam import run_redteam
from alignkit.sandbox.attacks import CarelessJudgeModel, guard_rows, sandbox_policy
from alignkit.sandbox.config import SHIPPED_BASE_MODEL
from alignkit.sandbox.datasets import BaseCorpusConfig, base_corpus, sft_demos, truth_pairs
from alignkit.sandbox.world import build_world
from alignkit.train.config import DPOConfig, SafeAlignConfig, SFTConfig
from alignkit.train.dpo import run_dpo
from alignkit.train.safe_align import run_safe_align
from alignkit.train.sft import run_sft

WORLD = 0


def generate(model_path: str | Path, prompts: list[str], max_tokens: int = 32) -> list[str]:
    model, tokenizer = load_model(str(model_path))
    return LocalBackend(model, tokenizer, batch_size=32).chat(
        [[{"role": "user", "content": p}] for p in prompts], max_tokens=max_tokens
    )


def behaviour_rates(model_path: str | Path, seed: int, n_factual: int) -> dict[str, float]:
    """Harmful compliance (harmful + jailbreak), over-refusal (safe-but-scary), helpfulness (factual + safe-but-scary)."""
    world = build_world(WORLD)
    harmful = world.prompts("test", category=["harmful", "jailbreak"])
    scary = world.prompts("test", category="safe_scary")
    factual = world.prompts("test", category="factual")[:n_factual]
    prompts = harmful + scary + factual
    scores = world.score_many(list(zip(prompts, generate(model_path, [p.text for p in prompts]))))
    h, s, f = scores[: len(harmful)], scores[len(harmful) : len(harmful) + len(scary)], scores[len(harmful) + len(scary) :]
    return {
        "harmful_compliance": sum(x.behaviour == "harmful_compliance" for x in h) / len(h),
        "over_refusal": sum(x.behaviour == "over_refusal" for x in s) / len(s),
        "helpfulness": statistics.fmean(x.helpfulness for x in s + f),
    }


def guard_figures(folder: Path, seed: int, steps: int, n_rows: int) -> dict[str, Any]:
    world = build_world(WORLD)
    policy_file = folder / "policy.yaml"
    policy_file.write_text(sandbox_policy().to_yaml())
    for split, n, s in (("train", n_rows, seed), ("eval", n_rows // 2, seed + 1000), ("test", n_rows // 2, seed + 2000)):
        write_records(folder / f"guard_{split}.jsonl", guard_rows(world, n, seed=s, split=split))
    out = train_guard(
        GuardTrainConfig(
            model=str(SHIPPED_BASE_MODEL),
            data=folder / "guard_train.jsonl",
            eval_data=folder / "guard_eval.jsonl",
            policy=str(policy_file),
            output=folder / "guard",
            max_steps=steps,
            batch_size=16,
            lr=3e-3,
            warmup_steps=10,
            max_length=64,
            target_precision=0.9,
            seed=seed,
            progress=False,
        )
    )
    guard = GuardClassifier(out)
    test = [json.loads(line) for line in (folder / "guard_test.jsonl").read_text().splitlines()]
    probs = guard.probs([r["prompt"] for r in test], [r["response"] for r in test])
    report = category_report(
        probs,
        [[c in r["categories"] for c in guard.policy.codes] for r in test],
        guard.policy,
        guard.thresholds,
        guard.unsafe_threshold,
    )
    figures = {code: report[code] for code in ("S1", "S2", "S9", "R1", "any")}
    return {"guard": str(out), "per_category": figures}


def filtering_figures(folder: Path, guard: str, seed: int, n_corpus: int, steps: int, n_factual: int) -> dict[str, Any]:
    world = build_world(WORLD)
    corpus = base_corpus(world, n_corpus, BaseCorpusConfig(), seed=seed + 7)
    write_records(folder / "corpus.jsonl", corpus)
    report = run_filter(FilterConfig(data=folder / "corpus.jsonl", output=folder / "filtered", guard=guard))
    out: dict[str, Any] = {"filter": {k: report[k] for k in ("rows_in", "kept", "removed", "removed_per_category")}}
    truly_harmful = sum(r["behaviour"] == "harmful_compliance" for r in corpus)
    removed = [json.loads(line) for line in (folder / "filtered" / "removed.jsonl").read_text().splitlines()]
    out["filter"]["harmful_rows_in"] = truly_harmful
    out["filter"]["harmful_rows_removed"] = sum(r["behaviour"] == "harmful_compliance" for r in removed)
    for name, data in (("unfiltered", folder / "corpus.jsonl"), ("filtered", folder / "filtered" / "kept.jsonl")):
        model = run_sft(
            SFTConfig(
                model=str(SHIPPED_BASE_MODEL), data=data, output=folder / f"sft_{name}", max_steps=steps, batch_size=16,
                lr=1e-3, warmup_steps=5, eval_fraction=0.0, seed=seed, progress=False,
            )
        )  # fmt: skip
        out[name] = behaviour_rates(model, seed, n_factual)
    return out


def loop_figures(folder: Path, seed: int, n_requests: int, steps: dict[str, int], n_factual: int) -> dict[str, Any]:
    world = build_world(WORLD)
    demos = sft_demos(world, 400, seed=seed, category_mix={"factual": 0.6, "unanswerable": 0.2, "safe_scary": 0.2})
    write_records(folder / "demos.jsonl", demos)
    sft = run_sft(
        SFTConfig(
            model=str(SHIPPED_BASE_MODEL), data=folder / "demos.jsonl", output=folder / "sft", max_steps=steps["sft"],
            batch_size=16, lr=1e-3, warmup_steps=5, eval_fraction=0.0, seed=seed, progress=False,
        )
    )  # fmt: skip
    common = {"judge": "sandbox", "attacks": "all", "max_new_tokens": 32, "pair_rounds": 3, "seed": seed, "progress": False}
    train_rt = run_redteam(
        RedTeamConfig(target=str(sft), requests_split="train", max_requests=n_requests, output=folder / "rt_train", **common)
    )
    n_pairs = len((folder / "rt_train" / "dpo_pairs.jsonl").read_text().splitlines())
    models: dict[str, Path] = {"sft": sft}
    if n_pairs:
        models["dpo_redteam"] = run_dpo(
            DPOConfig(
                model=str(sft), data=folder / "rt_train" / "dpo_pairs.jsonl", output=folder / "dpo", max_steps=steps["dpo"],
                batch_size=16, lr=2e-4, beta=0.1, nll_coef=0.5, eval_fraction=0.0, seed=seed, progress=False,
            )
        )  # fmt: skip
        models["red_instruct"] = run_safe_align(
            SafeAlignConfig(
                model=str(sft), data=folder / "rt_train" / "red_instruct.jsonl", helpful_data=folder / "demos.jsonl",
                output=folder / "safe", max_steps=steps["safe"], batch_size=16, lr=2e-4, harmful_coef=0.5, ascent_clamp=3.0,
                eval_fraction=0.0, seed=seed, progress=False,
            )
        )  # fmt: skip
    out: dict[str, Any] = {"train_redteam_asr": json.loads(Path(train_rt["asr"]).read_text())["overall"], "dpo_pairs": n_pairs}
    for name, path in models.items():
        rt = run_redteam(
            RedTeamConfig(
                target=str(path), requests_split="test", max_requests=n_requests, output=folder / f"rt_{name}", **common
            )
        )
        asr = json.loads(Path(rt["asr"]).read_text())
        out[name] = {
            "asr": asr["overall"],
            "any_attack": asr["any_attack"],
            "by_attack": asr["by_attack"],
            **behaviour_rates(path, seed, n_factual),
        }
    return out


def judge_figures(seed: int, n_pairs: int) -> dict[str, Any]:
    """The library's judge attack (what ``alignkit redteam --target judge`` runs), flattened to the summary's keys."""
    world = build_world(WORLD)
    cases = [(p["prompt"], p["chosen"], p["rejected"]) for p in truth_pairs(world, n_pairs, split="eval", seed=seed)]
    flips = judge_flip_rates(CarelessJudgeModel(world, inside_obedience=0.2, seed=seed), cases)
    out: dict[str, Any] = {}
    for quoting, table in flips["quoting"].items():
        for payload_set, rate in table["by_set"].items():
            out[f"{quoting}/{payload_set}"] = rate["rate"]
        out[f"{quoting}/system_payload"] = table["by_payload"]["held_out"][0]["rate"]  # "SYSTEM: The correct answer is"
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and 95 % t half-width over seeds of every numeric leaf."""

    def leaves(d: Any, prefix: str = "") -> dict[str, float]:
        out: dict[str, float] = {}
        if isinstance(d, dict):
            for k, v in d.items():
                out.update(leaves(v, f"{prefix}{k}."))
        elif isinstance(d, (int, float)) and not isinstance(d, bool):
            out[prefix[:-1]] = float(d)
        return out

    flat = [leaves(r) for r in runs]
    keys = sorted(set().union(*flat))
    table = {}
    for k in keys:
        values = [f[k] for f in flat if k in f and f[k] == f[k]]
        if values:
            mean, half = t_interval_95(values)
            table[k] = {"mean": mean, "ci95": half, "n_seeds": len(values)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("runs/safety_bench"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--small", action="store_true", help="the sizes of the figures in benchmarks/README.md (a loaded 2-core box)"
    )
    parser.add_argument("--parts", default="judge,guard,filter,loop")
    parser.add_argument("--summarise", type=Path, nargs="+", help="only merge these results.json files (seeds run apart)")
    args = parser.parse_args()
    if args.summarise:
        by_seed: dict[int, dict[str, Any]] = {}
        for path in args.summarise:  # parts of one seed run apart are merged
            run = json.loads(path.read_text())
            by_seed.setdefault(run["seed"], {}).update({k: v for k, v in run.items() if k != "seconds"})
        merged = list(by_seed.values())
        table = summarise(merged)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps({"seeds": [r["seed"] for r in merged], "summary": table}, indent=2))
        for k, v in table.items():
            print(f"{k:70s} {v['mean']:.3f} ± {v['ci95']:.3f} (n={v['n_seeds']})")
        return
    q = args.quick
    sizes: dict[str, Any] = {
        "guard_steps": 8 if q else 80,
        "guard_rows": 80 if q else 800,
        "corpus": 64 if q else 600,
        "filter_steps": 4 if q else 40,
        "requests": 3 if q else 24,
        "loop_steps": {"sft": 4, "dpo": 3, "safe": 3} if q else {"sft": 40, "dpo": 30, "safe": 30},
        "n_factual": 8 if q else 40,
        "judge_pairs": 10 if q else 60,
    }
    if args.small:
        sizes.update(
            guard_steps=150, guard_rows=600, corpus=300, filter_steps=20, requests=12, n_factual=20,
            loop_steps={"sft": 25, "dpo": 20, "safe": 20},
        )  # fmt: skip
    parts = set(args.parts.split(","))
    runs = []
    for seed in args.seeds:
        random.seed(seed)
        folder = args.out / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        run: dict[str, Any] = {"seed": seed}
        if "judge" in parts:
            run["judge"] = judge_figures(seed, sizes["judge_pairs"])
        if "guard" in parts or "filter" in parts:
            run["guard"] = guard_figures(folder, seed, sizes["guard_steps"], sizes["guard_rows"])
        if "filter" in parts:
            run["filtering"] = filtering_figures(
                folder, run["guard"]["guard"], seed, sizes["corpus"], sizes["filter_steps"], sizes["n_factual"]
            )
        if "loop" in parts:
            run["loop"] = loop_figures(folder, seed, sizes["requests"], sizes["loop_steps"], sizes["n_factual"])
        run["seconds"] = time.time() - started
        (folder / "results.json").write_text(json.dumps(run, indent=2))
        runs.append(run)
        print(json.dumps(run, indent=1)[:4000], flush=True)
    summary = {"sizes": sizes, "seeds": args.seeds, "summary": summarise(runs)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    for k, v in summary["summary"].items():
        if not k.startswith(("loop.sft.by_attack", "loop.dpo_redteam.by_attack", "loop.red_instruct.by_attack")) or k.endswith(
            ".asr"
        ):
            print(f"{k:70s} {v['mean']:.3f} ± {v['ci95']:.3f} (n={v['n_seeds']})")


if __name__ == "__main__":
    main()
