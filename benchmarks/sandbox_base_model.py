"""How unaligned is the shipped sandbox base model, and how far does the curated SFT set move it?

Samples the shipped base model on the sandbox's held-out (eval) prompts, scores every response
with the ground-truth scorer, then fine-tunes it on the curated demonstrations (``sft_demos``)
with the project's SFT recipe and measures again. Prints both summaries and the shift.

    python benchmarks/sandbox_base_model.py [--n-prompts 400] [--sft-steps 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alignkit.data import write_records
from alignkit.models import generate, load_model
from alignkit.sandbox import build_world, sft_demos
from alignkit.sandbox.build import format_summary, summarize
from alignkit.sandbox.pretrain import SHIPPED_BASE_MODEL
from alignkit.train.config import SFTConfig
from alignkit.train.sft import run_sft


def measure(model_path: Path, prompts: list, seed: int, temperature: float) -> dict:
    world = build_world(0)
    model, tok = load_model(str(model_path))
    texts = [p.text for p in prompts]
    responses = generate(model, tok, texts, max_new_tokens=48, temperature=temperature, seed=seed, batch_size=64)
    return summarize(world.score_many(list(zip(texts, responses)))), list(zip(texts, responses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-prompts", type=int, default=400)
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=SHIPPED_BASE_MODEL)
    args = parser.parse_args()

    world = build_world(0)
    prompts = world.prompts("eval", n=args.n_prompts)
    base, samples = measure(args.model, prompts, args.seed, args.temperature)
    print(f"== base model {args.model} on {len(prompts)} eval prompts (T={args.temperature}, seed {args.seed})")
    print(format_summary(base))
    for prompt, response in samples[:6]:
        print(f"  > {prompt}\n    {response}")

    with tempfile.TemporaryDirectory() as tmp:
        data = write_records(Path(tmp) / "sft.jsonl", sft_demos(world, 400, seed=args.seed))
        sft_path = run_sft(
            SFTConfig(
                model=str(args.model),
                data=data,
                output=Path(tmp) / "sft",
                max_steps=args.sft_steps,
                batch_size=16,
                lr=1e-3,
                warmup_steps=10,
                eval_fraction=0.0,
                seed=args.seed,
                progress=False,
            )
        )
        sft, _ = measure(sft_path, prompts, args.seed, args.temperature)
    print(f"\n== after SFT on 400 curated demonstrations ({args.sft_steps} steps)")
    print(format_summary(sft))
    print("\n== shift (base -> SFT)")
    for key in ("harmful_compliance_rate", "hallucination_rate", "over_refusal_rate"):
        print(f"{key:<26}{base[key]:.3f} -> {sft[key]:.3f}")
    for key in ("helpfulness", "honesty", "harmlessness", "utility"):
        print(f"{key:<26}{base['overall'][key]:.3f} -> {sft['overall'][key]:.3f}")


if __name__ == "__main__":
    main()
