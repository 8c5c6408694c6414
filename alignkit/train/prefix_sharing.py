"""Chosen and rejected in one tree: the prompt a pair shares is run once, not twice.

A DPO pair is two sequences that start with the same prompt. Packed side by side
(:func:`alignkit.data.batching.packed_batch`) the prompt is computed twice, in the forward and in
the backward pass, for the policy and for the reference; on the benchmark's data the prompt is
11 % of all positions. Here a pair is laid out once, as a tree (the idea of Hydra/"prefix
sharing" in TRL's and OpenRLHF's issue trackers, done exactly)::

    p0 .. p(L-2)  p(L-1)  c0 c1 ...        p(L-1)'  r0 r1 ...
    0  .. L-2     L-1     L  L+1 ...       L-1      L  L+1 ...     <- position ids

* ``p`` is the shared prefix: the longest run of leading tokens equal in both sequences and a
  target in neither (so no scored token is shared);
* the chosen completion ``c`` attends to the prefix and to itself, causally;
* the rejected side starts with ``p(L-1)'``, a copy of the prefix's last token at the same
  position, which attends to ``p0 .. p(L-2)`` and itself: exactly what ``p(L-1)`` sees, so its
  hidden states equal ``p(L-1)``'s and its logits predict ``r0``. The rejected completion attends
  to ``p0 .. p(L-2)``, the copy and itself, never to ``p(L-1)`` or the chosen tokens.

The copy is what keeps :func:`alignkit.models.sequence_logprobs` unchanged: every target is still
scored from the logits of the position right before it in its row, and the per-sequence sums
still come from ``sequence_ids``. A pair costs ``len(chosen) + len(rejected) - (L - 1)`` positions.

The tree needs an explicit 4-D attention mask (``transformers`` uses a 4-D mask as given). It is
built as a boolean mask, the form SDPA takes, and used only where
:func:`prefix_sharing_is_exact` has *measured* that a probe pair scores the same shared as
unshared, so an attention implementation that ignores or misreads the mask is never trusted.

Attention is computed per tree (:mod:`alignkit.models.tree_attention`; the batch carries each
tree's span and additive mask), so a row's attention costs the sum of its trees' squares, not its
width squared. Rows are therefore as wide as the trees need, padding-free where they fit in
:data:`ROW_WIDTH`: the chunked backward (``max_forward_tokens``) decides how many trees a forward
pass takes, not the mask's cost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from alignkit.data.batching import collate
from alignkit.data.chat import Encoded
from alignkit.models import sequence_logprobs
from alignkit.models.packing import _base, _key, packing_is_exact
from alignkit.models.tree_attention import TREE_SDPA, use_tree_attention

log = logging.getLogger(__name__)

# What each position of a pair's tree is; the attention rule below is written in these terms.
PREFIX, PREFIX_LAST, CHOSEN, REJECTED, PAD = 0, 1, 2, 3, 4

_CACHE: dict[tuple[str, str, str], tuple[bool, str]] = {}

# Widest row a batch is laid out in: bounds its 4-D mask (width**2 booleans, 4 MiB at 2048).
ROW_WIDTH = 2048


def shared_prefix_length(chosen: Encoded, rejected: Encoded) -> int:
    """Leading tokens equal in both sequences and a target in neither."""
    n = 0
    for a, b, ma, mb in zip(chosen.input_ids, rejected.input_ids, chosen.loss_mask, rejected.loss_mask):
        if a != b or ma or mb:
            break
        n += 1
    return n


def pair_tree(chosen: Encoded, rejected: Encoded) -> tuple[list[int], list[bool], list[int], list[int], list[int]]:
    """One pair's ``(input_ids, loss_mask, position_ids, side, kind)``; side 0 chosen, 1 rejected.

    With no shared prefix (``L = 0``) it is simply chosen then rejected, each from position 0.
    """
    n = shared_prefix_length(chosen, rejected)
    c, r = len(chosen), len(rejected)
    if n == 0:
        ids = chosen.input_ids + rejected.input_ids
        mask = chosen.loss_mask + rejected.loss_mask
        return ids, mask, list(range(c)) + list(range(r)), [0] * c + [1] * r, [CHOSEN] * c + [REJECTED] * r
    start = n - 1  # the rejected side restarts at the copy of the prefix's last token
    ids = chosen.input_ids + rejected.input_ids[start:]
    mask = chosen.loss_mask + rejected.loss_mask[start:]
    positions = list(range(c)) + list(range(start, r))
    side = [0] * c + [1] * (r - start)
    kind = [PREFIX] * start + [PREFIX_LAST] + [CHOSEN] * (c - n) + [REJECTED] * (r - start)
    return ids, mask, positions, side, kind


def tree_length(chosen: Encoded, rejected: Encoded) -> int:
    """Positions a pair takes as a tree."""
    return len(chosen) + len(rejected) - max(shared_prefix_length(chosen, rejected) - 1, 0)


def _first_fit(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices into ``lengths`` grouped into rows of at most ``width`` (first fit, in the given order)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max(width - n, 0))
    return rows


def choose_rows(lengths: Sequence[int], max_width: int = ROW_WIDTH) -> list[list[int]]:
    """First-fit rows for ``lengths`` (longest first) with the fewest padded positions.

    With attention per tree (:mod:`alignkit.models.tree_attention`) a row's cost is its positions,
    padding included, whatever its width; so all trees go in one row when they fit in
    ``max_width`` (which only bounds the row's 4-D mask, ``width**2`` booleans), else into ``k``
    rows of about ``total / k`` each, trying a few ``k`` and slacks and keeping the least padding.
    """
    longest, total = lengths[0], sum(lengths)
    widest = max(max_width, longest)
    k0 = max(1, math.ceil(total / widest))
    best: tuple[int, list[list[int]]] | None = None
    for k in range(k0, k0 + 4):
        for slack in (0, 8, 16, 32, 64):
            cap = min(widest, max(longest, math.ceil(total / k) + slack))
            rows = _first_fit(lengths, cap)
            cost = len(rows) * max(sum(lengths[i] for i in row) for row in rows)
            if best is None or cost < best[0]:
                best = (cost, rows)
        if math.ceil(total / k) <= longest:
            break
    assert best is not None
    return best[1]


def tree_attention_mask(group: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """``(rows, 1, width, width)`` boolean mask, True where query i may attend to key j.

    Causal, within one pair (``group``), and by kind: a kind sees itself and the prefix; the
    chosen side also sees the prefix's last token (the rejected side has its own copy of it).
    Padding sees only padding, so no query row is fully masked.
    """
    width = group.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    gi, gj = group[:, :, None], group[:, None, :]
    ki, kj = kind[:, :, None], kind[:, None, :]
    visible = (ki == kj) | ((kj == PREFIX) & (ki != PAD)) | ((ki == CHOSEN) & (kj == PREFIX_LAST))
    return (causal & (gi == gj) & visible)[:, None]


def shared_prefix_batch(
    pairs: Sequence[tuple[Encoded, Encoded]], pad_id: int, max_width: int = ROW_WIDTH
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pack pairs as trees into rows; ``where`` maps ``chosen0, rejected0, chosen1, ...`` to batch sequences.

    Trees longest first into the rows :func:`choose_rows` picks (one row, no padding, whenever the
    trees fit in ``max_width``). The batch has the keys every collated batch has, a 4-D boolean
    ``attention_mask`` (block-diagonal: each tree's :func:`tree_attention_mask`, padding causal
    among itself), and ``tree_spans``/``tree_bias`` for per-tree attention
    (:mod:`alignkit.models.tree_attention`).
    """
    trees = [pair_tree(c, r) for c, r in pairs]
    by_length = sorted(range(len(trees)), key=lambda i: -len(trees[i][0]))
    lengths = [len(trees[i][0]) for i in by_length]
    rows = [[by_length[j] for j in row] for row in choose_rows(lengths, max_width)]
    width = max(sum(len(trees[i][0]) for i in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    loss_mask = torch.zeros(shape, dtype=torch.bool)
    position_ids = torch.zeros(shape, dtype=torch.long)
    sequence_ids = torch.full(shape, -1, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), 1, width, width, dtype=torch.bool)
    where = torch.empty(2 * len(pairs), dtype=torch.long)
    spans: list[list[int]] = []
    biases: list[torch.Tensor] = []
    seq = offset = 0
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            ids, mask, positions, side, kinds = trees[i]
            n = len(ids)
            input_ids[r, at : at + n] = torch.tensor(ids)
            loss_mask[r, at : at + n] = torch.tensor(mask)
            position_ids[r, at : at + n] = torch.tensor(positions)
            sequence_ids[r, at : at + n] = seq + torch.tensor(side)
            block = tree_attention_mask(torch.zeros(1, n, dtype=torch.long), torch.tensor([kinds]))[0, 0]
            attention_mask[r, 0, at : at + n, at : at + n] = block
            biases.append(torch.zeros(n, n).masked_fill_(~block, float("-inf")).reshape(-1))
            spans.append([r, at, n, offset])
            where[2 * i], where[2 * i + 1] = seq, seq + 1
            offset += n * n
            at += n
            seq += 2
        last = int(position_ids[r, at - 1])
        position_ids[r, at:] = torch.arange(last + 1, last + 1 + width - at)
        attention_mask[r, 0, at:, at:] = torch.ones(width - at, width - at, dtype=torch.bool).tril()
    batch = {
        "input_ids": input_ids,
        "loss_mask": loss_mask,
        "position_ids": position_ids,
        "sequence_ids": sequence_ids,
        "num_sequences": torch.tensor(seq),
        "attention_mask": attention_mask,
        "tree_spans": torch.tensor(spans, dtype=torch.long),
        "tree_bias": torch.cat(biases),
        "where": where,
    }
    return batch, where


@torch.no_grad()
def probe_prefix_sharing(model: torch.nn.Module, tolerance: float | None = None) -> tuple[bool, float]:
    """``(exact, relative difference)`` of two probe pairs' log-probs, as trees vs each sequence alone.

    The probe pairs (fixed pseudo-random ids) share prompts of 6 and 1 tokens and are packed into
    one row, so the mask, the copied token and the boundary between pairs are all exercised.
    """
    base = _base(model)
    param = next(base.parameters())
    if tolerance is None:
        tolerance = 1e-4 if param.dtype == torch.float32 else 2e-2
    vocab = int(getattr(base.config, "vocab_size", 0) or 0) or 64
    gen = torch.Generator().manual_seed(4321)

    def ids(n: int) -> list[int]:
        return torch.randint(3, max(vocab, 4), (n,), generator=gen).tolist()

    def seq(prompt: list[int], completion: list[int]) -> Encoded:
        return Encoded(prompt + completion, [False] * len(prompt) + [True] * len(completion))

    p1, p2 = ids(6), ids(1)
    pairs = [(seq(p1, ids(5)), seq(p1, ids(3))), (seq(p2, ids(4)), seq(p2, ids(6)))]
    was_training = base.training
    base.eval()
    try:
        batch, where = shared_prefix_batch(pairs, 0)
        shared = sequence_logprobs(base, {k: v.to(param.device) for k, v in batch.items()}).sequence_logps[where.to(param.device)]
        alone = torch.stack(
            [
                sequence_logprobs(base, {k: v.to(param.device) for k, v in collate([[s]], 0).items()}).sequence_logps[0]
                for pair in pairs
                for s in pair
            ]
        )
    finally:
        base.train(was_training)
    diff = float((shared.float() - alone.float()).abs().max() / alone.float().abs().max().clamp(min=1e-6))
    return diff <= tolerance, diff


def prefix_sharing_is_exact(model: torch.nn.Module) -> tuple[bool, str]:
    """``(exact, why)``: pairs may be scored as trees on this model's code path (probed once per kind).

    Needs packing to be exact (positions honoured) and SDPA attention (the boolean 4-D mask's
    form). A model on SDPA is first switched to per-tree SDPA (:func:`~alignkit.models.tree_attention.use_tree_attention`:
    plain SDPA for every batch without trees), so the probe below checks the path training takes.
    """
    use_tree_attention(model)
    key = _key(model)
    if key not in _CACHE:
        attn = key[1]
        if not packing_is_exact(model)[0]:
            _CACHE[key] = (False, "packing is not exact for this model")
        elif attn not in ("sdpa", TREE_SDPA):
            _CACHE[key] = (False, f"attention '{attn}' (the tree mask is built for sdpa)")
        else:
            exact, diff = probe_prefix_sharing(model)
            _CACHE[key] = (exact, f"probe: shared {'matches' if exact else 'differs from'} unshared ({diff:.1e})")
        log.info("prefix sharing %s (%s)", "on" if _CACHE[key][0] else "off", _CACHE[key][1])
    return _CACHE[key]
