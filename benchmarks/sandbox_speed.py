"""Sandbox speed: building the world, and scoring 10k free-text responses with the HHH scorer.

The baseline, measured in the same run, is the most trivial scorer possible: exact-match lookup
of the response against the prompt's canonical ideal answer in a dict (what a "golden answer"
table would do). The ratio says what the real scorer's markers, fact matching and prompt parsing
cost on top of that. Responses are a mix of every behaviour in every category, 10% of them with
their prompt reworded (case and spacing) so the scorer's normalised lookup is exercised too.

    python benchmarks/sandbox_speed.py [--n 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from alignkit.sandbox import BEHAVIOURS_FOR, IDEAL_BEHAVIOUR, World, WorldConfig
from alignkit.sandbox.build import BuildConfig, build_folder


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    build_s, world = best_of(lambda: World(WorldConfig(seed=0)), args.repeats)
    rng = random.Random(0)
    prompts = world.prompts("all")
    pairs = []
    for i in range(args.n):
        p = prompts[i % len(prompts)]
        text = p.text if rng.random() > 0.1 else "  " + p.text.lower() + " "
        pairs.append((text, world.respond(p, rng.choice(BEHAVIOURS_FOR[p.category]), rng)))

    # Baseline: exact-match lookup against one canonical ideal answer per prompt.
    canon_rng = random.Random(1)
    golden = {p.text: world.respond(p, IDEAL_BEHAVIOUR[p.category], canon_rng) for p in prompts}

    def baseline():
        return [1.0 if golden.get(prompt) == response else 0.0 for prompt, response in pairs]

    def scorer():
        world._scorer._parsed.clear()  # no warm parse cache across repeats
        return world.score_many(pairs)

    base_s, _ = best_of(baseline, args.repeats)
    score_s, scores = best_of(scorer, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        folder_s, _ = best_of(lambda: build_folder(BuildConfig(output=Path(tmp) / "w")), 1)

    print(f"world: {len(world.kb)} entities, {len(prompts)} prompts, {len(world.vocabulary())} distinct words")
    print(f"build world                 {build_s * 1000:8.1f} ms")
    print(f"build folder (all datasets) {folder_s * 1000:8.1f} ms   (5000 corpus, 400 sft, 2300 pairs)")
    print(f"score {args.n} responses      {score_s * 1000:8.1f} ms   ({score_s / args.n * 1e6:.1f} us each)")
    print(f"baseline exact-match lookup {base_s * 1000:8.1f} ms   ({base_s / args.n * 1e6:.2f} us each)")
    print(f"ratio scorer / baseline     {score_s / base_s:8.1f}x")
    print(f"build + score {args.n}        {(build_s + score_s):8.2f} s")
    assert len(scores) == args.n


if __name__ == "__main__":
    main()
