"""Bradley–Terry + 100 bootstrap rounds on 1,000,000 battles: pair counts vs per-battle resampling.

Issue #18: the per-battle bootstrap (resample battle indices, rebuild the win matrix from every
battle, refit) took 12-20 s here. ``BradleyTerry.bootstrap`` now reduces battles to outcome counts
once and resamples the counts multinomially (the same bootstrap distribution), so a round costs
O(model pairs). Both run in this script on the same battles; the full-data ratings must agree to
1e-6 and the ratio is printed.

    .venv/bin/python benchmarks/bt_bootstrap.py [--battles 1000000] [--rounds 100]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from alignkit.evaluate.ratings import BradleyTerry, _bt_strengths, _encode, filter_battles


def make_battles(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    strengths = np.array([0.0, 0.4, -0.3, 0.9, 0.2, -0.8, 0.6, 1.2, -0.1, 0.5])
    names = [f"model-{i}" for i in range(len(strengths))]
    i = rng.integers(0, len(names), size=n)
    j = (i + rng.integers(1, len(names), size=n)) % len(names)
    p = 1 / (1 + np.exp(-(strengths[i] - strengths[j])))
    u = rng.random(n)
    winner = np.where(u < 0.1, 2, np.where(u < 0.1 + 0.9 * p, 0, 1))
    labels = ("model_a", "model_b", "tie")
    return [{"model_a": names[a], "model_b": names[b], "winner": labels[w]} for a, b, w in zip(i, j, winner)]


def per_battle_bootstrap(battles: list[dict], rounds: int, seed: int = 0, reg: float = 1e-4) -> tuple[dict, np.ndarray]:
    """The previous algorithm: every round resamples N battle indices and rebuilds the win matrix."""
    battles = filter_battles(battles)
    models, ia, ib, score = _encode(battles)
    k, n = len(models), len(battles)

    def fit(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
        wins = np.zeros((k, k))
        np.add.at(wins, (a, b), s)
        np.add.at(wins, (b, a), 1.0 - s)
        return 1000 + 400 * _bt_strengths(wins, reg) / math.log(10)

    full = dict(zip(models, fit(ia, ib, score)))
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, k))
    for r in range(rounds):
        idx = rng.integers(0, n, size=n)
        samples[r] = fit(ia[idx], ib[idx], score[idx])
    return full, samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    battles = make_battles(args.battles)

    t0 = time.perf_counter()
    bt = BradleyTerry()
    ci = bt.bootstrap(battles, rounds=args.rounds, seed=0)
    t_counts = time.perf_counter() - t0

    t0 = time.perf_counter()
    full, samples = per_battle_bootstrap(battles, args.rounds)
    t_battles = time.perf_counter() - t0

    diff = max(abs(bt.ratings_[m] - full[m]) for m in full)
    lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    width_old = float(np.mean(hi - lo))
    width_new = float(np.mean([h - lo_ for lo_, h in ci.values()]))
    print(f"{args.battles:,} battles, {len(full)} models, {args.rounds} bootstrap rounds")
    print(f"per-battle bootstrap (before): {t_battles:.2f} s")
    print(f"pair-count bootstrap (now):    {t_counts:.2f} s   speed-up {t_battles / t_counts:.1f}x")
    print(f"max |rating difference| of the full-data fits: {diff:.2e} (must be < 1e-6)")
    print(f"mean 95% CI width: before {width_old:.2f}, now {width_new:.2f} rating points (same distribution)")
    if diff >= 1e-6:
        raise SystemExit("ratings differ")


if __name__ == "__main__":
    main()
