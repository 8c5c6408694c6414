"""SFT throughput of the tiny model, with and without packing, against this machine's fp32 peak.

Everything is measured in this one run: the matmul peak (a large fp32 matmul, best of several),
then the real training loop (``alignkit.train.loop.train``) on variable-length examples.
Tokens/s counts real (non-padding) tokens only, so padding waste shows up as lower throughput.
Model FLOPs per token are estimated as 6 x (parameters outside the input embedding), the usual
forward+backward rule; attention score FLOPs are small at these lengths and left out.

Size sweep (issue #18): ``--sizes 0.9M,3.4M,15M,40M`` trains each size (same examples, same
order) with and without packing, each in its own subprocess so its peak resident memory
(``VmHWM``) is its own; ``--repeats`` goes through all of them again (interleaved, so background
load hits all alike) and keeps each one's best.

    python benchmarks/sft_throughput.py [--steps 30] [--batch-size 16] [--max-length 256]
    python benchmarks/sft_throughput.py --sizes 0.9M,3.4M,15M,40M --steps 8 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from alignkit.data import encode_example
from alignkit.models import build_tiny_model
from alignkit.train.config import SFTConfig
from alignkit.train.loop import train
from alignkit.train.sft import SFTObjective, make_units

# hidden size, layers (intermediate 2.6875 x hidden, 4 heads), as in benchmarks/dpo_vs_trl.py.
SIZES = {"0.9M": (128, 4), "3.4M": (256, 4), "15M": (384, 8), "40M": (512, 12)}

WORDS = "the river town north south market bridge harbour founder export grain wool salt copper tea".split()


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, cpu_time: bool = False) -> float:
    """Best of a few large fp32 matmuls (``cpu_time``: per CPU second, for one-thread runs on a shared machine)."""
    clock = time.process_time if cpu_time else time.perf_counter
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
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


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(
    packing: bool,
    steps: int,
    batch_size: int,
    max_length: int,
    examples: list[tuple[str, str]],
    hidden_size: int = 128,
    layers: int = 4,
    cpu_time: bool = False,
) -> dict[str, float]:
    clock = time.process_time if cpu_time else time.perf_counter
    texts = [p + " " + c for p, c in examples]
    if (hidden_size, layers) == (128, 4):
        model, tok = build_tiny_model(texts, seed=0)
    else:
        model, tok = build_tiny_model(
            texts, seed=0, hidden_size=hidden_size, num_layers=layers, intermediate_size=int(hidden_size * 2.6875)
        )
    encoded = [encode_example(tok, p, c, max_length=max_length) for p, c in examples]
    units = make_units(encoded, packing, max_length)
    objective = CountingObjective(tok.pad_token_id)
    marks: dict[int, tuple[float, int]] = {}

    def mark(step: int, _metrics: dict[str, float]) -> None:
        marks[step] = (clock(), objective.tokens)

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
    return {
        "tokens_per_s": tokens_per_s,
        "gflops": tokens_per_s * flops_per_token / 1e9,
        "rows": len(units),
        "params": sum(p.numel() for p in model.parameters()),
        "peak_rss_mb": peak_rss_mb(),
    }


def sweep(args: argparse.Namespace, peak: float) -> None:
    sizes = args.sizes.split(",")
    best: dict[tuple[str, bool], dict[str, float]] = {}
    for repeat in range(args.repeats):
        for name in sizes:
            hidden, layers = SIZES[name]
            for packing in (False, True):
                cmd = [sys.executable, __file__, "--worker", f"{hidden},{layers},{int(packing)}"]
                cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
                cmd += ["--threads", str(args.threads)]
                done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"run {repeat + 1}/{args.repeats} {name} packing={packing}: {r['tokens_per_s']:.0f} tokens/s", flush=True)
                if (name, packing) not in best or r["tokens_per_s"] > best[name, packing]["tokens_per_s"]:
                    best[name, packing] = r
    unit = "CPU-s" if args.threads == 1 else "s"
    print(f"\nbest of {args.repeats}; fp32 matmul peak {peak:.1f} GFLOP/{unit} (measured at the start of this run)")
    print(f"| size | params | packing | real tokens/{unit} | GFLOP/{unit} | % of matmul peak | peak RSS MiB |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in sizes:
        for packing in (False, True):
            r = best[name, packing]
            print(
                f"| {name} | {r['params'] / 1e6:.2f}M | {packing} | {r['tokens_per_s']:.0f} | {r['gflops']:.1f} | "
                f"{100 * r['gflops'] / peak:.1f} | {r['peak_rss_mb']:.0f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--sizes", default="", help=f"comma-separated model sizes to sweep, of {','.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=1, help="with --sizes: go through the sweep this many times")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 measures per CPU second, which a shared machine disturbs far less",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    examples = synthetic_examples(2000, seed=0)
    if args.worker:  # one (size, packing) run in its own process: print its numbers as JSON
        hidden, layers, packing = (int(x) for x in args.worker.split(","))
        r = run(bool(packing), args.steps, args.batch_size, args.max_length, examples, hidden, layers, args.threads == 1)
        print(json.dumps(r))
        return
    peak = matmul_peak_gflops(cpu_time=args.threads == 1)
    if args.sizes:
        sweep(args, peak)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32 matmul peak {peak:.1f} GFLOP/s")
    results = {}
    for packing in (False, True):
        r = run(packing, args.steps, args.batch_size, args.max_length, examples, cpu_time=args.threads == 1)
        results[packing] = r
        print(
            f"packing={str(packing):5}  {r['tokens_per_s']:8.0f} real tokens/s  "
            f"{r['gflops']:6.1f} GFLOP/s  = {100 * r['gflops'] / peak:5.1f}% of peak"
        )
    print(f"packing speed-up: {results[True]['tokens_per_s'] / results[False]['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
