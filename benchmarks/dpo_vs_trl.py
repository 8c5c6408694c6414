"""DPO throughput and peak memory: alignkit against TRL's DPOTrainer, same data, same model, CPU.

One configuration (sigmoid loss, beta 0.1), one epoch over the same synthetic pairs with variable
lengths, the same batch size, max length, learning rate and number of steps. Each trainer runs in
its own subprocess so their peak resident memory (``VmHWM``) is measured separately.

What is timed. alignkit: reference log-prob precomputation (its default without LoRA) + the
training loop (which also writes its final checkpoint). TRL: ``trainer.train()``, which runs the
reference model on every batch. Model loading and tokenization are left out for both.

Tokens/s counts the same thing for both: real (non-padding) tokens of every chosen and rejected
sequence (prompt + completion, as encoded by alignkit's chat-template path) of the epoch, divided
by the timed wall time. TRL pads each batch to its longest sequence; alignkit packs sequences
padding-free, so padding waste shows up as lower throughput, as it should.

    python benchmarks/dpo_vs_trl.py [--pairs 256] [--batch-size 8] [--max-length 512] [--hidden-size 128] [--repeats 3]
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
    from alignkit.train.config import DPOConfig
    from alignkit.train.dpo import DPOObjective, attach_reference, encode_pairs, flat_sequences
    from alignkit.train.loop import train
    from alignkit.train.preference import prepare_reference

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
        started = time.perf_counter()
        cache, _ = prepare_reference(cfg, "precomputed", model, tok.pad_token_id, {"train": flat_sequences(examples)}, "dpo")
        attach_reference(examples, cache["train"])
        reference_s = time.perf_counter() - started
        result = train(cfg, model, DPOObjective(cfg, tok.pad_token_id, None), examples)
        wall = time.perf_counter() - started
    mean_loss = sum(h["loss"] for h in result.history) / len(result.history)
    return {"wall_s": wall, "reference_s": reference_s, "mean_loss": mean_loss, "peak_rss_mb": peak_rss_mb()}


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
        started = time.perf_counter()
        output = trainer.train()
        wall = time.perf_counter() - started
    return {"wall_s": wall, "mean_loss": output.training_loss, "peak_rss_mb": peak_rss_mb()}


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
    parser.add_argument("--worker", choices=["alignkit", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pairs % args.batch_size:
        parser.error("--pairs must be a multiple of --batch-size (both trainers see exactly one epoch)")
    args.steps = args.pairs // args.batch_size

    if args.worker:  # inside a subprocess: run one trainer, write its numbers
        rows = json.loads(Path(args.data).read_text())
        result = (run_alignkit if args.worker == "alignkit" else run_trl)(args, rows)
        Path(args.result).write_text(json.dumps(result))
        return

    import torch

    from alignkit.data import encode_example
    from alignkit.models import build_tiny_model

    rows = synthetic_pairs(args.pairs, seed=0)
    texts = [r[k] for r in rows for k in ("prompt", "chosen", "rejected")]
    model, tok = build_tiny_model(
        texts, seed=0, hidden_size=args.hidden_size, num_layers=args.layers, intermediate_size=int(args.hidden_size * 2.6875)
    )
    tokens = sum(len(encode_example(tok, r["prompt"], r[side], args.max_length)) for r in rows for side in ("chosen", "rejected"))
    longest = max(len(encode_example(tok, r["prompt"], r[side])) for r in rows for side in ("chosen", "rejected"))
    assert longest <= args.max_length, f"raise --max-length to {longest} so neither trainer truncates"
    params = sum(p.numel() for p in model.parameters())

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp + "/model")
        tok.save_pretrained(tmp + "/model")
        Path(tmp, "data.json").write_text(json.dumps(rows))
        for repeat in range(args.repeats):
            for worker in ("alignkit", "trl"):  # alternated, so background load hits both alike
                result_file = Path(tmp, f"{worker}.json")
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    worker,
                    "--model-dir",
                    tmp + "/model",
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
                ]
                env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
                subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                result = json.loads(result_file.read_text())
                result["tokens_per_s"] = tokens / result["wall_s"]
                print(
                    f"run {repeat + 1}/{args.repeats} {worker}: {result['wall_s']:.2f} s, {result['tokens_per_s']:.0f} tokens/s",
                    flush=True,
                )
                if worker not in results or result["wall_s"] < results[worker]["wall_s"]:
                    results[worker] = result

    a, t = results["alignkit"], results["trl"]
    print(
        f"model: tiny Llama, {params / 1e6:.2f}M parameters; {args.pairs} pairs, batch {args.batch_size}, "
        f"{args.steps} steps, {tokens} real tokens (chosen+rejected), torch threads: {torch.get_num_threads()}, "
        f"best of {args.repeats}"
    )
    print(f"{'':10} {'wall s':>8} {'tokens/s':>10} {'peak RSS MiB':>13} {'mean loss':>10}")
    for name, r in (("alignkit", a), ("trl", t)):
        print(f"{name:10} {r['wall_s']:8.2f} {r['tokens_per_s']:10.0f} {r['peak_rss_mb']:13.0f} {r['mean_loss']:10.4f}")
    print(f"alignkit reference precomputation: {a['reference_s']:.2f} s (included in its wall time)")
    print(
        f"throughput ratio alignkit / TRL: {a['tokens_per_s'] / t['tokens_per_s']:.2f}x; "
        f"peak memory ratio alignkit / TRL: {a['peak_rss_mb'] / t['peak_rss_mb']:.2f}"
    )


if __name__ == "__main__":
    main()
