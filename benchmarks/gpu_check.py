"""GPU check: SFT, DPO and GRPO on a small real-architecture model, in bf16 with sdpa (issue #17).

    python benchmarks/gpu_check.py [--out /tmp/gpu_check] [--steps 20] [--hidden 640] [--layers 10]

Builds a Qwen2-shaped model locally (about 50M parameters at the defaults, random weights, a
byte-level BPE tokenizer trained on synthetic text; nothing is downloaded), saves it, and runs each
trainer through its public recipe (``run_sft``, ``run_dpo``, ``run_grpo``) from that folder with
``--dtype bfloat16 --attn-implementation sdpa``. Reports training tokens/s (SFT, DPO: real tokens
through forward+backward, median over steps after the first), rollout tokens/s (GRPO: generated
tokens per second of sampling) and peak GPU memory per stage. Without a CUDA device it prints that
it skipped and exits 0, so CI can run it everywhere (``--cpu-smoke --hidden 64 --layers 1 --steps 2``
runs the same code on CPU to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from alignkit.models.architectures import build_architecture
from alignkit.train.config import DPOConfig, GRPOConfig, SFTConfig
from alignkit.train.dpo import run_dpo
from alignkit.train.rloo import run_grpo
from alignkit.train.sft import run_sft

WORDS = "the river town sky blue answer question helpful honest harmless model data train reward".split()


def synthetic_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    gen = torch.Generator().manual_seed(seed)

    def text(k: int) -> str:
        return " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=gen))

    return [{"prompt": text(24) + "?", "chosen": text(96), "rejected": text(80), "completion": text(96)} for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def metrics(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]


def stage(name: str, fn: Any) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = fn()
    history = [r for r in metrics(out) if "loss" in r or "score" in r]
    key = "gen_tokens_per_s" if name == "grpo" else "tokens_per_s"
    rates = [r[key] for r in history[1:]] or [r[key] for r in history]
    return {
        "stage": name,
        "steps": len(history),
        "wall_s": round(time.perf_counter() - started, 1),
        key: round(statistics.median(rates)),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cpu-smoke", action="store_true", help="Run on CPU anyway (to check the script; figures meaningless).")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_check: no CUDA device; skipped (nothing was run)")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    rows = synthetic_rows(512)
    model, tokenizer = build_architecture(
        "qwen2",
        [r["completion"] for r in rows],
        vocab_size=4096,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.hidden // 64,
        intermediate=int(args.hidden * 2.7),
        max_positions=1024,
    )
    params = sum(p.numel() for p in model.parameters())
    base = out / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    sft_data = write_jsonl(out / "sft.jsonl", [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    dpo_data = write_jsonl(out / "dpo.jsonl", [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    prompts = write_jsonl(out / "prompts.jsonl", [{"prompt": r["prompt"]} for r in rows])
    shared: dict[str, Any] = {
        "model": str(base),
        "dtype": "bfloat16",
        "attn_implementation": "sdpa",
        "max_steps": args.steps,
        "progress": False,
        "save_every": 10**6,
    }
    offline = {**shared, "batch_size": args.batch_size, "max_length": 512, "eval_fraction": 0.0}
    results = [
        stage("sft", lambda: run_sft(SFTConfig(data=sft_data, output=out / "sft", **offline))),
        stage("dpo", lambda: run_dpo(DPOConfig(data=dpo_data, output=out / "dpo", **offline))),
        stage(
            "grpo",
            lambda: run_grpo(
                GRPOConfig(
                    data=prompts,
                    output=out / "grpo",
                    rollout_batch_size=16,
                    k=4,
                    minibatch_size=16,
                    max_new_tokens=128,
                    **shared,
                ),  # fmt: skip
                reward_fn=lambda _p, responses: [r.count("e") / 10 for r in responses],
            ),
        ),
    ]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (smoke run)"
    print(f"gpu_check on {device}: qwen2-shaped model, {params / 1e6:.1f}M parameters, bf16 weights, sdpa")
    for r in results:
        print("  " + json.dumps(r))
    (out / "gpu_check.json").write_text(json.dumps({"device": device, "parameters": params, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
