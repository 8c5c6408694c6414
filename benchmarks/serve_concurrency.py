"""``alignkit serve`` under load: N concurrent requests vs the same N sent one after another.

One server (a real uvicorn on loopback, the official ``openai`` client), one model. First the N
requests go one at a time (what the pre-batching server did even when they arrived together), then
all N at once from N client threads; the continuous-batching decode loop serves the concurrent
ones in shared forwards. Every request is greedy with a fixed ``max_tokens`` and ``stop`` unset;
the random tiny model (default) almost never emits EOS, so both runs generate the same number of
tokens, which the script checks and prints. Median of ``--repeats`` rounds, interleaved.

    python benchmarks/serve_concurrency.py [--model tiny|sandbox|PATH] [--requests 32] [--max-tokens 48]
        [--repeats 3] [--device cpu|cuda] [--max-batch-size 32] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import torch

import alignkit.sandbox
from alignkit.ai.config import ServeLimits
from alignkit.ai.server import BackgroundServer, make_app
from alignkit.models import build_tiny_model, load_model

QUESTIONS = [
    "What is the river of Varnholt?",
    "Tell me about the market town.",
    "How do I kill a stuck process?",
    "Who founded the harbour?",
    "What colour is the sky?",
    "Name the export of the north.",
    "Write a short note about copper and tea.",
    "one two three four",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model == "tiny":
        model, tokenizer = build_tiny_model(QUESTIONS * 4, seed=0)
    else:
        path = Path(alignkit.sandbox.__file__).parent / "base_model" if args.model == "sandbox" else Path(args.model)
        model, tokenizer = load_model(str(path))
    model.to(torch.device(args.device))
    app = make_app(model, tokenizer, "m", limits=ServeLimits(max_batch_size=args.max_batch_size))
    asks = [[{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} ({i})"}] for i in range(args.requests)]

    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)

        def one(messages: list[dict[str, str]]) -> int:
            r = client.chat.completions.create(model="m", messages=messages, max_tokens=args.max_tokens, temperature=0)
            assert r.usage is not None
            return r.usage.completion_tokens

        one(asks[0])  # warm-up
        sequential, concurrent = [], []
        tokens_seq = tokens_con = 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            tokens_seq = sum(one(m) for m in asks)
            sequential.append(time.perf_counter() - start)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.requests) as pool:
                tokens_con = sum(pool.map(one, asks))
            concurrent.append(time.perf_counter() - start)
        stats = app.state.engine.stats

    seq, con = statistics.median(sequential), statistics.median(concurrent)
    print(f"torch threads={torch.get_num_threads()}")
    print(f"model={args.model} device={args.device} requests={args.requests} max_tokens={args.max_tokens} repeats={args.repeats}")
    print(f"generated tokens: sequential {tokens_seq}, concurrent {tokens_con}")
    print(f"sequential: {seq:.2f} s  ({tokens_seq / seq:,.0f} tokens/s)")
    print(f"concurrent: {con:.2f} s  ({tokens_con / con:,.0f} tokens/s), peak batch {stats.peak_batch}")
    print(f"speed-up (sequential / concurrent wall time): {seq / con:.2f}x")


if __name__ == "__main__":
    main()
