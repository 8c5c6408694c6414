"""Dawid–Skene's stopping rule on a million labels, against crowd-kit (issue #19).

The issue: on a 1M-label crowd alignkit's Dawid–Skene ran all 100 EM rounds without reaching its
tolerance (it stopped on the largest change of any item's posterior, and some near-tied item always
moved), while crowd-kit stopped after 6 at the same accuracy. The rule is now crowd-kit's: stop
when a round gains less than ``tol`` of log-likelihood per judgment. This prints, on one synthetic
crowd: rounds run, whether the tolerance stopped it, accuracy against the ground truth and CPU
seconds for alignkit (default rule), alignkit forced to 100 rounds (what the extra rounds buy)
and crowd-kit (installed for the tests, not a dependency).

    .venv/bin/python benchmarks/ds_convergence.py --labels 1000000
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene as CrowdKitDS

from alignkit.feedback.aggregate import DawidSkene


def crowd(
    n_labels: int, seed: int, k: int = 3, skill_min: float = 0.55, skill_max: float = 0.95
) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """Items with ``k`` classes, 5 judgments each from 200 annotators: 70 % honest (skill
    ``skill_min``..``skill_max``, errors spread over the other classes), 20 % of them also biased
    towards class 0, 10 % uniform spammers."""
    rng = np.random.default_rng(seed)
    n_items, n_workers = n_labels // 5, 200
    truth = rng.integers(0, k, n_items)
    kind = rng.choice(["honest", "biased", "spam"], size=n_workers, p=[0.7, 0.2, 0.1])
    skill = rng.uniform(skill_min, skill_max, n_workers)
    items = np.repeat(np.arange(n_items), 5)
    workers = np.concatenate([rng.choice(n_workers, 5, replace=False) for _ in range(n_items)])
    t = truth[items]
    right = rng.random(len(items)) < skill[workers]
    wrong = (t + rng.integers(1, k, len(items))) % k
    labels = np.where(right, t, wrong)
    biased = (kind[workers] == "biased") & (rng.random(len(items)) < 0.4)
    labels = np.where(biased, 0, labels)
    spam = kind[workers] == "spam"
    labels = np.where(spam, rng.integers(0, k, len(items)), labels)
    return list(zip(items.tolist(), workers.tolist(), labels.tolist())), truth


def accuracy(labels: dict, truth: np.ndarray) -> float:
    return float(np.mean([labels[i] == truth[i] for i in range(len(truth))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--skill", default="0.55,0.95", help="honest annotators' accuracy range, min,max")
    ap.add_argument("--prior-strength", type=float, default=5.0, help="alignkit's confusion prior (5: what aggregate uses)")
    args = ap.parse_args()
    lo, hi = (float(x) for x in args.skill.split(","))
    rows, truth = crowd(args.labels, args.seed, args.classes, lo, hi)
    print(
        f"{len(rows):,} labels, {len(truth):,} items, {args.classes} classes, 200 annotators (skill {lo:g}..{hi:g}), "
        f"seed {args.seed}, prior strength {args.prior_strength:g}"
    )
    print(f"{'method':<34}{'rounds':>7}{'stopped by tol':>16}{'accuracy':>10}{'CPU s':>8}")
    for name, model in (
        (f"alignkit (tol {args.tol:g}/judgment)", DawidSkene(tol=args.tol, prior_strength=args.prior_strength)),
        ("alignkit, 100 rounds", DawidSkene(n_iter=100, tol=-np.inf, prior_strength=args.prior_strength)),
    ):
        t0 = time.process_time()
        model.fit(rows)
        cpu = time.process_time() - t0
        print(f"{name:<34}{model.n_iter_:>7}{model.converged_!s:>16}{accuracy(model.labels_, truth):>10.4f}{cpu:>8.1f}")
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    ref = CrowdKitDS(n_iter=100, tol=args.tol)
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = ref.fit_predict(frame)
    cpu = time.process_time() - t0
    rounds = len(ref.loss_history_)
    acc = float(np.mean(labels.sort_index().to_numpy() == truth))
    print(f"{'crowd-kit 1.4 DawidSkene':<34}{rounds:>7}{rounds < 100!s:>16}{acc:>10.4f}{cpu:>8.1f}")


if __name__ == "__main__":
    main()
