"""Which packed-row layout trains fastest on CPU: the measurement behind issue #18's attention item.

One DPO-sized batch (8 pairs = 16 sequences of the synthetic pairs of ``dpo_vs_trl.py``), one
forward (``alignkit.models.logprobs.model_logits``, no KV cache) + backward of a tiny Llama per
layout, CPU seconds of one thread (``time.process_time``, so other jobs on a shared machine
disturb it little), best of ``--repeats`` interleaved rounds:

* ``padded``: one sequence per row, right padding, 2-D attention mask (what TRL does);
* ``rows=2x``: alignkit's packing today, rows up to twice the longest sequence, SDPA with the
  block-diagonal causal mask ``transformers`` builds from the restarting position ids;
* ``rows=1x``: rows no longer than the longest sequence (more rows, narrower attention);
* ``rows=max``: rows up to ``--max-length`` (fewest rows, widest attention);
* ``varlen``: rows of 2x, but attention computed per packed sequence (one causal SDPA call per
  sequence: the block-diagonal cost sum(len^2) instead of width^2 per row). An experiment
  registered here through ``transformers.AttentionInterface``, not a library path.

It also checks every layout gives the padded layout's per-sequence log-probs (to 1e-4).

    python benchmarks/packing_layouts.py [--hidden-size 256] [--layers 4] [--repeats 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from alignkit.data import encode_example
from alignkit.data.batching import collate, pack_greedy
from alignkit.models import build_tiny_model
from alignkit.models.logprobs import model_logits

sys.path.insert(0, str(Path(__file__).parent))
from dpo_vs_trl import synthetic_pairs  # noqa: E402


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_ids=None, **kwargs):
    """Causal attention within each packed sequence (a sequence starts where the position does not step by 1)."""
    if position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    rows, _, width, _ = query.shape
    pos = position_ids.expand(rows, width)
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] - pos[:, :-1] != 1
    out = []
    for r in range(rows):
        cuts = starts[r].nonzero().flatten().tolist() + [width]
        parts = [
            F.scaled_dot_product_attention(
                query[r : r + 1, :, a:b], key[r : r + 1, :, a:b], value[r : r + 1, :, a:b], is_causal=True, scale=scaling
            )
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        ]
        out.append(torch.cat(parts, dim=2))
    return torch.cat(out, 0).transpose(1, 2).contiguous(), None


AttentionInterface.register("alignkit_bench_varlen", varlen_attention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = synthetic_pairs(64, seed=0)
    texts = [r[k] for r in rows for k in ("prompt", "chosen", "rejected")]
    h = args.hidden_size
    model, tok = build_tiny_model(texts, seed=0, hidden_size=h, num_layers=args.layers, intermediate_size=int(h * 2.6875))
    seqs = [encode_example(tok, r["prompt"], r[side], args.max_length) for r in rows[:8] for side in ("chosen", "rejected")]
    longest = max(len(s) for s in seqs)

    def packed(width: int) -> tuple[dict[str, torch.Tensor], list[int]]:
        """The batch, and for each of its sequences (in batch order) the input index."""
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        groups = [[order[j] for j in g] for g in pack_greedy([seqs[i] for i in order], width)]
        return collate([[seqs[i] for i in g] for g in groups], tok.pad_token_id), [i for g in groups for i in g]

    padded = collate([[s] for s in seqs], tok.pad_token_id, attention_mask=True), list(range(len(seqs)))
    layouts = {
        "padded": (*padded, "sdpa"),
        "rows=2x": (*packed(2 * longest), "sdpa"),
        "rows=1x": (*packed(longest), "sdpa"),
        "rows=max": (*packed(args.max_length), "sdpa"),
        "varlen": (*packed(2 * longest), "alignkit_bench_varlen"),
    }

    def step(batch: dict[str, torch.Tensor], attn: str) -> list[torch.Tensor]:
        model.config._attn_implementation = attn
        logps = model_logits(model, batch).log_softmax(-1).gather(-1, batch["input_ids"][..., None]).squeeze(-1)
        (logps * batch["loss_mask"]).sum().backward()
        # per sequence (batch order = row order); shifted targets do not matter for a layout comparison
        return [logps.detach()[batch["sequence_ids"] == i] for i in range(len(seqs))]

    model.zero_grad()
    reference = step(layouts["padded"][0], "sdpa")
    error = {}
    for name, (batch, where, attn) in layouts.items():
        model.zero_grad()
        got = step(batch, attn)
        error[name] = max(float((got[k] - reference[i]).abs().max()) for k, i in enumerate(where))
        assert error[name] < 1e-4, f"{name}: per-token log-probs differ from the padded layout by {error[name]:.2e}"
    best = {name: float("inf") for name in layouts}
    for _ in range(args.repeats):
        for name, (batch, _, attn) in layouts.items():
            model.zero_grad()
            start = time.process_time()
            step(batch, attn)
            best[name] = min(best[name], time.process_time() - start)
    params = sum(p.numel() for p in model.parameters())
    print(f"tiny Llama {params / 1e6:.2f}M parameters, 16 sequences of {sorted(len(s) for s in seqs)} tokens, 1 thread")
    print("| layout | rows x width | forward+backward CPU ms | vs rows=2x | max log-prob difference vs padded |")
    print("|---|---|---:|---:|---:|")
    for name, (batch, _, _) in layouts.items():
        shape = "x".join(str(d) for d in batch["input_ids"].shape)
        print(f"| {name} | {shape} | {1e3 * best[name]:.0f} | {best[name] / best['rows=2x']:.2f} | {error[name]:.1e} |")


if __name__ == "__main__":
    main()
