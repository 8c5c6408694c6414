"""The continuous loop on the sandbox (issue #16): RAG vs no-RAG, judge faithfulness vs truth, and
rounds of monitor -> simulated human correction -> fine-tune, all scored by the ground truth.

Small by design (the CPU is shared): a few hundred prompts and tens of optimizer steps per round.

    .venv/bin/python benchmarks/monitor_loop.py --out /tmp/h16 [--rag-steps 80] [--rounds 3] [--steps 30]

The runs in benchmarks/README.md (RAG, then the loop):

    .venv/bin/python benchmarks/monitor_loop.py --out /tmp/h16rag2 --skip-loop --rag-steps 800 \
        --rag-demos 4000 --rag-lr 3e-3 --rag-share 0.7
    .venv/bin/python benchmarks/monitor_loop.py --out /tmp/h16loopF2 --skip-rag --rounds 3 --stream 150 \
        --eval 138 --steps 150 --lr 3e-4 --restart --keep-passed

The loop over run seeds (world 0 fixed: the world the base model knows; the run seed varies the
stream, the judge's and reviewer's mistakes and the data order):

    .venv/bin/python benchmarks/monitor_loop.py --out /tmp/rag/loop --skip-rag --rounds 3 --stream 150 \
        --eval 138 --steps 150 --lr 3e-4 --restart --keep-passed --seeds 0,1,2 --world-seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from alignkit.data.io import read_records
from alignkit.sandbox.loop import BASE_MODEL, monitor_loop, rag_comparison, train_rag_sft


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


_LOOP_METRICS = ("flagged_rate", "stream_error_rate", "eval_error_rate")


def _across_seeds(runs: dict, rounds: int) -> dict:
    """Per round: mean, min and max over run seeds of each rate and of the items reviewed; and per
    seed whether the flagged and error rates never rise from one round to the next."""
    per_round = []
    for r in range(rounds + 1):
        rows = [run["rounds"][r] for run in runs.values()]
        entry: dict = {"round": r}
        for m in _LOOP_METRICS:
            xs = [row[m]["value"] for row in rows]
            entry[m] = {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)}
        if r < rounds:
            xs = [row["reviewed"] for row in rows]
            entry["reviewed"] = {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)}
        per_round.append(entry)
    monotone = {
        seed: {m: all(a[m]["value"] >= b[m]["value"] for a, b in zip(run["rounds"], run["rounds"][1:])) for m in _LOOP_METRICS}
        for seed, run in runs.items()
    }
    return {"rounds": per_round, "never_rises": monotone}


def _print_across_seeds(summary: dict, seeds: list[int]) -> None:
    def cell(x: dict) -> str:
        return f"{x['mean']:.3f} ({x['min']:.3f}–{x['max']:.3f})"

    print(f"\nacross run seeds {seeds}: mean (min–max)")
    print("| round | flagged rate (stream) | true error rate (stream) | true error rate (held-out) | reviewed |")
    print("|---|---|---|---|---|")
    for e in summary["rounds"]:
        rev = f"{e['reviewed']['mean']:.1f} ({e['reviewed']['min']}–{e['reviewed']['max']})" if "reviewed" in e else "–"
        rates = " | ".join(cell(e[m]) for m in _LOOP_METRICS)
        print(f"| {e['round']} | {rates} | {rev} |")
    print("never rises round to round, per seed:", json.dumps(summary["never_rises"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rag-steps", type=int, default=80)
    parser.add_argument("--rag-demos", type=int, default=1000)
    parser.add_argument("--rag-lr", type=float, default=2e-3)
    parser.add_argument("--rag-share", type=float, default=0.6)
    parser.add_argument("--rag-source", choices=["synthetic", "collection"], default="synthetic")
    parser.add_argument("--answer-style", choices=["value", "fact"], default="value")
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream", type=int, default=96)
    parser.add_argument("--eval", type=int, default=120)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--restart", action="store_true", help="fine-tune the start model each round")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--keep-passed", action="store_true", help="also train on the answers the judge passed")
    parser.add_argument("--start-model", default=None, help="the deployed model (default: the sandbox base model)")
    parser.add_argument("--replay", type=Path, default=None, help="JSONL of the deployed model's training data to mix in")
    parser.add_argument("--judge-accuracy", type=float, default=0.85)
    parser.add_argument("--seeds", default="0", help="run seeds of the loop, comma-separated (one loop per seed)")
    parser.add_argument("--world-seed", type=int, default=0, help="the world (0: the one the base model knows)")
    parser.add_argument("--skip-rag", action="store_true")
    parser.add_argument("--skip-loop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if not args.skip_rag:
        t = time.time()
        sft = train_rag_sft(
            args.out,
            n_demos=args.rag_demos,
            steps=args.rag_steps,
            k=args.k,
            lr=args.rag_lr,
            rag_share=args.rag_share,
            source=args.rag_source,
            answer_style=args.answer_style,
        )
        results["rag"] = rag_comparison(sft, k=args.k, judge_accuracy=args.judge_accuracy)
        results["rag"]["seconds"] = round(time.time() - t, 1)
        r = results["rag"]
        print(f"\nRAG vs no-RAG, SFT model, {r['questions']} held-out retrieval questions (k={r['k']}):")
        print("| | honesty | helpfulness | correct |\n|---|---|---|---|")
        for mode in ("no_rag", "rag"):
            print(f"| {mode} | {_ci(r[mode]['honesty'])} | {_ci(r[mode]['helpfulness'])} | {_ci(r[mode]['correct'])} |")
        print("behaviours:", {m: r[m]["behaviours"] for m in ("no_rag", "rag")})
        print("judge vs truth:", json.dumps(r["judge_vs_truth"]))
    if not args.skip_loop:
        seeds = [int(x) for x in args.seeds.split(",")]
        results["loop"] = {"runs": {}}
        for seed in seeds:
            t = time.time()
            run = monitor_loop(
                args.out / "loop" / f"seed-{seed}",
                start_model=args.start_model or BASE_MODEL,
                restart=args.restart,
                lora=args.lora,
                keep_passed=args.keep_passed,
                replay=read_records(args.replay).records if args.replay else None,
                rounds=args.rounds,
                stream_size=args.stream,
                lr=args.lr,
                eval_size=args.eval,
                steps=args.steps,
                judge_accuracy=args.judge_accuracy,
                seed=seed,
                world_seed=args.world_seed,
            )
            run["seconds"] = round(time.time() - t, 1)
            results["loop"]["runs"][str(seed)] = run
            print(
                f"\nmonitor -> correct -> fine-tune, run seed {seed} (world {args.world_seed}, {args.rounds} rounds,"
                f" judge accuracy {args.judge_accuracy}, {run['seconds']} s):"
            )
            print(
                "| round | flagged rate (stream) | true error rate (stream) | start model on the same stream "
                "| true error rate (held-out) | reviewed | corrected |"
            )
            print("|---|---|---|---|---|---|---|")
            for row in run["rounds"]:
                print(
                    f"| {row['round']} | {_ci(row['flagged_rate'])} | {_ci(row['stream_error_rate'])} "
                    f"| {_ci(row['stream_error_rate_start_model'])} "
                    f"| {_ci(row['eval_error_rate'])} "
                    f"| {row.get('reviewed', '-')} | {row.get('corrected', '-')} |"
                )
        results["loop"]["across_seeds"] = _across_seeds(results["loop"]["runs"], args.rounds)
        _print_across_seeds(results["loop"]["across_seeds"], seeds)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
