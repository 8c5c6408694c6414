"""Label quality of the feedback pipeline on the sandbox, with a simulated crowd.

The crowd (``alignkit.sandbox.make_crowd``) holds spammers (answer at random) and biased
annotators (position bias, length bias, a lean towards helpfulness over harmlessness). Each seed
runs the whole pipeline of ``alignkit feedback simulate``: screening on gold, assignment with
overlap and gold spot checks, spammer flagging, aggregation, export. Reported over seeds (mean and
95% t-interval):

1. screening (20 gold items each): share of spammers excluded, share of honest annotators wrongly excluded;
2. accuracy vs the sandbox's ground truth of Dawid–Skene, majority vote and the best single
   annotator (chosen by gold accuracy, as a practitioner would; the "oracle" best, chosen on the
   test items themselves, is shown too and is biased upwards), and the paired DS - MV difference;
3. fixed vs dynamic overlap: judgments per item and accuracy (dynamic: start at ``--overlap``,
   ask one more person while the answers disagree, up to ``--max-overlap``).

    PYTHONPATH=. .venv/bin/python benchmarks/feedback_quality.py --seeds 5
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignkit.feedback.simulate import SimulateConfig, simulate  # noqa: E402

T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


def ci(values: list[float]) -> str:
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:.3f}"
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{m:.3f} ± {half:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--spammers", type=float, default=0.2)
    ap.add_argument("--position-bias", type=float, default=0.3)
    ap.add_argument("--overlap", type=int, default=3)
    ap.add_argument("--fixed-overlap", type=int, default=5, help="the fixed-overlap arm to compare dynamic overlap with")
    ap.add_argument("--max-overlap", type=int, default=5)
    ap.add_argument("--json", type=str, default=None, help="also write the per-seed results here")
    args = ap.parse_args()

    arms = {
        f"fixed overlap {args.overlap}": dict(overlap=args.overlap),
        f"fixed overlap {args.fixed_overlap}": dict(overlap=args.fixed_overlap),
        f"dynamic overlap {args.overlap}..{args.max_overlap}": dict(overlap=args.overlap, max_overlap=args.max_overlap),
    }
    results: dict[str, list] = {name: [] for name in arms}
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, extra in arms.items():
                cfg = SimulateConfig(output=f"{tmp}/{seed}-{len(results[name])}-{extra}", n_items=args.items,
                                     n_annotators=args.annotators, spammer_fraction=args.spammers,
                                     position_bias=args.position_bias, n_screening=20, seed=seed, progress=False, **extra)
                r = simulate(cfg, export=False)
                results[name].append(r)
                print(f"seed {seed} {name}: {json.dumps({k: round(v, 3) for k, v in r.accuracy.items()})} "
                      f"judgments/item {r.judgments_per_item:.2f}", file=sys.stderr, flush=True)

    base = results[f"fixed overlap {args.overlap}"]
    print(f"# Feedback quality on the sandbox ({args.seeds} seeds, {args.items} comparison items, "
          f"{args.annotators} annotators, {args.spammers:.0%} spammers, position bias up to {args.position_bias})\n")
    caught = [len(set(r.spammers) & set(r.excluded)) / max(len(r.spammers), 1) for r in base]
    caught_all = [len(set(r.spammers) & (set(r.excluded) | set(r.flagged))) / max(len(r.spammers), 1) for r in base]
    wrong = [len(set(r.excluded) - set(r.spammers)) / max(args.annotators - len(r.spammers), 1) for r in base]
    print("## Screening (20 gold items, admit at >= 70% gold accuracy)")
    print(f"spammers excluded by screening        {ci(caught)}")
    print(f"spammers excluded or later flagged    {ci(caught_all)}")
    print(f"honest annotators excluded            {ci(wrong)}\n")
    print("## Aggregated label accuracy vs ground truth")
    print(f"{'arm':<28}{'judg/item':>12}{'Dawid-Skene':>18}{'majority':>18}{'DS - MV':>18}{'best single':>18}{'oracle single':>18}")
    for name, rs in results.items():
        ds = [r.accuracy["dawid_skene"] for r in rs]
        mv = [r.accuracy["majority"] for r in rs]
        print(f"{name:<28}{ci([r.judgments_per_item for r in rs]):>12}{ci(ds):>18}{ci(mv):>18}"
              f"{ci([a - b for a, b in zip(ds, mv)]):>18}{ci([r.accuracy['best_single'] for r in rs]):>18}"
              f"{ci([r.accuracy['best_single_oracle'] for r in rs]):>18}")
    fixed = results[f"fixed overlap {args.fixed_overlap}"]
    dyn = results[f"dynamic overlap {args.overlap}..{args.max_overlap}"]
    ratio = statistics.fmean(r.judgments_per_item for r in dyn) / statistics.fmean(r.judgments_per_item for r in fixed)
    diff = [a.accuracy["dawid_skene"] - b.accuracy["dawid_skene"] for a, b in zip(dyn, fixed)]
    print(f"\ndynamic vs fixed {args.fixed_overlap}: judgments ratio {ratio:.2f}, DS accuracy difference {ci(diff)}")
    print(f"\n({time.time() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({k: [r.model_dump(exclude={"quality"}) for r in v] for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
