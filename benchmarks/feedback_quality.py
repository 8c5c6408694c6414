"""Label quality of the feedback pipeline on the sandbox, with simulated crowds.

Each run is the whole pipeline of ``alignkit feedback simulate``: candidates screened by a
sequential test on gold, assignment with overlap and gold spot checks, spammer flagging,
aggregation (Dawid-Skene anchored on the gold answers), export. Two crowds, both with 20 %
spammers (answer at random), a length bias (up to 0.1) and a lean towards helpfulness over
harmlessness (up to 0.3):

- *mild*: 20 annotators, honest skill 0.65-0.95, position bias up to +-0.3 (the earlier
  benchmark's crowd), 300 items; arms: fixed overlap 3, fixed overlap 5, dynamic overlap 3..5;
- *varied*: 30 annotators, honest skill 0.55-0.95, position bias up to +-0.5 (a wider spread of
  quality and of class-conditional bias, what Dawid-Skene's per-annotator confusion matrices
  model; more candidates, since screening turns more of them away), 500 items; arms: fixed
  overlap 3 and 5.

*Screening trade-off* (``--tradeoff``, issue #19): on both crowds at fixed overlap 3, Wald's SPRT
on gold against the probation rule (``alignkit.feedback.quality.screen(rule="probation")``:
undecided candidates keep working as extra judgments beyond the overlap, tested on gold and on
peers' Dawid-Skene posteriors), after 20 or 40 screening gold answers: honest annotators kept
(not excluded: admitted or still on probation) and admitted, spammers admitted, gold answered
per annotator, extra judgments per item, and Dawid-Skene accuracy (active annotators' labels,
and with the probation labels weighed in) with its paired difference from the SPRT arm.

The "confusion oracle" column is the vote Dawid-Skene would cast if it knew each annotator's
confusion matrix exactly (measured on the ground truth): the ceiling for this kind of aggregator.

Reported over seeds (mean and 95 % t-interval): spammers and honest annotators excluded by
screening; accuracy against the sandbox's ground truth of Dawid-Skene, majority vote and the best
single annotator (chosen by gold accuracy, as a practitioner would; the "oracle" best, chosen on
the test items themselves, is biased upwards), with paired differences; judgments per item.

    PYTHONPATH=. .venv/bin/python benchmarks/feedback_quality.py --seeds 8 --workers 2
    PYTHONPATH=. .venv/bin/python benchmarks/feedback_quality.py --tradeoff --seeds 4 --workers 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignkit.evaluate.stats import clopper_pearson, t_interval_95, wilson_interval  # noqa: E402
from alignkit.sandbox.simulate import SimulateConfig, SimulateResult, simulate  # noqa: E402

CROWDS: dict[str, dict[str, Any]] = {
    "mild": dict(n_annotators=20, skill_low=0.65, skill_high=0.95, position_bias=0.3),
    "varied": dict(n_annotators=30, skill_low=0.55, skill_high=0.95, position_bias=0.5),
}


def ci(values: list[float]) -> str:
    m, half = t_interval_95(values)
    return f"{m:.3f}" if len(values) < 2 else f"{m:.3f} ± {half:.3f}"


def one_run(job: tuple[str, str, dict, int, str]) -> tuple[str, str, int, SimulateResult]:
    crowd, arm, settings, seed, tmp = job
    cfg = SimulateConfig(output=f"{tmp}/{crowd}-{arm}-{seed}".replace(" ", "_"), seed=seed, progress=False, **settings)
    return crowd, arm, seed, simulate(cfg, export=False)


def admitted(r: SimulateResult) -> set[str]:
    """Everyone who got in: active at the end, or admitted and flagged later (never a candidate
    still answering gold, or someone on probation)."""
    return {q["annotator"] for q in r.quality if q["status"] in ("active", "flagged")}


def upper_bounds(k: int, n: int) -> str:
    """``k`` of ``n`` with two 95 % upper bounds on the rate: Clopper–Pearson one-sided (the claim
    "at most x" is one-sided; exact, conservative) and Wilson's two-sided interval's top."""
    cp = clopper_pearson(k, n, confidence=0.90)[1]  # a two-sided 90 % interval's top = one-sided 95 %
    return f"{k} of {n} (≤ {100 * cp:.2f} % CP, ≤ {100 * wilson_interval(k, n)[1]:.2f} % Wilson)"


# Spammer stress (``--stress-seeds``): the varied crowd's honest annotators with many more spammers
# (60 % of 60), and room for extras (``probation_extra`` 10, 300 items) so each spammer on
# probation still gets about as much peer evidence as in the varied crowd's run. Why: 6 spammers
# per run cannot show a rate of 1 % or less (0 of 300 is needed for that). ``--stress-rules``
# adds the SPRT on the same seeds (paired Dawid-Skene comparison); ``--stress-false-admit`` sets
# the screening tests' false-admit rate (the probation rule's Ville bound).
STRESS: dict[str, Any] = dict(
    n_annotators=60, spammer_fraction=0.6, skill_low=0.55, skill_high=0.95, position_bias=0.5, probation_extra=10
)


def load_stress_runs(paths: list[str]) -> dict[str, dict[int, SimulateResult]]:
    """Per-seed stress results written by ``--json`` (a line a run), read back: the summary (and
    the paired comparison of two rules) can then be printed from runs made in separate processes."""
    runs: dict[str, dict[int, SimulateResult]] = {}
    for path in paths:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rule, seed = row.pop("rule"), int(row.pop("seed"))
                runs.setdefault(rule, {})[seed] = SimulateResult.model_validate(row)
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path}:{n}: not a stress result line written by --json ({e})") from e
    return runs


def stress_summary(runs: dict[str, dict[int, SimulateResult]], base: dict[str, Any] | None) -> None:
    """Spammers admitted (with exact upper bounds), honest kept, cost and accuracy per rule; with
    both rules, probation's Dawid-Skene accuracy minus the SPRT's on the seeds both ran (paired)."""
    done = sorted(set.intersection(*(set(v) for v in runs.values())))
    settings = f", {base}" if base else ""
    print(f"# Spammer stress (seeds {done[0] if done else '-'}..{done[-1] if done else '-'}{settings})\n")
    n = int(STRESS["n_annotators"])
    for rule, by_seed in runs.items():
        rs = [by_seed[s] for s in sorted(by_seed)]
        n_spam = sum(len(r.spammers) for r in rs)
        spam_in = sum(len(set(r.spammers) & admitted(r)) for r in rs)
        spam_excl = sum(len(set(r.spammers) & set(r.excluded)) for r in rs)
        honests = [set(f"ann-{i:03d}" for i in range(n)) - set(r.spammers) for r in rs]
        answers = [q["n_judgments"] for r in rs for q in r.quality if q["annotator"] in r.spammers]
        print(f"## {rule} ({len(rs)} seeds: {min(by_seed)}..{max(by_seed)})")
        rest = n_spam - spam_in - spam_excl
        print(f"spammers admitted: {upper_bounds(spam_in, n_spam)}; excluded {spam_excl}, on probation or candidates {rest}")
        print(f"spammers admitted per seed: {[len(set(r.spammers) & admitted(r)) for r in rs]}")
        print(f"honest excluded per seed: {[len(h & set(r.excluded)) for h, r in zip(honests, rs)]}")
        print(f"answers per spammer (gold and extra): {ci([float(a) for a in answers])}, max {max(answers, default=0)}")
        print(
            f"honest kept {ci([len(h - set(r.excluded)) / len(h) for h, r in zip(honests, rs)])}, "
            f"admitted {ci([len(h & admitted(r)) / len(h) for h, r in zip(honests, rs)])}"
        )
        gold, extra = ci([r.gold_per_annotator for r in rs]), ci([r.extra_per_item for r in rs])
        print(f"gold / annotator {gold}, extra judgments / item {extra} (everyone on probation, spammers too)")
        print(f"judgments / item counted in DS (active) {ci([r.judgments_per_item for r in rs])}")
        with_probation = (
            f"DS + probation {ci([r.accuracy['dawid_skene_with_probation'] for r in rs])}, "
            if all("dawid_skene_with_probation" in r.accuracy for r in rs)
            else ""
        )
        ds, mv = ci([r.accuracy["dawid_skene"] for r in rs]), ci([r.accuracy["majority"] for r in rs])
        print(f"DS (active) {ds}, {with_probation}majority {mv}\n")
    if "probation" in runs and "sprt" in runs:
        paired = sorted(set(runs["probation"]) & set(runs["sprt"]))
        for key in ("dawid_skene", "dawid_skene_with_probation", "majority"):
            diff = [
                runs["probation"][s].accuracy[key] - runs["sprt"][s].accuracy["dawid_skene" if key != "majority" else key]
                for s in paired
            ]
            ahead, behind = sum(d > 0 for d in diff), sum(d < 0 for d in diff)
            print(
                f"probation's {key} - SPRT's {'majority' if key == 'majority' else 'DS'} (paired, {len(paired)} seeds): "
                f"{ci(diff)}; ahead in {ahead}, behind in {behind}"
            )


def stress(args: argparse.Namespace) -> None:
    rules = args.stress_rules.split(",")
    if not rules or any(r not in ("probation", "sprt") for r in rules):
        raise SystemExit(f"--stress-rules: comma-separated of probation, sprt; got {args.stress_rules!r}")
    base = {**STRESS, "probation_after": 20, "overlap": 3, "n_items": args.stress_items}
    base["screening_false_admit"] = args.stress_false_admit
    seeds = range(args.seed_offset, args.seed_offset + args.stress_seeds)
    start = time.time()
    runs: dict[str, dict[int, SimulateResult]] = {r: {} for r in rules}
    durations: list[float] = []
    # A stopping time fixed in advance (not on the results): no seed is started that would end after it.
    stop_at = None
    if args.stress_stop_at:
        hh, mm = (int(x) for x in args.stress_stop_at.split(":"))
        now = datetime.now(UTC)
        stop_at = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:  # one process, seed by seed (both rules of a seed together: paired)
            took = max(durations, default=0.0)
            if stop_at is not None and time.time() + 1.2 * took > stop_at:
                print(f"stress: stopping before seed {seed}: it would end after --stress-stop-at", file=sys.stderr, flush=True)
                break
            t0 = time.time()
            for rule in rules:
                _, _, _, r = one_run(("stress", rule, {**base, "screening_rule": rule}, seed, tmp))
                runs[rule][seed] = r
                spam = set(r.spammers)
                honest = {q["annotator"] for q in r.quality} - spam
                print(
                    f"stress {rule}, seed {seed}: spammers admitted {len(spam & admitted(r))} of {len(spam)}, "
                    f"on probation {len(spam & set(r.probation))}, excluded {len(spam & set(r.excluded))}; honest "
                    f"{len(honest)}: excluded {len(honest & set(r.excluded))}, admitted {len(honest & admitted(r))}; "
                    f"gold/annotator {r.gold_per_annotator:.1f}; DS {r.accuracy['dawid_skene']:.3f}, "
                    f"DS + probation {r.accuracy.get('dawid_skene_with_probation', 0):.3f}; {time.time() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({"rule": rule, "seed": seed, **r.model_dump()}) + "\n")
            durations.append(time.time() - t0)
    stress_summary(runs, base)
    print(f"\n({time.time() - start:.0f} s wall)")


TRADEOFF_RULES: dict[str, dict[str, Any]] = {
    "sprt": dict(screening_rule="sprt"),
    "probation, 20 gold": dict(screening_rule="probation", probation_after=20),
    "probation, 40 gold": dict(screening_rule="probation", probation_after=40),
}


def tradeoff(args: argparse.Namespace) -> None:
    """Honest kept vs spammers admitted vs gold spent, per screening rule (overlap 3)."""
    items = {"mild": args.items, "varied": args.varied_items}
    crowds = args.crowds.split(",") if args.crowds else list(CROWDS)
    rules = args.rules.split(",") if args.rules else list(TRADEOFF_RULES)
    arms = {(c, r): {**CROWDS[c], **TRADEOFF_RULES[r], "overlap": 3, "n_items": items[c]} for c in crowds for r in rules}
    results: dict[tuple[str, str], list[SimulateResult]] = {k: [] for k in arms}  # in seed order (map keeps it)
    start, cpu = time.time(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        seeds = range(args.seed_offset, args.seed_offset + args.seeds)
        jobs = [(c, r, s, seed, tmp) for (c, r), s in arms.items() for seed in seeds]
        for crowd, rule, seed, r in pool.map(one_run, jobs):
            results[(crowd, rule)].append(r)
            print(f"{crowd}, {rule}, seed {seed}: excluded {r.excluded} probation {r.probation}", file=sys.stderr, flush=True)
    print(f"# Screening trade-off ({args.seeds} seeds from {args.seed_offset}, overlap 3, 20 % spammers)\n")
    cols = (
        "honest kept",
        "honest admitted",
        "spammers admitted",
        "spammers kept",
        "gold / annotator",
        "extra / item",
        "DS (active)",
        "DS + probation",
        "DS - SPRT's DS",
        "majority",
    )
    print("| crowd, rule | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for (crowd, rule), rs in results.items():
        n = CROWDS[crowd]["n_annotators"]
        honest = [set(f"ann-{i:03d}" for i in range(n)) - set(r.spammers) for r in rs]
        kept = [len(h - set(r.excluded)) / len(h) for h, r in zip(honest, rs)]
        honest_in = [len(h & admitted(r)) / len(h) for h, r in zip(honest, rs)]
        n_spam = sum(len(r.spammers) for r in rs)
        spam_in = sum(len(set(r.spammers) & admitted(r)) for r in rs)
        spam_kept = sum(len(set(r.spammers) - set(r.excluded)) for r in rs)
        ds = [r.accuracy["dawid_skene"] for r in rs]
        base = [r.accuracy["dawid_skene"] for r in results.get((crowd, "sprt"), rs)]
        row = [
            ci(kept),
            ci(honest_in),
            upper_bounds(spam_in, n_spam),
            f"{spam_kept} of {n_spam}",
            ci([r.gold_per_annotator for r in rs]),
            ci([r.extra_per_item for r in rs]),
            ci(ds),
            ci([r.accuracy.get("dawid_skene_with_probation", r.accuracy["dawid_skene"]) for r in rs]),
            "0" if rule == "sprt" else ci([a - b for a, b in zip(ds, base)]) if (crowd, "sprt") in results else "—",
            ci([r.accuracy["majority"] for r in rs]),
        ]
        print(f"| {crowd}, {rule} | " + " | ".join(row) + " |")
    print(f"\n({time.time() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU in the parent)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{c} / {a}": [r.model_dump(exclude={"quality"}) for r in v] for (c, a), v in results.items()}, indent=1)
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--items", type=int, default=300, help="comparison items per run, mild crowd")
    ap.add_argument("--varied-items", type=int, default=500, help="comparison items per run, varied crowd")
    ap.add_argument("--workers", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument(
        "--json", type=str, default=None, help="also write the per-seed results here (stress: appended, a line a run)"
    )
    ap.add_argument("--tradeoff", action="store_true", help="only the screening trade-off (SPRT vs probation)")
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed (report on seeds no setting was chosen on)")
    ap.add_argument("--crowds", type=str, default=None, help="--tradeoff: comma-separated crowds (default all)")
    ap.add_argument("--rules", type=str, default=None, help=f"--tradeoff: comma-separated of {', '.join(TRADEOFF_RULES)}")
    ap.add_argument("--stress-seeds", type=int, default=0, help="also run the spammer stress arm on this many seeds")
    ap.add_argument("--stress-items", type=int, default=300, help="comparison items per stress run")
    ap.add_argument("--stress-rules", type=str, default="probation", help="stress: comma-separated of probation, sprt")
    ap.add_argument("--stress-stop-at", type=str, default=None, help="stress: HH:MM UTC; start no seed that would end later")
    ap.add_argument("--stress-false-admit", type=float, default=0.005, help="stress: the screening tests' false-admit rate")
    ap.add_argument(
        "--stress-summary",
        nargs="+",
        metavar="JSONL",
        help="print the stress summary of runs stored by --json (e.g. one file per rule: the paired comparison)",
    )
    args = ap.parse_args()
    if args.stress_summary:
        stress_summary(load_stress_runs(args.stress_summary), None)
        return
    if args.stress_seeds:
        stress(args)
    if args.tradeoff:
        tradeoff(args)
        return
    if args.stress_seeds:
        return

    arms = {
        ("mild", "fixed overlap 3"): dict(overlap=3, n_items=args.items),
        ("mild", "fixed overlap 5"): dict(overlap=5, n_items=args.items),
        ("mild", "dynamic overlap 3..5"): dict(overlap=3, max_overlap=5, n_items=args.items),
        ("varied", "fixed overlap 3"): dict(overlap=3, n_items=args.varied_items),
        ("varied", "fixed overlap 5"): dict(overlap=5, n_items=args.varied_items),
    }
    results: dict[tuple[str, str], list[SimulateResult]] = {k: [] for k in arms}  # in seed order (map keeps it)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        jobs = [(c, a, {**CROWDS[c], **s}, seed, tmp) for (c, a), s in arms.items() for seed in range(args.seeds)]
        for crowd, arm, seed, r in pool.map(one_run, jobs):
            results[(crowd, arm)].append(r)
            print(
                f"{crowd} crowd, {arm}, seed {seed}: {json.dumps({k: round(v, 3) for k, v in r.accuracy.items()})} "
                f"judgments/item {r.judgments_per_item:.2f}",
                file=sys.stderr,
                flush=True,
            )

    print(f"# Feedback quality on the sandbox ({args.seeds} seeds, 20 % spammers)\n")
    d = SimulateConfig()
    print(
        f"## Screening (sequential test on gold: admit at {d.screening_threshold} vs chance 0.5, "
        f"false admit {d.screening_false_admit}, at most {d.n_screening} gold)"
    )
    for crowd in CROWDS:
        rs = next(v for (c, _), v in results.items() if c == crowd)  # screening is the same in every arm of a seed
        caught = [len(set(r.spammers) & set(r.excluded)) / max(len(r.spammers), 1) for r in rs]
        n_spam = sum(len(r.spammers) for r in rs)
        passed = sum(len(set(r.spammers) - set(r.excluded)) for r in rs)
        wrong = [len(set(r.excluded) - set(r.spammers)) / (CROWDS[crowd]["n_annotators"] - len(r.spammers)) for r in rs]
        gold = [r.screening_gold_per_candidate for r in rs]
        print(
            f"{crowd:<8} spammers excluded {ci(caught)} ({passed} of {n_spam} passed)   "
            f"honest excluded {ci(wrong)}   gold answers per candidate {ci(gold)}"
        )
    print("\n## Aggregated label accuracy vs ground truth")
    cols = ("judg/item", "Dawid-Skene", "majority", "DS - MV", "best single", "DS - best", "oracle single", "confusion oracle")
    print(f"{'crowd, arm':<30}" + "".join(f"{c:>17}" for c in cols))
    for (crowd, arm), rs in results.items():
        ds = [r.accuracy["dawid_skene"] for r in rs]
        mv = [r.accuracy["majority"] for r in rs]
        best = [r.accuracy["best_single"] for r in rs]
        row = [
            ci([r.judgments_per_item for r in rs]),
            ci(ds),
            ci(mv),
            ci([a - b for a, b in zip(ds, mv)]),
            ci(best),
            ci([a - b for a, b in zip(ds, best)]),
            ci([r.accuracy["best_single_oracle"] for r in rs]),
            ci([r.accuracy["confusion_oracle"] for r in rs]),
        ]
        print(f"{crowd + ', ' + arm:<30}" + "".join(f"{x:>17}" for x in row))
    fixed, dyn = results[("mild", "fixed overlap 5")], results[("mild", "dynamic overlap 3..5")]
    ratio = statistics.fmean(r.judgments_per_item for r in dyn) / statistics.fmean(r.judgments_per_item for r in fixed)
    diff = [a.accuracy["dawid_skene"] - b.accuracy["dawid_skene"] for a, b in zip(dyn, fixed)]
    print(f"\nmild crowd, dynamic 3..5 vs fixed 5: judgments ratio {ratio:.2f}, DS accuracy difference {ci(diff)}")
    print(f"\n({time.time() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{c} / {a}": [r.model_dump(exclude={"quality"}) for r in v] for (c, a), v in results.items()}, indent=1)
        )


if __name__ == "__main__":
    main()
