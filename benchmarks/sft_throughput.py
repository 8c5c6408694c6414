"""SFT throughput of the tiny model, with and without packing, against this machine's fp32 peak.

Everything is measured in this one run: the matmul peak (a large fp32 matmul, best of several),
then the real training loop (``alignkit.train.loop.train``) on variable-length examples.
Tokens/s counts real (non-padding) tokens only, so padding waste shows up as lower throughput.
Model FLOPs per token are estimated as 6 x (parameters outside the input embedding), the usual
forward+backward rule; attention score FLOPs are small at these lengths and left out.

    python benchmarks/sft_throughput.py [--steps 30] [--batch-size 16] [--max-length 256]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from alignkit.data import encode_example
from alignkit.models import build_tiny_model
from alignkit.train.config import SFTConfig
from alignkit.train.loop import train
from alignkit.train.sft import SFTObjective, make_units

WORDS = "the river town north south market bridge harbour founder export grain wool salt copper tea".split()


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def synthetic_examples(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = "Tell me about " + " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + "."
        completion = " ".join(rng.choices(WORDS, k=rng.randint(5, 120))) + "."
        out.append((prompt, completion))
    return out


class CountingObjective(SFTObjective):
    """SFT objective that also adds up the real tokens it has seen."""

    tokens = 0

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        self.tokens += int(metrics["tokens"])
        return loss, metrics


def run(packing: bool, steps: int, batch_size: int, max_length: int, examples: list[tuple[str, str]]) -> dict[str, float]:
    texts = [p + " " + c for p, c in examples]
    model, tok = build_tiny_model(texts, seed=0)
    encoded = [encode_example(tok, p, c, max_length=max_length) for p, c in examples]
    units = make_units(encoded, packing, max_length)
    objective = CountingObjective(tok.pad_token_id)
    marks: dict[int, tuple[float, int]] = {}

    def mark(step: int, _metrics: dict[str, float]) -> None:
        marks[step] = (time.perf_counter(), objective.tokens)

    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            model="tiny",
            data=Path("unused.jsonl"),
            output=Path(tmp),
            max_steps=steps,
            batch_size=batch_size,
            save_every=10**6,
            progress=False,
            packing=packing,
            lr=1e-3,
        )
        train(config, model, objective, units, on_step_end=mark)
    (t0, n0), (t1, n1) = marks[2], marks[steps]  # skip the first steps (allocator warm-up)
    flops_per_token = 6 * (sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel())
    tokens_per_s = (n1 - n0) / (t1 - t0)
    return {"tokens_per_s": tokens_per_s, "gflops": tokens_per_s * flops_per_token / 1e9, "rows": len(units)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    peak = matmul_peak_gflops()
    examples = synthetic_examples(2000, seed=0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s")
    results = {}
    for packing in (False, True):
        r = run(packing, args.steps, args.batch_size, args.max_length, examples)
        results[packing] = r
        print(
            f"packing={str(packing):5}  {r['tokens_per_s']:8.0f} real tokens/s  "
            f"{r['gflops']:6.1f} GFLOP/s  = {100 * r['gflops'] / peak:5.1f}% of peak"
        )
    print(f"packing speed-up: {results[True]['tokens_per_s'] / results[False]['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
