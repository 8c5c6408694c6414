"""Rollout engine vs ``model.generate``: generated tokens per second on the same model and prompts.

Both sample the same batch of prompts with the same settings (temperature, top-p off, the same
``max_new_tokens``, stop at EOS) after one warm-up call each, best of ``--repeats``. Tokens/s counts
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
import time

import torch

from alignkit.data import encode_prompt
from alignkit.data.batching import left_pad
from alignkit.models import build_tiny_model, load_model
from alignkit.train.rollout import sample, stop_token_ids

PROMPTS = [
    "What is the river of Varnholt?", "Tell me about the market town.", "How do I kill a stuck process?",
    "Who founded the harbour?", "What colour is the sky?", "Name the export of the north.",
    "Write a short note about copper and tea.", "one two three four",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_engine(model, tok, prompts, args, device) -> tuple[float, int]:
    stops = stop_token_ids(tok)
    best, tokens = float("inf"), 0
    for rep in range(args.repeats + 1):
        gen = torch.Generator(device=device).manual_seed(rep)
        _sync(device)
        start = time.perf_counter()
        rollout = sample(model, prompts, pad_id=tok.pad_token_id, stop_ids=stops, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, generator=gen)
        _sync(device)
        if rep > 0:  # rep 0 warms up
            elapsed = time.perf_counter() - start
            if elapsed < best:
                best, tokens = elapsed, int(rollout.response_mask.sum())
    return best, tokens


def time_generate(model, tok, prompts, args, device) -> tuple[float, int]:
    batch = {k: v.to(device) for k, v in left_pad(prompts, tok.pad_token_id).items()}
    width = batch["input_ids"].shape[1]
    best, tokens = float("inf"), 0
    for rep in range(args.repeats + 1):
        torch.manual_seed(rep)
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature,
                                 top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        _sync(device)
        if rep > 0:
            elapsed = time.perf_counter() - start
            new = out[:, width:]
            # real tokens: up to and including the first EOS of each row
            is_eos = new == tok.eos_token_id
            after = (is_eos.cumsum(-1) - is_eos.long()) > 0
            if elapsed < best:
                best, tokens = elapsed, int((~after).sum())
    return best, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    if args.model == "tiny":
        inter = int(args.hidden_size * 2.6875)
        model, tok = build_tiny_model(PROMPTS, seed=0, hidden_size=args.hidden_size, num_layers=args.layers,
                                      num_heads=max(4, args.hidden_size // 64), intermediate_size=inter)
    else:
        if args.model == "sandbox":
            from alignkit.sandbox.pretrain import SHIPPED_BASE_MODEL

            args.model = str(SHIPPED_BASE_MODEL)
        model, tok = load_model(args.model)
    device = torch.device(args.device)
    model.to(device=device, dtype=getattr(torch, args.dtype)).eval()
    prompts = [encode_prompt(tok, PROMPTS[i % len(PROMPTS)]) for i in range(args.batch_size)]
    params = sum(p.numel() for p in model.parameters())

    t_engine, n_engine = time_engine(model, tok, prompts, args, device)
    t_generate, n_generate = time_generate(model, tok, prompts, args, device)
    engine_tps, generate_tps = n_engine / t_engine, n_generate / t_generate
    print(f"model {args.model} ({params / 1e6:.2f}M params, {args.dtype}) on {device}; batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}, T={args.temperature}, best of {args.repeats}")
    print(f"rollout engine : {n_engine:6d} tokens in {t_engine:7.3f} s = {engine_tps:10.1f} tokens/s (with log-probs)")
    print(f"model.generate : {n_generate:6d} tokens in {t_generate:7.3f} s = {generate_tps:10.1f} tokens/s")
    print(f"ratio engine / generate: {engine_tps / generate_tps:.2f}x")


if __name__ == "__main__":
    main()
