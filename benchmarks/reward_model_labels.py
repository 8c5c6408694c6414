"""Which labels make the better reward model? Crowd (raw vs aggregated) and AI labels, on the sandbox.

Every reward model here is the same recipe (``alignkit.train.reward_model``, same steps, same
seed, starting from the shipped base model); only its training labels differ. Each is scored by
its pairwise accuracy against the *ground truth* on held-out pairs (eval split) that no labeler saw.

Label sources, all over the same items (``truth_pairs`` of the train split):

* ``truth``          — the ground-truth preference (upper bound);
* ``crowd raw``      — every single judgment of the simulated crowd (spammers and biased
                       annotators included, overlap 3), each one a training pair, no QC;
* ``crowd QC``       — the feedback store's export: screening on gold, spammer flagging,
                       Dawid–Skene aggregation (``alignkit feedback simulate``);
* ``AI + small human`` — a simulated AI labeler of known accuracy labels everything, and a
                       small human set (aggregated crowd labels on 20 % of items) replaces the
                       AI label where it exists (the RLAIF recipe: cheap AI labels, few people).

    python benchmarks/reward_model_labels.py [--items 800] [--steps 150] [--ai-accuracy 0.8] [--seeds 0]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from alignkit.data import write_records
from alignkit.evaluate.stats import t_interval_95
from alignkit.sandbox import build_world, make_crowd, truth_pairs
from alignkit.sandbox.pretrain import SHIPPED_BASE_MODEL


def train_and_score(pairs: list[dict], eval_pairs: list[dict], steps: int, seed: int, tmp: Path, name: str) -> float:
    from alignkit.models.reward import RewardScorer
    from alignkit.train.config import RewardConfig
    from alignkit.train.reward_model import run_reward_model

    data = write_records(
        tmp / f"{name}.jsonl", [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    )
    path = run_reward_model(
        RewardConfig(
            model=str(SHIPPED_BASE_MODEL),
            data=data,
            output=tmp / name,
            max_steps=steps,
            batch_size=16,
            lr=5e-4,
            warmup_steps=10,
            eval_fraction=0.0,
            seed=seed,
            progress=False,
        )
    )
    scorer = RewardScorer(path)
    chosen = scorer.score([p["prompt"] for p in eval_pairs], [p["chosen"] for p in eval_pairs])
    rejected = scorer.score([p["prompt"] for p in eval_pairs], [p["rejected"] for p in eval_pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(eval_pairs)


def crowd_raw_pairs(world, pairs: list[dict], seed: int, overlap: int = 3) -> list[dict]:
    """Each of ``overlap`` random crowd members labels each pair; every judgment becomes a pair."""
    crowd = make_crowd(world, n=20, spammer_fraction=0.2, seed=seed)
    rng = random.Random(seed)
    out = []
    for p in pairs:
        for annotator in rng.sample(crowd, overlap):
            swap = rng.random() < 0.5
            a, b = (p["rejected"], p["chosen"]) if swap else (p["chosen"], p["rejected"])
            verdict = annotator.compare(p["prompt"], a, b, rng)["overall"]
            if verdict == "tie":
                continue
            winner, loser = (a, b) if verdict == "A" else (b, a)
            out.append({"prompt": p["prompt"], "chosen": winner, "rejected": loser})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--ai-accuracy", type=float, default=0.8)
    parser.add_argument("--human-share", type=float, default=0.2)
    parser.add_argument("--seeds", type=str, default="0")
    parser.add_argument("--only", type=str, default="", help="comma-separated source-name prefixes to run")
    parser.add_argument("--eval-pairs", type=int, default=300, help="held-out eval-split pairs to score each reward model on")
    args = parser.parse_args()
    from alignkit.ai.labeling import preference_records
    from alignkit.ai.simulated import SimulatedAILabeler
    from alignkit.sandbox.simulate import SimulateConfig, simulate

    world = build_world(0)
    eval_pairs = truth_pairs(world, args.eval_pairs, split="eval", seed=99)
    results: dict[str, list[float]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            n_gold = SimulateConfig().n_gold
            items = truth_pairs(world, args.items + n_gold, seed=seed)[n_gold:]  # the items simulate() labels
            sim = simulate(
                SimulateConfig(output=str(tmp / "feedback"), n_items=args.items, n_gold=n_gold, seed=seed, progress=False),
                world=world,
            )
            from alignkit.data import read_records

            qc = read_records(sim.export_path).records
            ai_labels = preference_records(
                SimulatedAILabeler(world, accuracy=args.ai_accuracy, seed=seed).label(
                    [(p["prompt"], p["chosen"], p["rejected"]) for p in items]
                )
            )
            # The same items, labelled by people for a random share and by the AI for the rest.
            key = lambda p: (p["prompt"], frozenset((p["chosen"], p["rejected"])))  # noqa: E731
            human_keys = {key(p) for p in random.Random(seed).sample(items, int(args.human_share * len(items)))}
            mixed = [p for p in qc if key(p) in human_keys] + [p for p in ai_labels if key(p) not in human_keys]
            sources = {
                "truth": items,
                "crowd raw (no QC)": crowd_raw_pairs(world, items, seed),
                "crowd QC (screened, Dawid-Skene)": qc,
                f"AI labels (acc {args.ai_accuracy}) + {int(100 * args.human_share)}% human": mixed,
                f"AI labels only (acc {args.ai_accuracy})": ai_labels,
            }
            for name, pairs in sources.items():
                if args.only and not any(name.startswith(o) for o in args.only.split(",")):
                    continue
                acc = train_and_score(
                    pairs, eval_pairs, args.steps, seed, tmp, f"rm{len(results.get(name, []))}_{abs(hash(name)) % 10**6}"
                )
                results.setdefault(name, []).append(acc)
                print(f"seed {seed}  {name:<40} {len(pairs):5d} training pairs  held-out accuracy vs truth {acc:.3f}", flush=True)
            print(f"seed {seed}  label accuracy of the crowd aggregate: {sim.accuracy}", flush=True)
    print(f"\nmean held-out pairwise accuracy against the ground truth ({args.eval_pairs} eval pairs):")
    for name, accs in results.items():
        print(f"  {name:<40} {sum(accs) / len(accs):.3f}  (seeds: {', '.join(f'{a:.3f}' for a in accs)})")
    raw = results.get("crowd raw (no QC)")
    if raw and len(raw) > 1:
        print("\npaired difference against the raw crowd labels (mean and 95 % t-interval over seeds):")
        for name, accs in results.items():
            if accs is not raw:
                mean, half = t_interval_95([a - b for a, b in zip(accs, raw)])
                print(f"  {name:<40} {mean:+.3f} ± {half:.3f}")


if __name__ == "__main__":
    main()
