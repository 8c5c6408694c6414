"""DPO throughput and peak memory: alignkit against TRL's DPOTrainer, same data, same model, CPU.

One configuration (sigmoid loss, beta 0.1), one epoch over the same synthetic pairs with variable
lengths, the same batch size, max length, learning rate and number of steps, both in fp32 without
gradient checkpointing (TRL 1.16's ``DPOConfig`` defaults to bf16 autocast and checkpointing, so
both are switched off explicitly: without that the comparison is fp32 against bf16). Each trainer runs in
its own subprocess so their peak resident memory (``VmHWM``) is measured separately.

What is timed. alignkit: reference log-prob precomputation (its default without LoRA: one no-grad
pass of the starting policy over the data, no reference model in memory) + the training loop.
TRL: ``trainer.train()`` with TRL's default ``precompute_ref_log_probs=False``: a reference copy
of the model in memory, run on every batch (at one epoch both run the reference over every token
once). Model loading and tokenization are left out for both. The timing is symmetric about
saving: TRL is told to save nothing, and alignkit's loop always writes a resumable checkpoint at
its last step, so that save is timed on its own (wall and CPU) and subtracted from alignkit's
figures (printed beside them). Peak memory still includes it (against alignkit).

Tokens/s counts the same thing for both: real (non-padding) tokens of every chosen and rejected
sequence (prompt + completion, as encoded by alignkit's chat-template path) of the epoch, divided
by the timed wall time. TRL pads each batch to its longest sequence; alignkit packs sequences
padding-free, so padding waste shows up as lower throughput, as it should.

Size sweep (issue #18): ``--sizes 0.9M,3.4M,15M,40M`` runs every size on the same pairs in the
same order; each repeat goes through all sizes, alternating the two trainers, so background load
hits both alike. At each size it also reports the share of this machine's fp32 matmul peak
(measured in the same run) that each trainer reaches: a DPO epoch costs about 8 x (parameters
outside the input embedding) FLOPs per token for both (6 for the policy's forward+backward, 2 for
the reference forward, once per token either way).

    python benchmarks/dpo_vs_trl.py [--pairs 256] [--batch-size 8] [--max-length 512] [--hidden-size 128] [--repeats 3]
    python benchmarks/dpo_vs_trl.py --sizes 0.9M,3.4M,15M,40M --pairs 64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# hidden size, layers (intermediate 2.6875 x hidden, 4 heads, ~500-token vocabulary).
SIZES = {"0.9M": (128, 4), "3.4M": (256, 4), "15M": (384, 8), "40M": (512, 12)}

WORDS = "the river town north south market bridge harbour founder export grain wool salt copper tea".split()


def synthetic_pairs(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = "Tell me about " + " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + "."
        rows.append(
            {
                "prompt": prompt,
                "chosen": " ".join(rng.choices(WORDS, k=rng.randint(5, 120))) + ".",
                "rejected": " ".join(rng.choices(WORDS, k=rng.randint(5, 120))) + "!",
            }
        )
    return rows


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, cpu_time: bool = False) -> float:
    """This machine's fp32 matmul throughput now: the best of a few large square matmuls
    (``cpu_time``: per CPU second of this process, the fair yardstick for a one-thread run on a shared machine)."""
    import torch

    clock = time.process_time if cpu_time else time.perf_counter
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * n**3 / best / 1e9


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- workers (subprocesses)


def run_alignkit(args: argparse.Namespace, rows: list[dict[str, str]]) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM

    from alignkit.models import load_tokenizer
    from alignkit.models.packing import decide_packing
    from alignkit.train import loop
    from alignkit.train.config import DPOConfig
    from alignkit.train.dpo import DPOObjective, attach_reference, encode_pairs, flat_sequences
    from alignkit.train.preference import prepare_reference
    from alignkit.train.prefix_sharing import prefix_sharing_is_exact

    saving = {"wall_s": 0.0, "cpu_s": 0.0}
    save_checkpoint = loop.save_checkpoint

    def timed_save(*a: Any, **kw: Any) -> Any:  # TRL saves nothing here: take our checkpoint out of the timing
        wall, cpu = time.perf_counter(), time.process_time()
        path = save_checkpoint(*a, **kw)
        saving["wall_s"] += time.perf_counter() - wall
        saving["cpu_s"] += time.process_time() - cpu
        return path

    loop.save_checkpoint = timed_save

    torch.manual_seed(0)
    tok = load_tokenizer(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    with tempfile.TemporaryDirectory() as out:
        cfg = DPOConfig(
            model=args.model_dir,
            data=Path("unused.jsonl"),
            output=Path(out),
            max_steps=args.steps,
            batch_size=args.batch_size,
            max_length=args.max_length,
            lr=args.lr,
            beta=0.1,
            loss="sigmoid",
            eval_fraction=0.0,
            save_every=10**9,
            progress=False,
            reference="precomputed",
            lr_schedule="linear",
        )
        examples, skipped = encode_pairs(tok, rows, args.max_length, "chat")
        assert not skipped, skipped
        started, cpu_started = time.perf_counter(), time.process_time()
        cache, _ = prepare_reference(cfg, "precomputed", model, tok.pad_token_id, {"train": flat_sequences(examples)}, "dpo")
        attach_reference(examples, cache["train"])
        reference_s = time.perf_counter() - started
        # The objective as run_dpo builds it: packed rows, each pair one tree where the probe allows it.
        objective = DPOObjective(
            cfg, tok.pad_token_id, None, pack=decide_packing(model), share_prefix=prefix_sharing_is_exact(model)[0]
        )
        result = loop.train(cfg, model, objective, examples)
        wall = time.perf_counter() - started - saving["wall_s"]
        cpu = time.process_time() - cpu_started - saving["cpu_s"]
    mean_loss = sum(h["loss"] for h in result.history) / len(result.history)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "reference_s": reference_s,
        "save_wall_s": saving["wall_s"],
        "save_cpu_s": saving["cpu_s"],
        "mean_loss": mean_loss,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_trl(args: argparse.Namespace, rows: list[dict[str, str]]) -> dict[str, float]:
    import datasets
    import torch
    from trl import DPOConfig, DPOTrainer

    from alignkit.models import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(args.model_dir)
    # Conversational format, so TRL renders the same chat template alignkit does.
    data = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    )
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            max_length=args.max_length,
            learning_rate=args.lr,
            lr_scheduler_type="linear",
            beta=0.1,
            loss_type=["sigmoid"],
            max_grad_norm=1.0,
            # TRL 1.16 defaults to bf16 autocast and gradient checkpointing; pinned to what alignkit does here
            # (fp32, no checkpointing) so both trainers do the same arithmetic.
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
            dataloader_num_workers=0,
        )
        trainer = DPOTrainer(model=args.model_dir, args=config, train_dataset=data, processing_class=tok)
        started, cpu_started = time.perf_counter(), time.process_time()
        output = trainer.train()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"wall_s": wall, "cpu_s": cpu, "mean_loss": output.training_loss, "peak_rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--repeats", type=int, default=1, help="Alternate the two trainers this many times; keep each one's fastest run."
    )
    parser.add_argument(
        "--sizes",
        default="",
        help=f"comma-separated model sizes to sweep, of {','.join(SIZES)} (default: one model, --hidden-size)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per trainer (0: torch's default). On a shared machine, 1 thread and the CPU-time "
        "figures (tokens per CPU second) are the fair comparison: wall time then mostly measures the other jobs.",
    )
    parser.add_argument("--worker", choices=["alignkit", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pairs % args.batch_size:
        parser.error("--pairs must be a multiple of --batch-size (both trainers see exactly one epoch)")
    args.steps = args.pairs // args.batch_size

    if args.worker:  # inside a subprocess: run one trainer, write its numbers
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        rows = json.loads(Path(args.data).read_text())
        result = (run_alignkit if args.worker == "alignkit" else run_trl)(args, rows)
        Path(args.result).write_text(json.dumps(result))
        return

    import torch

    from alignkit.data import encode_example
    from alignkit.models import build_tiny_model

    rows = synthetic_pairs(args.pairs, seed=0)
    texts = [r[k] for r in rows for k in ("prompt", "chosen", "rejected")]
    sizes = args.sizes.split(",") if args.sizes else [f"h{args.hidden_size}x{args.layers}"]
    shapes = {name: SIZES.get(name, (args.hidden_size, args.layers)) for name in sizes}
    if args.threads:
        torch.set_num_threads(args.threads)
    one_thread = args.threads == 1  # then rates and the peak are per CPU second
    rate_key = "tokens_per_cpu_s" if one_thread else "tokens_per_s"
    peak = matmul_peak_gflops(cpu_time=one_thread) if args.sizes else None

    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in sizes}
    info: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokens = 0
        for name, (hidden, layers) in shapes.items():
            model, tok = build_tiny_model(
                texts, seed=0, hidden_size=hidden, num_layers=layers, intermediate_size=int(hidden * 2.6875)
            )
            tokens = sum(
                len(encode_example(tok, r["prompt"], r[side], args.max_length)) for r in rows for side in ("chosen", "rejected")
            )
            longest = max(len(encode_example(tok, r["prompt"], r[side])) for r in rows for side in ("chosen", "rejected"))
            assert longest <= args.max_length, f"raise --max-length to {longest} so neither trainer truncates"
            params = sum(p.numel() for p in model.parameters())
            info[name] = (params, params - model.get_input_embeddings().weight.numel())
            model.save_pretrained(f"{tmp}/{name}")
            tok.save_pretrained(f"{tmp}/{name}")
        Path(tmp, "data.json").write_text(json.dumps(rows))
        for repeat in range(args.repeats):
            for name in sizes:
                for worker in ("alignkit", "trl"):  # alternated, so background load hits both alike
                    result_file = Path(tmp, f"{worker}.json")
                    cmd = [
                        sys.executable,
                        __file__,
                        "--worker",
                        worker,
                        "--model-dir",
                        f"{tmp}/{name}",
                        "--data",
                        tmp + "/data.json",
                        "--result",
                        str(result_file),
                        "--pairs",
                        str(args.pairs),
                        "--batch-size",
                        str(args.batch_size),
                        "--max-length",
                        str(args.max_length),
                        "--lr",
                        str(args.lr),
                        "--threads",
                        str(args.threads),
                    ]
                    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
                    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    result = json.loads(result_file.read_text())
                    result["tokens_per_s"] = tokens / result["wall_s"]
                    result["tokens_per_cpu_s"] = tokens / result["cpu_s"]
                    print(
                        f"run {repeat + 1}/{args.repeats} {name} {worker}: {result['wall_s']:.2f} s, "
                        f"{result['tokens_per_s']:.0f} tokens/s",
                        flush=True,
                    )
                    best = results[name]
                    if worker not in best or result[rate_key] > best[worker][rate_key]:
                        best[worker] = result

    print(
        f"{args.pairs} pairs, batch {args.batch_size}, {args.steps} steps, {tokens} real tokens (chosen+rejected), "
        f"torch threads: {torch.get_num_threads()}, best of {args.repeats}"
        + (f", fp32 matmul peak {peak:.1f} GFLOP/{'CPU-s' if one_thread else 's'}" if peak else "")
        + ("; best and % of peak by CPU time" if one_thread else "")
    )
    for name in sizes:
        a, t = results[name]["alignkit"], results[name]["trl"]
        params, non_embedding = info[name]
        print(f"\nmodel {name}: tiny Llama, {params / 1e6:.2f}M parameters")
        print(f"{'':10} {'wall s':>8} {'tokens/s':>10} {'peak RSS MiB':>13} {'mean loss':>10}" + ("  % of peak" if peak else ""))
        for label, r in (("alignkit", a), ("trl", t)):
            share = f"  {100 * r[rate_key] * 8 * non_embedding / 1e9 / peak:9.1f}" if peak else ""
            print(
                f"{label:10} {r['wall_s']:8.2f} {r['tokens_per_s']:10.0f} {r['peak_rss_mb']:13.0f} {r['mean_loss']:10.4f}{share}"
            )
        print(
            f"alignkit reference precomputation: {a['reference_s']:.2f} s (included in its wall time); final checkpoint "
            f"{a['save_wall_s']:.2f} s / {a['save_cpu_s']:.2f} CPU-s (left out: TRL saves nothing)"
        )
        print(
            f"throughput ratio alignkit / TRL: {a['tokens_per_s'] / t['tokens_per_s']:.2f}x; "
            f"peak memory ratio alignkit / TRL: {a['peak_rss_mb'] / t['peak_rss_mb']:.2f}; "
            f"per CPU second: {a['tokens_per_cpu_s'] / t['tokens_per_cpu_s']:.2f}x"
        )
    if len(sizes) > 1:
        print(
            "\n| size | params | alignkit tokens/s | TRL tokens/s | ratio (wall) | alignkit tokens/CPU-s | TRL tokens/CPU-s "
            "| ratio (CPU) | alignkit % of peak | TRL % of peak | memory ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in sizes:
            a, t = results[name]["alignkit"], results[name]["trl"]
            params, non_embedding = info[name]
            pa, pt = (100 * r[rate_key] * 8 * non_embedding / 1e9 / (peak or 1) for r in (a, t))
            print(
                f"| {name} | {params / 1e6:.2f}M | {a['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} | "
                f"{a['tokens_per_s'] / t['tokens_per_s']:.2f}x | {a['tokens_per_cpu_s']:.0f} | {t['tokens_per_cpu_s']:.0f} | "
                f"{a['tokens_per_cpu_s'] / t['tokens_per_cpu_s']:.2f}x | {pa:.1f} | {pt:.1f} | "
                f"{a['peak_rss_mb'] / t['peak_rss_mb']:.2f} |"
            )


if __name__ == "__main__":
    main()
