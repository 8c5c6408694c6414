"""Reward vs KL: the DPO paper's frontier experiment, scaled down to the sandbox.

Starting from the demo's SFT model and reward model (built, or reused, by the demo pipeline's
first stages), trains DPO at several β and PPO at several KL coefficients against the learned
reward model, plus PPO against the ground-truth scorer ("gold reward", an upper bound). Every
policy is then sampled on the held-out prompts and placed at (KL to the SFT model on its own
samples, mean ground-truth utility). Prints the table and writes ``reward_kl_frontier.png``.

    python benchmarks/reward_kl_frontier.py [--workdir runs/frontier] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from alignkit.evaluate.kl import sampled_kl
from alignkit.models import generate, load_model
from alignkit.pipeline import PipelineSpec, run_pipeline
from alignkit.pipeline.runner import StageSpec
from alignkit.sandbox import build_world

DEMO = Path(__file__).resolve().parents[1] / "alignkit" / "pipeline" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/frontier"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--betas", default="0.03,0.1,0.3,1.0")
    parser.add_argument("--kl-coefs", default="0.02,0.1,0.3")
    args = parser.parse_args()

    demo = yaml.safe_load(DEMO.read_text())
    keep = {"world", "base", "sft", "feedback", "rm"}
    stages = [s for s in demo["stages"] if s["name"] in keep]
    dpo = next(s for s in demo["stages"] if s["name"] == "dpo")["with"]
    ppo = next(s for s in demo["stages"] if s["name"] == "ppo")["with"]
    runs: dict[str, tuple[str, float]] = {}
    for beta in [float(b) for b in args.betas.split(",")]:
        name = f"dpo_beta{beta}".replace(".", "_")
        stages.append({"name": name, "uses": "train.dpo", "with": {**dpo, "beta": beta}})
        runs[name] = ("DPO (crowd pairs)", beta)
    for coef in [float(c) for c in args.kl_coefs.split(",")]:
        name = f"ppo_kl{coef}".replace(".", "_")
        stages.append({"name": name, "uses": "train.ppo", "with": {**ppo, "kl_coef": coef}})
        runs[name] = ("PPO (learned RM)", coef)
        gold = f"ppo_gold_kl{coef}".replace(".", "_")
        stages.append({"name": gold, "uses": "train.ppo", "with": {**ppo, "kl_coef": coef, "reward": "sandbox"}})
        runs[gold] = ("PPO (gold reward)", coef)
    rloo = {k: v for k, v in ppo.items() if k not in ("ppo_epochs", "minibatch_size", "rollout_batch_size")}
    stages.append({"name": "rloo", "uses": "train.rloo", "with": {**rloo, "rollout_batch_size": 4, "k": 4, "kl_coef": 0.1}})
    runs["rloo"] = ("RLOO (learned RM)", 0.1)
    spec = PipelineSpec(workdir=args.workdir, seed=args.seed, stages=[StageSpec.model_validate(s) for s in stages])
    outputs = run_pipeline(spec)

    world = build_world(0)
    prompts = [p.text for s in ("eval", "test") for p in world.prompts(s)]
    sft_model, tok = load_model(outputs["sft"]["model"])
    rows = []
    for name, (method, knob) in [("sft", ("SFT", 0.0))] + list(runs.items()):
        model, tok = load_model(outputs[name]["model"])
        responses = generate(model, tok, prompts, max_new_tokens=48, temperature=0.7, seed=args.seed, batch_size=64)
        scores = world.score_many(list(zip(prompts, responses)))
        utility = sum(s.utility for s in scores) / len(scores)
        harmful = [s for s in scores if s.category in ("harmful", "jailbreak")]
        hc = sum(s.behaviour == "harmful_compliance" for s in harmful) / len(harmful)
        kl = sampled_kl(model, sft_model, tok, prompts, responses)
        rows.append(
            {
                "method": method,
                "knob": knob,
                "kl": kl,
                "utility": utility,
                "harmful_compliance": hc,
                "helpfulness": sum(s.helpfulness for s in scores) / len(scores),
            }
        )
        print(
            f"{method:<20} {'beta' if 'DPO' in method else 'kl_coef'}={knob:<5} KL={kl:6.3f}  utility={utility:.3f}  "
            f"harmful-compliance={hc:.3f}  helpfulness={rows[-1]['helpfulness']:.3f}",
            flush=True,
        )
    (args.workdir / "frontier.json").write_text(json.dumps(rows, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (
        ("SFT", "s"),
        ("DPO (crowd pairs)", "o"),
        ("PPO (learned RM)", "^"),
        ("PPO (gold reward)", "v"),
        ("RLOO (learned RM)", "D"),
    ):
        pts = sorted((r["kl"], r["utility"]) for r in rows if r["method"] == method)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=method)
    ax.set_xlabel("KL(policy || SFT), nats per response")
    ax.set_ylabel("ground-truth utility (held-out prompts)")
    ax.set_title("Reward vs KL on the sandbox")
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(__file__).resolve().parent / "reward_kl_frontier.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
