"""Rollout engine vs ``model.generate``: generated tokens per second on the same model and prompts.

Both sample the same batch of prompts with the same settings (temperature, top-p off, the same
``max_new_tokens``, stop at EOS) after one warm-up call each, interleaved, median of ``--repeats``. Tokens/s counts
real generated tokens (up to and including the stop token; padding after it is not counted). The
rollout engine also returns per-token log-probs; ``generate`` is run without scores.

    python benchmarks/rollout_throughput.py [--model tiny|sandbox|PATH] [--batch-size 32]
        [--max-new-tokens 64] [--device cpu|cuda] [--hidden-size 128 --layers 4]

``--model tiny`` (default) is the random tiny Llama; ``sandbox`` the shipped sandbox base model
(which actually stops at EOS); any other value is a local model folder. ``--hidden-size`` and
``--layers`` resize the random tiny model (e.g. a GPU-sized run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from alignkit.data import encode_prompt
from alignkit.data.batching import left_pad
from alignkit.models import build_tiny_model, load_model
from alignkit.train.rollout import sample, stop_token_ids

PROMPTS = [
    "What is the river of Varnholt?",
    "Tell me about the market town.",
    "How do I kill a stuck process?",
    "Who founded the harbour?",
    "What colour is the sky?",
    "Name the export of the north.",
    "Write a short note about copper and tea.",
    "one two three four",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_engine(model, tok, prompts, args, device, seed: int) -> int:
    gen = torch.Generator(device=device).manual_seed(seed)
    rollout = sample(
        model,
        prompts,
        pad_id=tok.pad_token_id,
        stop_ids=stop_token_ids(tok),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        generator=gen,
    )
    return int(rollout.response_mask.sum())


def run_generate(model, tok, batch, args, seed: int) -> int:
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=args.max_new_tokens,
            do_sample=True,
            temperature=args.temperature,
            top_k=0,
            top_p=1.0,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :]
    # real tokens: up to and including the first EOS of each row
    is_eos = (new == tok.eos_token_id).long()
    return int(((is_eos.cumsum(-1) - is_eos) == 0).sum())


def timed(fn, device: torch.device) -> tuple[float, int]:
    _sync(device)
    start = time.perf_counter()
    tokens = fn()
    _sync(device)
    return time.perf_counter() - start, tokens


def measure(model, tok, prompts, args, device) -> tuple[float, float]:
    """Median tokens/s of each side over ``repeats`` rounds, the two sides interleaved so that
    background load hits both alike; one warm-up round first."""
    batch = {k: v.to(device) for k, v in left_pad(prompts, tok.pad_token_id).items()}
    engine, generate = [], []
    for rep in range(args.repeats + 1):
        t_e, n_e = timed(partial(run_engine, model, tok, prompts, args, device, rep), device)
        t_g, n_g = timed(partial(run_generate, model, tok, batch, args, rep), device)
        if rep > 0:
            engine.append(n_e / t_e)
            generate.append(n_g / t_g)
    return statistics.median(engine), statistics.median(generate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    if args.model == "tiny":
        inter = int(args.hidden_size * 2.6875)
        model, tok = build_tiny_model(
            PROMPTS,
            seed=0,
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            num_heads=max(4, args.hidden_size // 64),
            intermediate_size=inter,
        )
    else:
        if args.model == "sandbox":
            from alignkit.sandbox.pretrain import SHIPPED_BASE_MODEL

            args.model = str(SHIPPED_BASE_MODEL)
        model, tok = load_model(args.model)
    device = torch.device(args.device)
    model.to(device=device, dtype=getattr(torch, args.dtype)).eval()
    prompts = [encode_prompt(tok, PROMPTS[i % len(PROMPTS)]) for i in range(args.batch_size)]
    params = sum(p.numel() for p in model.parameters())

    engine_tps, generate_tps = measure(model, tok, prompts, args, device)
    print(
        f"model {args.model} ({params / 1e6:.2f}M params, {args.dtype}) on {device}; batch {args.batch_size}, "
        f"max_new_tokens {args.max_new_tokens}, T={args.temperature}, median of {args.repeats}, {torch.get_num_threads()} threads"
    )
    print(f"rollout engine : {engine_tps:10.1f} tokens/s (with per-token log-probs)")
    print(f"model.generate : {generate_tps:10.1f} tokens/s")
    print(f"ratio engine / generate: {engine_tps / generate_tps:.2f}x")


if __name__ == "__main__":
    main()
